//! The core's release record, `CHANGELOG.md` (Keep a Changelog): every release is a heading
//! `## [MAJOR.MINOR.PATCH] - DATE`, followed by the commit it was cut from (`Cut from
//! <commit>.`), then what changed. `cargo xtask release` writes it; `cargo xtask upgrade`
//! reads the notes between two releases from the core it upgrades to.

use std::fmt;

use anyhow::Context;

/// A semantic version without pre-release or build parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u64, pub u64, pub u64);

impl Version {
    /// Parses `MAJOR.MINOR.PATCH`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let parts: Vec<u64> = text
            .split('.')
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()
            .filter(|parts: &Vec<u64>| parts.len() == 3)
            .with_context(|| format!("`{text}` is not a version MAJOR.MINOR.PATCH (e.g. 0.2.0)"))?;
        Ok(Self(parts[0], parts[1], parts[2]))
    }

    /// Parses a release tag, `vMAJOR.MINOR.PATCH`.
    pub fn from_tag(tag: &str) -> anyhow::Result<Self> {
        let version = tag.strip_prefix('v');
        Self::parse(version.with_context(|| format!("`{tag}` is not a release tag vX.Y.Z"))?)
    }

    /// The release tag of this version, `vMAJOR.MINOR.PATCH`.
    pub fn tag(self) -> String {
        format!("v{self}")
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// A release recorded in the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Its version.
    pub version: Version,
    /// The commit it was cut from, if the changelog says.
    pub commit: Option<String>,
}

/// The releases recorded in `changelog`, newest first.
pub fn released(changelog: &str) -> Vec<Release> {
    let mut releases: Vec<Release> = Vec::new();
    for line in changelog.lines() {
        if let Some(version) = heading(line) {
            releases.push(Release { version, commit: None });
        } else if let Some(commit) = line.strip_prefix("Cut from ")
            && let Some(release) = releases.last_mut().filter(|r| r.commit.is_none())
        {
            release.commit = Some(commit.trim_end_matches('.').to_string());
        }
    }
    releases
}

/// The sections of the releases after `from` up to and including `to`, newest first, as the
/// changelog writes them (heading included).
pub fn notes_between(changelog: &str, from: Version, to: Version) -> String {
    let mut notes = String::new();
    let mut taking = false;
    for line in changelog.lines() {
        if line.starts_with("## [") {
            taking = heading(line).is_some_and(|version| from < version && version <= to);
        }
        if taking {
            notes.push_str(line);
            notes.push('\n');
        }
    }
    notes.trim_end().to_string()
}

/// The version of a release heading `## [X.Y.Z] - DATE`.
fn heading(line: &str) -> Option<Version> {
    let (version, _) = line.strip_prefix("## [")?.split_once(']')?;
    Version::parse(version).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGELOG: &str = "# Changelog\n\nIntro.\n\n## [Unreleased]\n\n- c\n\n\
                             ## [0.3.0] - 2026-12-03\n\nCut from 333.\n\n### Deprecated\n\n- x\n\n\
                             ## [0.2.0] - 2026-12-02\n\nCut from 222.\n\n### Added\n\n- b\n\n\
                             ## [0.1.0] - 2026-12-01\n\nCut from 111.\n\n### Added\n\n- a\n";

    #[test]
    fn versions_parse_and_order() {
        assert!(Version::parse("0.10.0").unwrap() > Version::parse("0.9.3").unwrap());
        assert_eq!(Version::parse("1.2.3").unwrap().to_string(), "1.2.3");
        for bad in ["1.2", "v1.2.3", "1.2.3-rc.1", "1.2.x", ""] {
            assert!(Version::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Version::from_tag("v0.2.0").unwrap(), Version(0, 2, 0));
        assert_eq!(Version(0, 2, 0).tag(), "v0.2.0");
        assert!(Version::from_tag("0.2.0").is_err());
    }

    #[test]
    fn the_changelog_records_releases_and_their_commits() {
        let releases = released(CHANGELOG);
        let versions: Vec<Version> = releases.iter().map(|r| r.version).collect();
        assert_eq!(versions, [Version(0, 3, 0), Version(0, 2, 0), Version(0, 1, 0)]);
        let commits: Vec<Option<&str>> = releases.iter().map(|r| r.commit.as_deref()).collect();
        assert_eq!(commits, [Some("333"), Some("222"), Some("111")]);
    }

    #[test]
    fn notes_between_two_releases_leave_out_both_ends_outside() {
        let notes = notes_between(CHANGELOG, Version(0, 1, 0), Version(0, 3, 0));
        assert!(notes.starts_with("## [0.3.0] - 2026-12-03\n\nCut from 333."), "{notes}");
        assert!(notes.ends_with("### Added\n\n- b"), "{notes}");
        assert!(!notes.contains("0.1.0") && !notes.contains("Unreleased"), "{notes}");
        let one = notes_between(CHANGELOG, Version(0, 1, 0), Version(0, 2, 0));
        assert_eq!(one, "## [0.2.0] - 2026-12-02\n\nCut from 222.\n\n### Added\n\n- b");
    }
}
