//! `cargo xtask release` on a throwaway git repository laid out like this one (a workspace with
//! the two core crates and a changelog): the release commit, its tag and its record in
//! CHANGELOG.md; and each refusal (a version not above the last, a dirty tree, nothing in
//! `Unreleased`), which leaves the repository as it was.

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
    write(dir, "Cargo.toml", "[workspace]\nresolver = \"3\"\nmembers = [\"crates/*\"]\n");
    for name in ["oxiserve", "oxiserve-xtask"] {
        let manifest =
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n");
        write(dir, &format!("crates/{name}/Cargo.toml"), &manifest);
        write(dir, &format!("crates/{name}/src/lib.rs"), "//! A core crate.\n");
    }
    let changelog = "# Changelog\n\n## [Unreleased]\n\n## [0.1.0] - 2026-12-01\n\nCut from 0000000.\n\n- first\n";
    write(dir, "CHANGELOG.md", changelog);
    git(dir, &["init", "--quiet"]);
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "start"]);
    let start = git(dir, &["rev-parse", "--short=12", "HEAD"]);

    // Nothing in `Unreleased`: refused.
    let (code, said) = release(dir, &["0.2.0", "--skip-tests"]);
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
    let (code, said) = release(dir, &["0.1.0", "--skip-tests"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("not above the last release, 0.1.0"), "{said}");
    write(dir, "crates/oxiserve/src/lib.rs", "//! Changed.\n");
    let (code, said) = release(dir, &["0.2.0", "--skip-tests"]);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("uncommitted changes"), "{said}");
    git(dir, &["checkout", "--quiet", "--", "."]);
    assert_eq!(git(dir, &["rev-parse", "--short=12", "HEAD"]), cut_from, "refusals commit nothing");

    // The release.
    let (code, said) = release(dir, &["0.2.0", "--skip-tests"]);
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
