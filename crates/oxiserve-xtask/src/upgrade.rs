//! `cargo xtask upgrade [--to VERSION]` in a service's own repository: moves the core crates
//! (`oxiserve`, `oxiserve-xtask`, one version, one git tag) to a newer release and proves the
//! service still works on it.
//!
//! In order, stopping at the first step that fails: the release (`--to`, else the newest
//! `vX.Y.Z` tag of the core's git repository) is newer than the one in `Cargo.toml`; both core
//! lines move to its tag; the lock file is updated for the core crates only (`cargo update -p`);
//! everything builds (every target), and the deprecation warnings it now hits are collected;
//! the tests pass. Then it prints what changed, from the core's own `CHANGELOG.md` at the new
//! release, and each deprecated item the service uses, with the replacement its note names.
//! A failure puts `Cargo.toml` and `Cargo.lock` back as they were, byte for byte.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::changelog::{self, Version};
use crate::onnxruntime;

/// The core crates, which share one version and one tag.
const CORE: [&str; 2] = ["oxiserve", "oxiserve-xtask"];

/// Options of `cargo xtask upgrade`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct UpgradeArgs {
    /// The release to move to, `X.Y.Z` or `vX.Y.Z`; default: the newest tag of the core.
    #[arg(long)]
    pub to: Option<String>,
}

/// Where the service takes the core from: a git repository at a release tag.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CoreSource {
    url: String,
    tag: String,
}

/// Upgrades the core crates of the project at `root` (see the module documentation).
pub fn upgrade(root: &Path, args: &UpgradeArgs) -> anyhow::Result<()> {
    let manifest_path = root.join("Cargo.toml");
    let manifest = std::fs::read_to_string(&manifest_path).context("reading Cargo.toml")?;
    let source = core_source(&manifest)?;
    let current = Version::from_tag(&source.tag)?;
    let sh = Shell::new()?;
    sh.change_dir(root);
    let url = &source.url;
    let tags = cmd!(sh, "git ls-remote --tags --refs {url}").quiet().read()?;
    let target = target(&release_tags(&tags), args.to.as_deref(), url)?;
    if target == current {
        println!("upgrade: already on {}, the newest release of {url}", target.tag());
        return Ok(());
    }
    ensure!(
        target > current,
        "{} is older than {}: upgrade does not downgrade",
        target.tag(),
        source.tag
    );

    let lock_path = root.join("Cargo.lock");
    let saved: Vec<(PathBuf, Option<Vec<u8>>)> = [manifest_path.clone(), lock_path]
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).ok();
            (path, bytes)
        })
        .collect();
    let upgraded = retag(&manifest, &target.tag());
    let report = std::fs::write(&manifest_path, upgraded)
        .context("writing Cargo.toml")
        .and_then(|()| build_and_test(&sh, root));
    let (notes, deprecations) = match report {
        Ok(report) => report,
        Err(error) => {
            for (path, bytes) in saved {
                match bytes {
                    Some(bytes) => std::fs::write(&path, bytes)?,
                    None => std::fs::remove_file(&path).or_else(ignore_missing)?,
                }
            }
            return Err(error.context(format!(
                "upgrading oxiserve from {} to {} failed: Cargo.toml and Cargo.lock are as they were",
                source.tag,
                target.tag()
            )));
        }
    };
    println!(
        "upgrade: oxiserve {} -> {}: the service builds and its tests pass; Cargo.toml and \
         Cargo.lock changed, commit them",
        source.tag,
        target.tag()
    );
    match notes {
        Some(changes) => {
            println!("upgrade: what changed, from the core's CHANGELOG.md:\n");
            println!("{}\n", changelog::notes_between(&changes, current, target));
        }
        None => println!("upgrade: the core at {} has no CHANGELOG.md", target.tag()),
    }
    if deprecations.is_empty() {
        println!("upgrade: the service uses no deprecated item of the core");
    } else {
        println!(
            "upgrade: the service has {} use(s) of deprecated core items; each item goes away \
             in a later release, so move to what its note says:\n",
            deprecations.len()
        );
        for warning in &deprecations {
            println!("{warning}");
        }
    }
    Ok(())
}

/// Success for a file that was not there to remove.
fn ignore_missing(error: std::io::Error) -> std::io::Result<()> {
    if error.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(error) }
}

/// The core's source in the workspace manifest: both core lines, by git URL and tag, the same.
fn core_source(manifest: &str) -> anyhow::Result<CoreSource> {
    let mut sources = Vec::new();
    for name in CORE {
        let Some(line) = core_line(manifest, name) else {
            bail!("Cargo.toml names no `{name}` dependency: is this an oxiserve service?");
        };
        let (Some(url), Some(tag)) = (field(line, "git"), field(line, "tag")) else {
            bail!(
                "`{name}` is not a git dependency at a tag (`{}`): upgrade moves tags; a path \
                 dependency follows its checkout",
                line.trim()
            );
        };
        sources.push(CoreSource { url: url.into(), tag: tag.into() });
    }
    ensure!(
        sources[0] == sources[1],
        "`oxiserve` and `oxiserve-xtask` come from different places ({:?}, {:?}): they are one \
         release, make them the same",
        sources[0],
        sources[1]
    );
    Ok(sources.swap_remove(0))
}

/// The line of `name` in the manifest's `[workspace.dependencies]`.
fn core_line<'a>(manifest: &'a str, name: &str) -> Option<&'a str> {
    workspace_dependencies(manifest).find(|line| is_core_line(line, name))
}

/// The lines of the manifest's `[workspace.dependencies]` table.
fn workspace_dependencies(manifest: &str) -> impl Iterator<Item = &str> {
    let mut inside = false;
    manifest.lines().filter(move |line| {
        if line.starts_with('[') {
            inside = line.trim() == "[workspace.dependencies]";
            return false;
        }
        inside
    })
}

/// Whether `line` gives the dependency `name` as an inline table.
fn is_core_line(line: &str, name: &str) -> bool {
    let key = line.split_once('=').map(|(key, _)| key.trim());
    key == Some(name) && line.contains('{')
}

/// The string value of `key` in an inline table line: `key = "value"`.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("{key} = \""))? + key.len() + 4;
    let length = line[start..].find('"')?;
    Some(&line[start..start + length])
}

/// The manifest with both core lines of `[workspace.dependencies]` at `tag`.
fn retag(manifest: &str, tag: &str) -> String {
    let mut out = String::with_capacity(manifest.len());
    let mut inside = false;
    for line in manifest.split_inclusive('\n') {
        if line.starts_with('[') {
            inside = line.trim() == "[workspace.dependencies]";
        }
        let core = inside && CORE.iter().any(|name| is_core_line(line, name));
        match field(line, "tag").filter(|_| core) {
            Some(old) => {
                let (old, new) = (format!("tag = \"{old}\""), format!("tag = \"{tag}\""));
                out.push_str(&line.replacen(&old, &new, 1));
            }
            None => out.push_str(line),
        }
    }
    out
}

/// The release versions among the lines of `git ls-remote --tags --refs`.
fn release_tags(listing: &str) -> Vec<Version> {
    let tags = listing.lines().filter_map(|line| line.split_once("refs/tags/").map(|(_, tag)| tag));
    let mut versions: Vec<Version> = tags.filter_map(|tag| Version::from_tag(tag).ok()).collect();
    versions.sort();
    versions
}

/// The release to move to: the one asked for, which must be tagged, else the newest.
fn target(releases: &[Version], asked: Option<&str>, url: &str) -> anyhow::Result<Version> {
    match asked {
        Some(text) => {
            let version = Version::parse(text.strip_prefix('v').unwrap_or(text))?;
            ensure!(releases.contains(&version), "{url} has no release tag {}", version.tag());
            Ok(version)
        }
        None => {
            releases.last().copied().with_context(|| format!("{url} has no release tag vX.Y.Z"))
        }
    }
}

/// Updates the lock file for the core, builds every target and runs the tests: the core's
/// changelog at the new release (if it has one) and the deprecation warnings the build gave.
fn build_and_test(sh: &Shell, root: &Path) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let packages = CORE.iter().flat_map(|name| ["-p", name]);
    cmd!(sh, "cargo update --quiet {packages...}").run().context("updating Cargo.lock")?;
    let deprecations = build(sh)?;
    let library = onnxruntime::provision(root)?;
    let _library = sh.push_env("ORT_DYLIB_PATH", &library);
    cmd!(sh, "cargo test --workspace --quiet").run().context("the service's tests fail")?;
    let changelog = core_root(sh)?.map(|dir| std::fs::read_to_string(dir.join("CHANGELOG.md")));
    Ok((changelog.and_then(Result::ok), deprecations))
}

/// Builds every target of the workspace, showing the compiler's errors and warnings except
/// deprecations, which it returns (each once).
fn build(sh: &Shell) -> anyhow::Result<Vec<String>> {
    let output = cmd!(sh, "cargo build --workspace --all-targets --message-format json")
        .ignore_status()
        .output()?;
    let mut deprecations = BTreeSet::new();
    let mut shown = BTreeSet::new();
    for message in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(message) else { continue };
        if message["reason"] != "compiler-message" {
            continue;
        }
        let diagnostic = &message["message"];
        let Some(rendered) = diagnostic["rendered"].as_str() else { continue };
        if diagnostic["code"]["code"] == "deprecated" {
            deprecations.insert(rendered.to_string());
        } else if shown.insert(rendered.to_string()) {
            eprint!("{rendered}");
        }
    }
    ensure!(output.status.success(), "the service does not build on the new release");
    Ok(deprecations.into_iter().collect())
}

/// The root of the core's git checkout that cargo built from.
fn core_root(sh: &Shell) -> anyhow::Result<Option<PathBuf>> {
    let metadata = cmd!(sh, "cargo metadata --format-version 1").quiet().read()?;
    let metadata: Value = serde_json::from_str(&metadata)?;
    let packages = metadata["packages"].as_array().map_or(&[][..], Vec::as_slice);
    let core = packages.iter().find(|package| {
        package["name"] == CORE[0]
            && package["source"].as_str().is_some_and(|source| source.starts_with("git+"))
    });
    let manifest = core.and_then(|package| package["manifest_path"].as_str());
    // `<root>/crates/oxiserve/Cargo.toml`.
    Ok(manifest.and_then(|path| Path::new(path).ancestors().nth(3)).map(Path::to_path_buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "[package]\nname = \"demo\"\n\n[dev-dependencies]\n\
        oxiserve = { workspace = true, features = [\"testing\"] }\n\n[workspace.dependencies]\n\
        oxiserve = { git = \"https://example.com/oxiserve.git\", tag = \"v0.1.0\" }\n\
        oxiserve-xtask = { git = \"https://example.com/oxiserve.git\", tag = \"v0.1.0\" }\n\
        other = { git = \"https://example.com/other.git\", tag = \"v0.1.0\" }\n";

    #[test]
    fn the_core_source_is_read_and_retagged_alone() {
        let source = core_source(MANIFEST).unwrap();
        let expected =
            CoreSource { url: "https://example.com/oxiserve.git".into(), tag: "v0.1.0".into() };
        assert_eq!(source, expected);
        let upgraded = retag(MANIFEST, "v0.2.0");
        assert_eq!(core_source(&upgraded).unwrap().tag, "v0.2.0");
        assert!(upgraded.contains("other.git\", tag = \"v0.1.0\""), "{upgraded}");
        assert_eq!(upgraded.lines().count(), MANIFEST.lines().count());
    }

    #[test]
    fn a_core_by_path_or_split_is_refused_with_the_reason() {
        let by_path = "[workspace.dependencies]\n\
                       oxiserve = { path = \"../oxiserve/crates/oxiserve\" }\n\
                       oxiserve-xtask = { path = \"../oxiserve/crates/oxiserve-xtask\" }\n";
        let error = core_source(by_path).unwrap_err().to_string();
        assert!(error.contains("not a git dependency at a tag"), "{error}");
        let split = MANIFEST.replacen(
            "tag = \"v0.1.0\" }\noxiserve-xtask",
            "tag = \"v0.2.0\" }\noxiserve-xtask",
            1,
        );
        let error = core_source(&split).unwrap_err().to_string();
        assert!(error.contains("different places"), "{error}");
        assert!(core_source("[package]\n").unwrap_err().to_string().contains("no `oxiserve`"));
    }

    #[test]
    fn the_target_is_the_newest_release_or_the_one_asked_for() {
        let listing = "aaa\trefs/tags/v0.1.0\nbbb\trefs/tags/v0.10.0\nccc\trefs/tags/v0.2.0\n\
                       ddd\trefs/tags/nightly\neee\trefs/tags/v1.0.0-rc.1\n";
        let releases = release_tags(listing);
        assert_eq!(releases, [Version(0, 1, 0), Version(0, 2, 0), Version(0, 10, 0)]);
        assert_eq!(target(&releases, None, "u").unwrap(), Version(0, 10, 0));
        assert_eq!(target(&releases, Some("v0.2.0"), "u").unwrap(), Version(0, 2, 0));
        assert_eq!(target(&releases, Some("0.2.0"), "u").unwrap(), Version(0, 2, 0));
        let missing = target(&releases, Some("0.3.0"), "u").unwrap_err().to_string();
        assert!(missing.contains("no release tag v0.3.0"), "{missing}");
        assert!(target(&[], None, "u").is_err());
    }
}
