//! The core's public API against its last release, with `cargo-semver-checks` (pinned,
//! installed into `.cache/cargo-semver-checks/`): what `cargo xtask release` checks before it
//! cuts a version, and what `cargo xtask test` reports.
//!
//! The baseline is the commit the last release was cut from, as `CHANGELOG.md` records it
//! (tags may not travel with the repository). The tool compares the rustdoc JSON of each core
//! crate (every feature on) at the baseline and now, which this module builds itself, with
//! the nightly-only JSON output allowed to rustdoc alone, into the repository's own target
//! directory: the dependencies clippy and rustdoc already checked are not checked again, as
//! they are when the tool builds from `--baseline-rev` in a target directory of its own (eight
//! minutes against under one in `cargo xtask test` on a 2-core machine). The baseline is the
//! commit's files, unpacked under `target/api-check/`. A check counts as run only when its
//! summary line (`N checks: …`) is there.

use std::path::{Path, PathBuf};

use anyhow::{Context, ensure};
use oxiserve_xtask::changelog::{Release, Version};
use xshell::{Shell, cmd};

/// The pinned version of the tool.
const TOOL_VERSION: &str = "0.51.0";
/// Where it is installed, under the repository.
const INSTALL: &str = ".cache/cargo-semver-checks";
/// An installed binary to use instead (the command's own tests, which run on throwaway
/// repositories, point it at the project's).
pub(crate) const BINARY_VARIABLE: &str = "CARGO_SEMVER_CHECKS";
/// Where the baseline's files and both sides' rustdoc JSON go, under the repository.
const SCRATCH: &str = "target/api-check";
/// The crates whose API is checked: the two core crates, one version.
const CRATES: [&str; 2] = ["oxiserve", "oxiserve-xtask"];

/// The kind of release a change needs, as `cargo-semver-checks` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReleaseType {
    Major,
    Minor,
    Patch,
}

impl ReleaseType {
    /// What the release from `last` to `next` may change, as cargo reads versions: before
    /// 1.0 the minor number is the one that may break (0.1 to 0.2 is major) and the patch
    /// number the one that may add (0.1.0 to 0.1.1 is minor).
    pub(crate) fn between(last: Version, next: Version) -> Self {
        let (breaking, adding) = if last.0 == 0 && next.0 == 0 {
            ((last.1, next.1), (last.2, next.2))
        } else {
            ((last.0, next.0), (last.1, next.1))
        };
        if breaking.0 != breaking.1 {
            Self::Major
        } else if adding.0 != adding.1 {
            Self::Minor
        } else {
            Self::Patch
        }
    }

    /// What a release of this kind may do to the public API.
    pub(crate) fn allows(self) -> &'static str {
        match self {
            Self::Major => "break the public API",
            Self::Minor => "add to the public API, not break it",
            Self::Patch => "leave the public API as it is",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Major => "major",
            Self::Minor => "minor",
            Self::Patch => "patch",
        }
    }
}

/// What the check found in one crate.
#[derive(Debug)]
pub(crate) struct Finding {
    pub(crate) krate: &'static str,
    /// Whether the changes fit the release type.
    pub(crate) fits: bool,
    /// What the tool's summary says the changes need (`semver requires new major version`).
    pub(crate) summary: String,
    /// Each failed lint with the items it names, as the tool says them.
    pub(crate) failures: Vec<String>,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.krate, self.summary)?;
        for failure in &self.failures {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

/// The tool's binary: `CARGO_SEMVER_CHECKS`, else the pinned version installed into the
/// repository's cache (built from crates.io the first time, about four minutes).
pub(crate) fn tool(sh: &Shell, root: &Path) -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os(BINARY_VARIABLE) {
        return Ok(binary.into());
    }
    let install = root.join(INSTALL);
    let binary = install.join("bin/cargo-semver-checks");
    let installed = binary.is_file()
        && cmd!(sh, "{binary} --version")
            .quiet()
            .read()
            .is_ok_and(|said| said.trim().ends_with(TOOL_VERSION));
    if !installed {
        // Built unoptimised, its dependencies too (its manifest's dev profile optimises them),
        // and without debug info: 3m44s against 6m12s for its release build on a 2-core
        // machine, and the check of the core's JSON takes seconds either way.
        let version = format!("={TOOL_VERSION}");
        let unoptimised = [
            "--debug",
            "--config",
            "profile.dev.package.\"*\".opt-level=0",
            "--config",
            "profile.dev.debug=0",
        ];
        cmd!(sh, "cargo install --quiet --locked {unoptimised...} cargo-semver-checks")
            .args(["--version", &version])
            .arg("--root")
            .arg(&install)
            .run()
            .context("installing cargo-semver-checks")?;
    }
    Ok(binary)
}

/// Checks each core crate of the repository at `root` against the commit `baseline`, for a
/// release of `kind`.
pub(crate) fn check(
    sh: &Shell,
    root: &Path,
    baseline: &str,
    kind: ReleaseType,
) -> anyhow::Result<Vec<Finding>> {
    let binary = tool(sh, root)?;
    let scratch = root.join(SCRATCH);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let old = scratch.join("baseline");
    std::fs::create_dir_all(&old)?;
    let archive = scratch.join("baseline.tar");
    cmd!(sh, "git -C {root} archive --output {archive} {baseline}").quiet().run()?;
    cmd!(sh, "tar -xf {archive} -C {old}").quiet().run()?;
    let rustdoc = rustdoc_wrapper(&scratch)?;
    let kind_name = kind.name();
    let mut findings = Vec::new();
    for krate in CRATES {
        let was = rustdoc_json(sh, root, &old, krate, &rustdoc)?;
        let is = rustdoc_json(sh, root, root, krate, &rustdoc)?;
        let output = cmd!(
            sh,
            "{binary} semver-checks check-release --release-type {kind_name} --color never"
        )
        .arg("--baseline-rustdoc")
        .arg(&was)
        .arg("--current-rustdoc")
        .arg(&is)
        .quiet()
        .ignore_status()
        .output()?;
        let report = String::from_utf8_lossy(&output.stdout);
        let said = report.clone() + String::from_utf8_lossy(&output.stderr);
        ensure!(
            ran(&said),
            "cargo-semver-checks did not check {krate} against {baseline} (no summary line):\n{said}"
        );
        let summary = said.lines().find_map(|line| line.trim().strip_prefix("Summary "));
        findings.push(Finding {
            krate,
            fits: output.status.success(),
            summary: summary.unwrap_or("no summary").trim().to_string(),
            failures: failures(&report),
        });
    }
    std::fs::remove_dir_all(&scratch)?;
    Ok(findings)
}

/// A `rustdoc` for cargo to run, written into `dir`: the toolchain's, allowed the unstable
/// JSON output (`RUSTC_BOOTSTRAP=1`). Set for rustdoc alone, not for cargo, whose build
/// scripts would see it and rebuild (anyhow, thiserror and proc-macro2 watch it).
fn rustdoc_wrapper(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;

    let wrapper = dir.join("rustdoc");
    std::fs::write(&wrapper, "#!/bin/sh\nRUSTC_BOOTSTRAP=1 exec rustdoc \"$@\"\n")?;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))?;
    Ok(wrapper)
}

/// Builds the rustdoc JSON of `krate` in the workspace at `workspace`, every feature on, into
/// the target directory of the repository at `root`; returns a copy of it kept under
/// `target/api-check/` (the next build writes to the same file).
fn rustdoc_json(
    sh: &Shell,
    root: &Path,
    workspace: &Path,
    krate: &str,
    rustdoc: &Path,
) -> anyhow::Result<PathBuf> {
    let target = root.join("target");
    let _dir = sh.push_dir(workspace);
    let _target = sh.push_env("CARGO_TARGET_DIR", &target);
    let _rustdoc = sh.push_env("RUSTDOC", rustdoc);
    let json = ["-Z", "unstable-options", "--output-format", "json"];
    cmd!(sh, "cargo rustdoc --quiet -p {krate} --lib --all-features -- {json...}")
        .run()
        .with_context(|| {
            format!("building the rustdoc JSON of {krate} in {}", workspace.display())
        })?;
    let name = krate.replace('-', "_");
    let side = if workspace == root { "current" } else { "baseline" };
    let kept = root.join(SCRATCH).join(format!("{name}-{side}.json"));
    std::fs::copy(target.join("doc").join(format!("{name}.json")), &kept)?;
    Ok(kept)
}

/// Reports, without failing, how the core's public API changed since the last release
/// recorded in `CHANGELOG.md`: whether the next patch release could carry the changes, and if
/// not, the items behind them. Fails only when a check did not run.
pub(crate) fn report(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let changelog = std::fs::read_to_string(root.join("CHANGELOG.md"))?;
    let last = oxiserve_xtask::changelog::released(&changelog).into_iter().next();
    let Some(Release { version, commit: Some(baseline) }) = last else {
        println!("api check: no release with its commit in CHANGELOG.md yet: nothing to compare");
        return Ok(());
    };
    let patch = Version(version.0, version.1, version.2 + 1);
    let breaking =
        if version.0 == 0 { Version(0, version.1 + 1, 0) } else { Version(version.0 + 1, 0, 0) };
    for finding in check(sh, root, &baseline, ReleaseType::between(version, patch))? {
        let since = format!("{} since {version} (cut from {baseline})", finding.krate);
        if finding.fits {
            println!("api check: {since} fits the next patch release, {patch}");
        } else {
            println!(
                "api check: {since} changed more than {patch} may carry (from {breaking} on, \
                 or deprecate instead); {finding}"
            );
        }
    }
    Ok(())
}

/// Whether the tool's output has the summary line of a check that ran: `N checks: …`.
fn ran(said: &str) -> bool {
    said.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.windows(2).any(|pair| pair[0].parse::<u32>().is_ok() && pair[1] == "checks:")
    })
}

/// The failed lints of the tool's report (its standard output), each with the items it lists
/// under `Failed in:`.
fn failures(report: &str) -> Vec<String> {
    let mut failures: Vec<String> = Vec::new();
    let mut listing = false;
    for line in report.lines() {
        if let Some(lint) = line.trim().strip_prefix("--- failure ") {
            failures.push(lint.trim_end_matches(" ---").to_string());
            listing = false;
        } else if line.trim() == "Failed in:" {
            listing = true;
        } else if listing && line.starts_with("  ") && !line.trim().is_empty() {
            if let Some(failure) = failures.last_mut() {
                failure.push_str("\n    ");
                failure.push_str(line.trim());
            }
        } else if listing {
            listing = false;
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAID: &str = "     Checking tiny v0.1.0 -> v0.1.0 (no change; assume patch)\n\
        \x20    Checked [   0.005s] 229 checks: 228 pass, 1 fail, 0 warn, 31 skip\n\n\
        --- failure function_missing: pub fn removed or renamed ---\n\n\
        Description:\nA publicly-visible function cannot be imported by its prior path.\n\
        \x20       ref: https://doc.rust-lang.org/cargo/reference/semver.html#item-remove\n\n\
        Failed in:\n\
        \x20 function tiny::answer, previously in file /tmp/x/src/lib.rs:2\n\
        \x20 function tiny::other, previously in file /tmp/x/src/lib.rs:5\n\n\
        \x20    Summary semver requires new major version: 1 major and 0 minor checks failed\n";

    #[test]
    fn a_check_ran_only_with_its_summary_and_lists_what_failed() {
        assert!(ran(SAID));
        assert!(!ran("warning: skipping package tiny: publish = false\n"));
        assert_eq!(
            failures(SAID),
            ["function_missing: pub fn removed or renamed\n    function tiny::answer, previously \
              in file /tmp/x/src/lib.rs:2\n    function tiny::other, previously in file \
              /tmp/x/src/lib.rs:5"]
        );
    }

    #[test]
    fn the_release_type_follows_the_versions() {
        let v = |text| Version::parse(text).unwrap();
        assert_eq!(ReleaseType::between(v("0.1.0"), v("0.1.1")), ReleaseType::Minor);
        assert_eq!(ReleaseType::between(v("0.1.0"), v("0.2.0")), ReleaseType::Major);
        assert_eq!(ReleaseType::between(v("0.9.3"), v("1.0.0")), ReleaseType::Major);
        assert_eq!(ReleaseType::between(v("1.2.3"), v("1.3.0")), ReleaseType::Minor);
        assert_eq!(ReleaseType::between(v("1.2.3"), v("1.2.4")), ReleaseType::Patch);
    }
}
