//! The check of `cargo xtask upgrade`, the command a service in a repository of its own runs
//! to take a newer core, in `cargo xtask test`: end to end, on real git repositories and
//! real builds, under `target/upgrade-check/`.
//!
//! 1. A throwaway git repository of the core (this checkout's `crates/`, `docs/`, workspace
//!    manifest, lock file) with three releases cut by `cargo xtask release`: the first (this checkout's
//!    version) adds a function, the second (a minor release) deprecates it for a new one, the
//!    third (the next minor) removes it.
//! 2. A standalone service (`cargo xtask new --standalone`, the blank kind) on the first
//!    release, with a test that calls the function.
//!    Its `renovate.json`, checked by Renovate itself (pinned in `xtask/renovate/`): a dry run
//!    on the service proposes the newest release for both core crates, in one branch.
//! 3. `cargo xtask upgrade --to` the second: it must succeed, move both core lines, and print
//!    the changelog of the second release and the deprecation, with its note.
//! 4. `cargo xtask upgrade` (the newest, the third, which breaks the service): it must fail
//!    and leave `Cargo.toml` and `Cargo.lock` byte for byte as they were.
//!
//! The builds share this workspace's build directory, so only the core crates (from their
//! new git source) and the service compile anew.

use std::path::Path;

use anyhow::{Context, ensure};
use oxiserve_xtask::changelog::Version;
use serde_json::Value;
use xshell::{Shell, cmd};

use crate::{new, npm, release, template};

/// The service generated for the check.
const SERVICE: &str = "upgrade-check";

/// The core function the releases add, deprecate and remove, and its replacement.
const OLD: &str = "upgrade_check_answer";
const NEW: &str = "upgrade_check_answer_now";

pub(crate) fn run(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let scratch = root.join("target/upgrade-check");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    let core = scratch.join("core");
    let first = Version::parse(&release::package_version(&root.join("crates/oxiserve"))?)?;
    let second = Version(first.0, first.1 + 1, 0);
    let third = Version(first.0, first.1 + 2, 0);
    core_repository(sh, root, &core, [first, second, third])?;

    let service = scratch.join(SERVICE);
    let url = format!("file://{}", core.display());
    new::standalone_from_git(root, new::Kind::Blank, SERVICE, &service, (&url, &first.tag()))?;
    let uses = format!(
        "//! The service's use of a core function that a later release deprecates.\n\n\
         #[test]\nfn the_core_answers() {{\n    assert_eq!(oxiserve::{OLD}(), 42);\n}}\n"
    );
    std::fs::write(service.join("tests/core_function.rs"), uses)?;
    let _dir = sh.push_dir(&service);
    let _target = sh.push_env("CARGO_TARGET_DIR", root.join("target"));
    // The lock file on the first release, as a service working on it has.
    cmd!(sh, "cargo metadata --quiet --format-version 1").quiet().ignore_stdout().run()?;
    renovate_proposes(sh, root, &service, third)?;

    let said = xtask_upgrade(sh, &["--to", &second.to_string()])?;
    ensure!(said.0, "the upgrade to {} failed:\n{}", second.tag(), said.1);
    let manifest = std::fs::read_to_string(service.join("Cargo.toml"))?;
    let on_second = format!("tag = \"{}\"", second.tag());
    ensure!(manifest.matches(&on_second).count() == 2, "both core lines move:\n{manifest}");
    for expected in [
        format!("oxiserve {} -> {}", first.tag(), second.tag()),
        format!("## [{second}]"),
        format!("`{OLD}`: use `{NEW}`"),
        format!("use of deprecated function `oxiserve::{OLD}`: use `{NEW}`"),
    ] {
        ensure!(said.1.contains(&expected), "the upgrade did not say `{expected}`:\n{}", said.1);
    }
    ensure!(!said.1.contains(&format!("## [{first}]")), "only newer releases are listed");

    let before =
        (std::fs::read(service.join("Cargo.toml"))?, std::fs::read(service.join("Cargo.lock"))?);
    let said = xtask_upgrade(sh, &[])?;
    ensure!(
        !said.0,
        "the upgrade to {}, which removes `{OLD}`, succeeded:\n{}",
        third.tag(),
        said.1
    );
    ensure!(said.1.contains("are as they were"), "the failed upgrade says so:\n{}", said.1);
    let after =
        (std::fs::read(service.join("Cargo.toml"))?, std::fs::read(service.join("Cargo.lock"))?);
    ensure!(before == after, "a failed upgrade left Cargo.toml or Cargo.lock changed");
    println!(
        "upgrade check: {} -> {} upgraded and reported, {} refused and undone",
        first, second, third
    );
    Ok(())
}

/// Checks the service's `renovate.json` with Renovate itself: valid, and a dry run on the
/// service (as a git repository) proposes `newest` for both core crates in one branch.
fn renovate_proposes(
    sh: &Shell,
    root: &Path,
    service: &Path,
    newest: Version,
) -> anyhow::Result<()> {
    let bin = npm::renovate(sh, root)?;
    cmd!(sh, "{bin}/renovate-config-validator renovate.json").quiet().run()?;
    cmd!(sh, "git init --quiet").run()?;
    cmd!(sh, "git add --all").run()?;
    let identity = ["-c", "user.name=upgrade-check", "-c", "user.email=upgrade-check@example.com"];
    cmd!(sh, "git {identity...} commit --quiet --message start").run()?;
    let _debug = sh.push_env("LOG_LEVEL", "debug");
    let _json = sh.push_env("LOG_FORMAT", "json");
    let _base = sh.push_env("RENOVATE_BASE_DIR", service.with_file_name("renovate"));
    let log = cmd!(sh, "{bin}/renovate --platform=local --dry-run=lookup --onboarding=false")
        .quiet()
        .read()?;
    let proposed = proposals(&log);
    let expected: Vec<(String, String, String)> = ["oxiserve", "oxiserve-xtask"]
        .iter()
        .map(|name| (name.to_string(), newest.tag(), "renovate/oxiserve-core".to_string()))
        .collect();
    ensure!(proposed == expected, "Renovate proposed {proposed:?}, not {expected:?}");
    println!(
        "upgrade check: Renovate proposes {} for both core crates in one branch",
        newest.tag()
    );
    Ok(())
}

/// The updates of a Renovate debug log (JSON lines) for the dependencies its regex manager
/// found: dependency, new value, branch.
fn proposals(log: &str) -> Vec<(String, String, String)> {
    let reports = log.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok());
    let Some(report) = reports.into_iter().find(|r| r["msg"] == "packageFiles with updates") else {
        return Vec::new();
    };
    let files = report["config"]["regex"].as_array().cloned().unwrap_or_default();
    let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
    let mut proposed = Vec::new();
    for dependency in
        files.iter().flat_map(|file| file["deps"].as_array().cloned().unwrap_or_default())
    {
        for update in dependency["updates"].as_array().cloned().unwrap_or_default() {
            proposed.push((
                text(&dependency["depName"]),
                text(&update["newValue"]),
                text(&update["branchName"]),
            ));
        }
    }
    proposed
}

/// Runs the service's `cargo xtask upgrade ARGS`: whether it succeeded, and all it printed.
fn xtask_upgrade(sh: &Shell, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = cmd!(sh, "cargo xtask upgrade {args...}").ignore_status().output()?;
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);
    println!("{said}");
    Ok((output.status.success(), said.into_owned()))
}

/// The throwaway core repository in `dir`, with the three `releases`.
fn core_repository(
    sh: &Shell,
    root: &Path,
    dir: &Path,
    releases: [Version; 3],
) -> anyhow::Result<()> {
    // The core's crates, and the docs that its crate documentation includes.
    for part in ["crates", "docs"] {
        template::copy_dir(&root.join(part), &dir.join(part))?;
    }
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let manifest = new::manifest_with_members(root, "\"crates/*\"")?;
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    let library = dir.join("crates/oxiserve/src/lib.rs");
    let core = std::fs::read_to_string(&library)?;
    let _dir = sh.push_dir(dir);
    cmd!(sh, "git init --quiet").run()?;
    cmd!(sh, "git config user.name upgrade-check").run()?;
    cmd!(sh, "git config user.email upgrade-check@example.com").run()?;

    let [first, second, third] = releases;
    let answer = format!("/// The answer.\npub fn {OLD}() -> u32 {{\n    42\n}}\n");
    let deprecated = format!(
        "/// The answer.\n#[deprecated(since = \"{second}\", note = \"use `{NEW}`\")]\n\
         pub fn {OLD}() -> u32 {{\n    42\n}}\n\n/// The answer, now.\npub fn {NEW}() -> u32 {{\n    42\n}}\n"
    );
    let replaced = format!("/// The answer, now.\npub fn {NEW}() -> u32 {{\n    42\n}}\n");
    let steps = [
        (first, answer, format!("### Added\n\n- `{OLD}`.\n")),
        (
            second,
            deprecated,
            format!("### Added\n\n- `{NEW}`.\n\n### Deprecated\n\n- `{OLD}`: use `{NEW}`.\n"),
        ),
        (third, replaced, format!("### Removed\n\n- `{OLD}`, deprecated since {second}.\n")),
    ];
    let mut changelog = String::from("# Changelog\n\n## [Unreleased]\n");
    for (version, code, notes) in steps {
        std::fs::write(&library, format!("{core}\n{code}"))?;
        changelog =
            changelog.replacen("## [Unreleased]\n", &format!("## [Unreleased]\n\n{notes}"), 1);
        std::fs::write(dir.join("CHANGELOG.md"), &changelog)?;
        cmd!(sh, "git add --all").run()?;
        let message = format!("changes for {version}");
        cmd!(sh, "git commit --quiet --message {message}").run()?;
        release::run(dir, &release::Args::untested(version))
            .with_context(|| format!("cutting {version} of the throwaway core"))?;
        changelog = std::fs::read_to_string(dir.join("CHANGELOG.md"))?;
    }
    Ok(())
}
