//! The OCI image of a service, assembled from local files: no base image can be pulled here,
//! and none is needed. The root is staged in `target/deploy/NAME/image/rootfs/`: the binary,
//! the ONNX Runtime library, every shared library the two load (found with `ldd`), CA
//! certificates for S3 over HTTPS, `/etc/passwd` and `/etc/group` with the non-root user
//! 65532, and the bundled models with `--bundle-models`; the Containerfile adds the model
//! cache, owned by that user. buildah
//! builds `deploy/Containerfile` over it, with OCI annotations (version, revision, source);
//! buildah, podman and skopeo run with `deploy/containers/` as their settings (vfs storage,
//! runc, cgroupfs, explicit ulimits), given through [`engine`].

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use oxiserve_xtask::onnxruntime;
use xshell::{Cmd, Shell, cmd};

/// The non-root user and group the service runs as.
const USER: u32 = 65532;

/// What to build.
pub(super) struct Build<'a> {
    pub(super) service: &'a str,
    pub(super) repository: &'a str,
    pub(super) tag: &'a str,
    pub(super) bundle_models: bool,
    pub(super) debug: bool,
}

impl Build<'_> {
    /// The Cargo profile the binary is built with.
    pub(super) fn profile(&self) -> &'static str {
        if self.debug { "dev" } else { "release" }
    }

    /// The image's name in the local store.
    pub(super) fn local_name(&self) -> String {
        format!("localhost/{}:{}", self.repository, self.tag)
    }
}

/// An image in the local store.
pub(super) struct Built {
    /// Its name there.
    pub(super) name: String,
    repository: String,
    tag: String,
    /// Its size.
    pub(super) bytes: u64,
}

/// Fails, saying what to install, when a tool the image needs is missing.
pub(super) fn require_tools(sh: &Shell, push: bool) -> anyhow::Result<()> {
    let mut tools = vec!["buildah", "podman", "ldd"];
    if push {
        tools.push("skopeo");
    }
    let missing: Vec<_> = tools.into_iter().filter(|tool| !super::runs(sh, tool)).collect();
    ensure!(
        missing.is_empty(),
        "{} needed to build the image: install it (Debian: apt-get install buildah podman skopeo \
         runc)",
        missing.join(", ")
    );
    Ok(())
}

/// `program` (buildah, podman or skopeo) with this project's container settings.
pub(super) fn engine<'a>(sh: &'a Shell, root: &Path, program: &str) -> Cmd<'a> {
    let settings = root.join("deploy/containers");
    cmd!(sh, "{program}")
        .env("CONTAINERS_CONF", settings.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", settings.join("storage.conf"))
}

/// Builds the service's binary; returns its path.
pub(super) fn build_binary(sh: &Shell, root: &Path, build: &Build<'_>) -> anyhow::Result<PathBuf> {
    let (service, profile) = (build.service, build.profile());
    cmd!(sh, "cargo build --quiet --profile {profile} --package {service}").run()?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let directory = if build.debug { "debug" } else { "release" };
    Ok(target.join(directory).join(service))
}

/// Stages the image's root and builds it; the image of the same name before is removed.
pub(super) fn build(
    sh: &Shell,
    root: &Path,
    build: &Build<'_>,
    binary: &Path,
) -> anyhow::Result<Built> {
    let context = root.join("target/deploy").join(build.service).join("image");
    stage(root, build, binary, &context.join("rootfs"))?;
    // The model cache: an empty directory that the Containerfile gives to the service's user.
    std::fs::create_dir_all(context.join("cache"))?;
    let name = build.local_name();
    let _ = engine(sh, root, "podman")
        .args(["rmi", "--force", &name])
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run();
    let revision =
        cmd!(sh, "git rev-parse HEAD").quiet().read().unwrap_or_else(|_| "unknown".into());
    let source = cmd!(sh, "git remote get-url origin").quiet().ignore_stderr().read();
    let source = source.unwrap_or_else(|_| "https://github.com/oxiserve/oxiserve".into());
    let labels = [
        ("org.opencontainers.image.title", build.service.to_string()),
        ("org.opencontainers.image.version", build.tag.to_string()),
        ("org.opencontainers.image.revision", revision.clone()),
        ("org.opencontainers.image.source", source.clone()),
    ];
    let mut bud = engine(sh, root, "buildah").args(["bud", "--quiet", "--tag", &name]);
    bud = bud.arg("--file").arg(root.join("deploy/Containerfile"));
    for (key, value) in [
        ("SERVICE", build.service),
        ("VERSION", build.tag),
        ("REVISION", &revision),
        ("SOURCE", &source),
    ] {
        bud = bud.args(["--build-arg", &format!("{key}={value}")]);
    }
    for (key, value) in &labels {
        bud = bud.args(["--annotation", &format!("{key}={value}")]);
    }
    bud.arg(&context).quiet().ignore_stdout().run().context("buildah could not build the image")?;
    let size =
        engine(sh, root, "podman").args(["image", "inspect", "--format", "{{.Size}}", &name]);
    let bytes = size.quiet().read()?.trim().parse().context("the image's size")?;
    Ok(Built { name, repository: build.repository.into(), tag: build.tag.into(), bytes })
}

/// Copies the local image `built` to `registry`; returns the pushed reference. Loopback
/// registries are reached without TLS.
pub(super) fn push(
    sh: &Shell,
    root: &Path,
    built: &Built,
    registry: &str,
) -> anyhow::Result<String> {
    let reference = format!("{registry}/{}:{}", built.repository, built.tag);
    let host = registry.rsplit_once(':').map_or(registry, |(host, _)| host);
    let loopback = ["localhost", "127.0.0.1", "[::1]"].contains(&host);
    let tls = format!("--dest-tls-verify={}", !loopback);
    let copy = engine(sh, root, "skopeo").args(["copy", "--quiet", &tls]);
    copy.arg(format!("containers-storage:{}", built.name))
        .arg(format!("docker://{reference}"))
        .quiet()
        .run()
        .with_context(|| format!("skopeo could not push to {registry}"))?;
    Ok(reference)
}

/// Writes the image's root into `rootfs` (emptied first).
fn stage(root: &Path, build: &Build<'_>, binary: &Path, rootfs: &Path) -> anyhow::Result<()> {
    if rootfs.exists() {
        std::fs::remove_dir_all(rootfs)?;
    }
    let library = onnxruntime::provision(root)?;
    let put = |from: &Path, to: &str| -> anyhow::Result<()> {
        let to = rootfs.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().context("a path in the image has a directory")?)?;
        std::fs::copy(from, &to).with_context(|| format!("copying {}", from.display()))?;
        Ok(())
    };
    put(binary, "/usr/local/bin/oxiserve-service")?;
    put(&library, "/usr/lib/oxiserve/libonnxruntime.so")?;
    for shared in shared_libraries(&[binary, &library])? {
        put(&shared, &shared.display().to_string())?;
    }
    let certificates = Path::new("/etc/ssl/certs/ca-certificates.crt");
    ensure!(certificates.is_file(), "no CA certificates: apt-get install ca-certificates");
    put(certificates, "/etc/ssl/certs/ca-certificates.crt")?;
    let etc = rootfs.join("etc");
    let user = format!(
        "root:x:0:0:root:/root:/sbin/nologin\noxiserve:x:{USER}:{USER}:oxiserve:/nonexistent:/sbin/nologin\n"
    );
    std::fs::write(etc.join("passwd"), user)?;
    std::fs::write(etc.join("group"), format!("root:x:0:\noxiserve:x:{USER}:\n"))?;
    use std::os::unix::fs::PermissionsExt;
    let tmp = rootfs.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777))?;
    std::fs::create_dir_all(rootfs.join("srv"))?;
    if build.bundle_models {
        let models = root.join("services").join(build.service).join("models");
        crate::template::copy_dir(&models, &rootfs.join("srv/models"))?;
    }
    Ok(())
}

/// The shared libraries that `files` load, the dynamic loader among them, as `ldd` finds them.
fn shared_libraries(files: &[&Path]) -> anyhow::Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for file in files {
        let output = std::process::Command::new("ldd").arg(file).output()?;
        ensure!(output.status.success(), "ldd {} failed", file.display());
        libraries.extend(ldd_paths(&String::from_utf8_lossy(&output.stdout)));
    }
    libraries.sort();
    libraries.dedup();
    Ok(libraries)
}

/// The absolute paths in `ldd`'s output: `name => /path (address)` and `/path (address)`.
fn ldd_paths(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let resolved = line.split_once("=>").map_or(line, |(_, after)| after).trim();
            let path = resolved.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_every_library_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                      \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f51)\n\
                      \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f51)\n\
                      \t/lib64/ld-linux-x86-64.so.2 (0x00007f51)\n";
        let paths = ldd_paths(output);
        let expected = [
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ];
        assert_eq!(paths, expected.map(PathBuf::from));
    }

    #[test]
    fn the_containerfile_runs_what_the_staging_writes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let containerfile = std::fs::read_to_string(root.join("deploy/Containerfile")).unwrap();
        for line in [
            "FROM scratch",
            "COPY rootfs/ /",
            "ORT_DYLIB_PATH=/usr/lib/oxiserve/libonnxruntime.so",
            "OXISERVE_MODELS__CACHE_DIR=/var/cache/oxiserve/models",
            "COPY --chown=65532:65532 cache/ /var/cache/oxiserve/",
            "WORKDIR /srv",
            &format!("USER {USER}:{USER}"),
            "ENTRYPOINT [\"/usr/local/bin/oxiserve-service\"]",
        ] {
            assert!(containerfile.contains(line), "{line}");
        }
    }
}
