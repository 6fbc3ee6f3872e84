//! `cargo xtask release VERSION`: cuts a release of the core crates (`oxiserve` and
//! `oxiserve-xtask`, which share one version).
//!
//! The tag scheme is `vMAJOR.MINOR.PATCH`, an annotated tag on the release commit. Tags may not
//! travel with the repository, so the record is kept in the tree too: every release heading in
//! `CHANGELOG.md` (Keep a Changelog) is followed by the commit the release was cut from
//! (`Cut from <commit>.`), where later tools find their baseline (`oxiserve_xtask::changelog::released`).
//!
//! In order, stopping at the first that fails, with nothing changed: VERSION is above the last
//! release and not below the crates' version; the tree is clean; `Unreleased` says something;
//! the core's public API since the last release fits the kind of release VERSION is (major,
//! minor, patch; `crate::api_check`, where `--skip-api-check` is for the command's own tests);
//! `cargo xtask test` passes (`--skip-tests`, likewise). Then the crates' versions and the lock
//! file are bumped, `Unreleased` moves under VERSION, and the commit `vVERSION` is made and
//! tagged.

use std::path::Path;

use anyhow::{Context, bail, ensure};
use oxiserve_xtask::changelog::{Release, Version, released};
use xshell::{Shell, cmd};

use crate::api_check::{self, ReleaseType};

/// The manifests of the crates a release versions.
const CORE: [&str; 2] = ["crates/oxiserve/Cargo.toml", "crates/oxiserve-xtask/Cargo.toml"];
/// The heading of the changes not released yet.
const UNRELEASED: &str = "## [Unreleased]";

/// Options of `cargo xtask release`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The version to release, `MAJOR.MINOR.PATCH`.
    version: String,
    /// Do not run `cargo xtask test` first (for the tests of this command).
    #[arg(long)]
    skip_tests: bool,
    /// Do not check the public API against the last release (for the tests of this command).
    #[arg(long)]
    skip_api_check: bool,
}

impl Args {
    /// Releasing `version` without running the tests or the API check first: for the checks
    /// of the commands that read releases, on throwaway repositories.
    pub(crate) fn untested(version: Version) -> Self {
        Self { version: version.to_string(), skip_tests: true, skip_api_check: true }
    }
}

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    let version = Version::parse(&args.version)?;
    let path = root.join("CHANGELOG.md");
    let changelog = std::fs::read_to_string(&path).context("reading CHANGELOG.md")?;
    let last = released(&changelog).into_iter().next();
    if let Some(last) = &last {
        ensure!(
            version > last.version,
            "{version} is not above the last release, {}",
            last.version
        );
    }
    let current = crate_version(&std::fs::read_to_string(root.join(CORE[0]))?)?;
    ensure!(version >= current, "{version} is below the crates' version, {current}");
    let sh = Shell::new()?;
    sh.change_dir(root);
    let dirty = cmd!(sh, "git status --porcelain").quiet().read()?;
    ensure!(
        dirty.is_empty(),
        "the tree has uncommitted changes: commit or stash them first\n{dirty}"
    );
    let notes = unreleased(&changelog)?;
    ensure!(
        !notes.is_empty(),
        "`{UNRELEASED}` in CHANGELOG.md is empty: say what the release changes"
    );
    if let Some(Release { version: last, commit: Some(baseline) }) = &last
        && !args.skip_api_check
    {
        let kind = ReleaseType::between(*last, version);
        let findings = api_check::check(&sh, root, baseline, kind)?;
        let misfits: Vec<String> =
            findings.iter().filter(|finding| !finding.fits).map(ToString::to_string).collect();
        ensure!(
            misfits.is_empty(),
            "{version} after {last} may {}, but the public API changed more than that: release \
             a bigger version, or deprecate instead of breaking\n{}",
            kind.allows(),
            misfits.join("\n")
        );
    }
    if !args.skip_tests {
        crate::test::run(root, &crate::test::Args::default())
            .context("the tests fail: no release")?;
    }
    let commit = cmd!(sh, "git rev-parse --short=12 HEAD").quiet().read()?;
    for manifest in CORE {
        let text = std::fs::read_to_string(root.join(manifest))?;
        std::fs::write(root.join(manifest), set_version(&text, version)?)?;
    }
    cmd!(sh, "cargo update --workspace --offline --quiet").run()?;
    let date = cmd!(sh, "date -u +%Y-%m-%d").quiet().read()?;
    std::fs::write(&path, cut(&changelog, version, &date, &commit)?)?;
    let tag = version.tag();
    cmd!(sh, "git add CHANGELOG.md Cargo.lock {CORE...}").quiet().run()?;
    cmd!(sh, "git commit --quiet --message {tag}").quiet().run()?;
    let message = format!("oxiserve {version}");
    cmd!(sh, "git tag --annotate {tag} --message {message}").quiet().run()?;
    println!("release: {tag} tagged; CHANGELOG.md records it as cut from {commit}");
    if let Some(Release { version, commit: Some(since) }) = last {
        println!("release: its changes are those since v{version}, cut from {since}");
    }
    Ok(())
}

/// What `Unreleased` says, trimmed.
fn unreleased(changelog: &str) -> anyhow::Result<&str> {
    let start = changelog.find(UNRELEASED).context("CHANGELOG.md has no `## [Unreleased]`")?;
    let body = &changelog[start + UNRELEASED.len()..];
    let end = body.find("\n## [").map_or(body.len(), |at| at + 1);
    Ok(body[..end].trim())
}

/// `changelog` with what `Unreleased` says moved under a heading of its own for `version`.
fn cut(changelog: &str, version: Version, date: &str, commit: &str) -> anyhow::Result<String> {
    let notes = unreleased(changelog)?;
    let start = changelog.find(UNRELEASED).context("CHANGELOG.md has no `## [Unreleased]`")?;
    let after = &changelog[start + UNRELEASED.len()..];
    let rest = after.find("\n## [").map_or("", |at| &after[at + 1..]);
    let release = format!("## [{version}] - {date}\n\nCut from {commit}.\n\n{notes}\n");
    let rest = if rest.is_empty() { String::new() } else { format!("\n{rest}") };
    Ok(format!("{}{UNRELEASED}\n\n{release}{rest}", &changelog[..start]))
}

/// The `[package]` version stated in the manifest `text`, as written there.
fn stated_version(text: &str) -> Option<&str> {
    let line = text.lines().find_map(|line| line.strip_prefix("version = \""));
    line.and_then(|rest| rest.strip_suffix('"'))
}

/// The version of the package whose directory is `dir`, as its `Cargo.toml` states it.
pub(crate) fn package_version(dir: &Path) -> anyhow::Result<String> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let version = stated_version(&text).map(str::to_string);
    version.with_context(|| format!("{} states no version", manifest.display()))
}

/// The `[package]` version of the manifest `text`.
fn crate_version(text: &str) -> anyhow::Result<Version> {
    Version::parse(stated_version(text).context("a manifest states its version")?)
}

/// The manifest `text` with its `[package]` version set to `version`.
fn set_version(text: &str, version: Version) -> anyhow::Result<String> {
    let Some(line) = text.lines().find(|line| line.starts_with("version = \"")) else {
        bail!("a manifest without a version line");
    };
    Ok(text.replacen(line, &format!("version = \"{version}\""), 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGELOG: &str = "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n### Added\n\n- b\n\n\
                             ## [0.1.0] - 2026-12-01\n\nCut from abc123.\n\n### Added\n\n- a\n";

    #[test]
    fn unreleased_is_what_comes_before_the_first_release() {
        assert_eq!(unreleased(CHANGELOG).unwrap(), "### Added\n\n- b");
    }

    #[test]
    fn a_release_moves_unreleased_under_its_heading() {
        let cut = cut(CHANGELOG, Version(0, 2, 0), "2026-12-02", "def456").unwrap();
        let expected = "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n## [0.2.0] - 2026-12-02\n\n\
                        Cut from def456.\n\n### Added\n\n- b\n\n## [0.1.0] - 2026-12-01\n\n\
                        Cut from abc123.\n\n### Added\n\n- a\n";
        assert_eq!(cut, expected);
        let releases = released(&cut);
        assert_eq!(releases[0].version, Version(0, 2, 0));
        assert_eq!(releases[0].commit.as_deref(), Some("def456"));
        assert_eq!(unreleased(&cut).unwrap(), "");
    }

    #[test]
    fn the_package_version_is_set() {
        let manifest = "[package]\nname = \"oxiserve\"\nversion = \"0.1.0\"\n\n[dependencies]\nx = { version = \"1\" }\n";
        let bumped = set_version(manifest, Version(0, 2, 0)).unwrap();
        assert_eq!(crate_version(&bumped).unwrap(), Version(0, 2, 0));
        assert!(bumped.contains("x = { version = \"1\" }"));
    }
}
