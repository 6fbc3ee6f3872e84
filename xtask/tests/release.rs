//! `cargo xtask release` on throwaway git repositories laid out like this one (a workspace with
//! the two core crates and a changelog): the release commit, its tag and its record in
//! CHANGELOG.md; each refusal (a version not above the last, a dirty tree, nothing in
//! `Unreleased`), which leaves the repository as it was; and the public API check with the real
//! cargo-semver-checks (`CARGO_SEMVER_CHECKS`, which `cargo xtask test` sets): an item removed
//! in a patch release is refused by name.

use std::path::Path;
use std::process::Command;

/// Who commits in the throwaway repository.
const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "test"),
    ("GIT_AUTHOR_EMAIL", "test@example.com"),
    ("GIT_COMMITTER_NAME", "test"),
    ("GIT_COMMITTER_EMAIL", "test@example.com"),
];

/// Runs `git` in `dir`, returning what it printed.
fn git(dir: &Path, args: &[&str]) -> String {
    let mut command = Command::new("git");
    command.current_dir(dir).args(args).envs(IDENTITY);
    let output = command.output().expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// `xtask release` with `args` on the repository `dir`: exit code and what it said.
fn release(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .envs(IDENTITY)
        .env("XTASK_ROOT", dir)
        .env("RUST_BACKTRACE", "0")
        .arg("release")
        .args(args)
        .output()
        .expect("xtask runs");
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    (output.status.code(), said.into_owned())
}

fn write(dir: &Path, path: &str, text: &str) {
    let path = dir.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_release_is_committed_tagged_and_recorded() {
    let repository = tempfile::tempdir().unwrap();
    let dir = repository.path();
    let changelog = "# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2026-12-01\n\nCut from 0000000.\n\n- first\n";
    core(dir, "//! A core crate.\n", changelog);
    git(dir, &["init", "--quiet"]);
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "start"]);
    let start = git(dir, &["rev-parse", "--short=12", "HEAD"]);

    // Nothing in `Unreleased`: refused.
    let (code, said) = release(dir, &["0.2.0", "--skip-tests", "--skip-api-check"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("is empty"), "{said}");

    // What changed, committed: then a version not above the last is refused, and so is a
    // dirty tree.
    let changelog =
        changelog.replace("## [Unreleased]\n", "## [Unreleased]\n\n### Added\n\n- second\n");
    write(dir, "CHANGELOG.md", &changelog);
    git(dir, &["commit", "--quiet", "--all", "-m", "changes"]);
    let cut_from = git(dir, &["rev-parse", "--short=12", "HEAD"]);
    assert_ne!(cut_from, start);
    let (code, said) = release(dir, &["0.1.0", "--skip-tests", "--skip-api-check"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("not above the last release, 0.1.0"), "{said}");
    write(dir, "crates/oxiserve/src/lib.rs", "//! Changed.\n");
    let (code, said) = release(dir, &["0.2.0", "--skip-tests", "--skip-api-check"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("uncommitted changes"), "{said}");
    git(dir, &["checkout", "--quiet", "--", "."]);
    assert_eq!(git(dir, &["rev-parse", "--short=12", "HEAD"]), cut_from, "refusals commit nothing");

    // The release.
    let (code, said) = release(dir, &["0.2.0", "--skip-tests", "--skip-api-check"]);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("since v0.1.0, cut from 0000000"), "{said}");
    assert_eq!(git(dir, &["status", "--porcelain"]), "", "everything is committed");
    assert_eq!(git(dir, &["log", "-1", "--format=%s"]), "v0.2.0");
    assert_eq!(git(dir, &["rev-parse", "v0.2.0^{commit}"]), git(dir, &["rev-parse", "HEAD"]));
    for name in ["oxiserve", "oxiserve-xtask"] {
        let manifest =
            std::fs::read_to_string(dir.join(format!("crates/{name}/Cargo.toml"))).unwrap();
        assert!(manifest.contains("version = \"0.2.0\""), "{manifest}");
    }
    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"oxiserve\"\nversion = \"0.2.0\""), "{lock}");
    let changelog = std::fs::read_to_string(dir.join("CHANGELOG.md")).unwrap();
    assert!(
        changelog.contains(&format!("Cut from {cut_from}.\n\n### Added\n\n- second\n")),
        "{changelog}"
    );
    assert!(changelog.find("## [Unreleased]\n\n## [0.2.0]").is_some(), "{changelog}");
}

/// A workspace of the two core crates (`publish = false`, as here) at 0.1.0, with `library`
/// as the `oxiserve` crate's code, and `changelog`.
fn core(dir: &Path, library: &str, changelog: &str) {
    write(dir, "Cargo.toml", "[workspace]\nresolver = \"3\"\nmembers = [\"crates/*\"]\n");
    for name in ["oxiserve", "oxiserve-xtask"] {
        let manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n"
        );
        write(dir, &format!("crates/{name}/Cargo.toml"), &manifest);
        write(dir, &format!("crates/{name}/src/lib.rs"), "//! A core crate.\n");
    }
    write(dir, "crates/oxiserve/src/lib.rs", library);
    write(dir, "CHANGELOG.md", changelog);
    write(dir, ".gitignore", "target/\n");
}

#[test]
fn a_release_too_small_for_its_api_changes_is_refused_naming_the_items() {
    assert!(
        std::env::var_os("CARGO_SEMVER_CHECKS").is_some(),
        "CARGO_SEMVER_CHECKS names cargo-semver-checks (cargo xtask test sets it)"
    );
    let repository = tempfile::tempdir().unwrap();
    let dir = repository.path();
    let both = "//! The core.\n\n/// The answer.\npub fn answer() -> u32 {\n    42\n}\n\n\
                /// Another.\npub fn other() -> u32 {\n    7\n}\n";
    core(dir, both, "# Changelog\n\n## [Unreleased]\n\n### Added\n\n- `answer`, `other`\n");
    git(dir, &["init", "--quiet"]);
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "start"]);
    let (code, said) = release(dir, &["0.1.0", "--skip-tests"]);
    assert_eq!(code, Some(0), "the first release has nothing to compare with: {said}");

    // `answer` removed: not in a patch release.
    let changelog = std::fs::read_to_string(dir.join("CHANGELOG.md")).unwrap();
    let one = "//! The core.\n\n/// Another.\npub fn other() -> u32 {\n    7\n}\n";
    write(dir, "crates/oxiserve/src/lib.rs", one);
    let changelog = changelog.replacen(
        "## [Unreleased]\n",
        "## [Unreleased]\n\n### Removed\n\n- `answer`\n",
        1,
    );
    write(dir, "CHANGELOG.md", &changelog);
    git(dir, &["commit", "--quiet", "--all", "-m", "remove answer"]);
    let head = git(dir, &["rev-parse", "HEAD"]);
    let (code, said) = release(dir, &["0.1.1", "--skip-tests"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("0.1.1 after 0.1.0 may add to the public API, not break it"), "{said}");
    assert!(said.contains("function_missing"), "{said}");
    assert!(said.contains("function oxiserve::answer"), "the item is named: {said}");
    assert!(!said.contains("oxiserve::other"), "only what broke is named: {said}");
    assert_eq!(git(dir, &["rev-parse", "HEAD"]), head, "a refusal commits nothing");
    assert_eq!(git(dir, &["tag", "--list", "v0.1.1"]), "", "and tags nothing");

    // Before 1.0 a minor release may break: 0.2.0 is cut.
    let (code, said) = release(dir, &["0.2.0", "--skip-tests"]);
    assert_eq!(code, Some(0), "{said}");
    assert_eq!(git(dir, &["log", "-1", "--format=%s"]), "v0.2.0");
}
