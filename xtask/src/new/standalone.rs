//! `cargo xtask new NAME --standalone DIR`: the service as a repository of its own. The
//! service's package sits at the root of a workspace whose only other member is its `xtask`
//! (the tasks come from the `oxiserve-xtask` library crate, not a copy), with `.ci/run`,
//! `.gitignore`, this repository's `rustfmt.toml`, `Cargo.lock` (known-good versions) and
//! profiles. The core is a dependency by git URL and tag, or by path.
//!
//! The workspace manifest is written from this repository's: its `[workspace.package]`,
//! lints and profiles as they are, and of its `[workspace.dependencies]` the lines (with the
//! comments above them) of the crates the generated manifests use, so the versions a
//! standalone service starts on are the ones this repository tests.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::template::{self, Values};

/// Where a standalone service takes the core crates (`oxiserve`, `oxiserve-xtask`) from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Core {
    /// A checkout of this repository, by path.
    Path(PathBuf),
    /// A git repository of oxiserve, at a tag.
    Git { url: String, tag: String },
}

impl Core {
    /// The core crates' dependency lines for `[workspace.dependencies]`.
    fn dependencies(&self) -> String {
        let line = |name: &str| match self {
            Core::Path(root) => {
                let path = root.join("crates").join(name);
                format!("{name} = {{ path = {:?} }}\n", path.display().to_string())
            }
            Core::Git { url, tag } => format!("{name} = {{ git = {url:?}, tag = {tag:?} }}\n"),
        };
        line("oxiserve") + &line("oxiserve-xtask")
    }
}

/// The core's default tag for `--oxiserve-git`: `v` and the version of the `oxiserve` crate of
/// this checkout.
pub(super) fn default_tag(root: &Path) -> anyhow::Result<String> {
    Ok(format!("v{}", crate::release::package_version(&root.join("crates/oxiserve"))?))
}

/// The values of a standalone service's README: its commands, and the files around it.
pub(super) fn readme_values(values: &mut Values) {
    values.insert("oxiserve", "oxiserve".into());
    values.insert("serve", "cargo xtask serve".into());
    values.insert("test", "cargo xtask test".into());
    let rows = "| `Cargo.toml` | the service's package, and the workspace: the core crates' source \
                (`oxiserve`, `oxiserve-xtask`), versions, lints, profiles |\n\
                | `xtask/` | `cargo xtask setup`, `serve`, `test`, and `upgrade [--to VERSION]` \
                (moves the core to a newer release, builds, tests, prints the changelog and the \
                deprecated items the service uses; undone on failure): the tasks of the \
                `oxiserve-xtask` crate |\n\
                | `renovate.json` | core releases as pull requests (both core crates in one) |\n\
                | `.ci/run` | what CI runs: `cargo xtask test` |\n";
    values.insert("project_rows", rows.into());
}

/// Adds the project around the service rendered in `dir`: `templates/standalone/`, the
/// workspace in `Cargo.toml`, and this repository's `rustfmt.toml` and `Cargo.lock`.
pub(super) fn add_project(
    root: &Path,
    dir: &Path,
    values: &Values,
    core: &Core,
) -> anyhow::Result<()> {
    template::render_dir(&root.join("templates/standalone"), dir, values)?;
    for file in ["rustfmt.toml", "Cargo.lock"] {
        std::fs::copy(root.join(file), dir.join(file))?;
    }
    let ours = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let package = std::fs::read_to_string(dir.join("Cargo.toml"))?;
    let xtask = std::fs::read_to_string(dir.join("xtask/Cargo.toml"))?;
    let workspace = workspace_manifest(&ours, &[&package, &xtask], core)?;
    std::fs::write(dir.join("Cargo.toml"), format!("{package}\n{workspace}"))?;
    Ok(())
}

/// One `[section]` of a TOML file: the comment lines right above its header, the header, and
/// the lines up to the next section.
struct Section<'a> {
    comments: Vec<&'a str>,
    header: &'a str,
    body: Vec<&'a str>,
}

/// The sections of `manifest`, in order (lines before the first header are left out).
fn sections(manifest: &str) -> Vec<Section<'_>> {
    let mut sections: Vec<Section<'_>> = Vec::new();
    for line in manifest.lines() {
        if line.starts_with('[') {
            let mut comments = Vec::new();
            if let Some(previous) = sections.last_mut() {
                while previous.body.last().is_some_and(|line| line.starts_with('#')) {
                    comments.extend(previous.body.pop());
                }
                comments.reverse();
            }
            sections.push(Section { comments, header: line.trim(), body: Vec::new() });
        } else if let Some(section) = sections.last_mut() {
            section.body.push(line);
        }
    }
    sections
}

/// The crates that `manifest` takes from the workspace in its dependency sections.
fn workspace_dependencies(manifest: &str) -> Vec<String> {
    let dependency_sections = ["[dependencies]", "[dev-dependencies]", "[build-dependencies]"];
    sections(manifest)
        .into_iter()
        .filter(|section| dependency_sections.contains(&section.header))
        .flat_map(|section| section.body)
        .filter_map(|line| {
            let (name, value) = line.split_once('=')?;
            let (name, value) = (name.trim(), value.trim());
            let inherited = name.ends_with(".workspace") && value == "true"
                || value.starts_with('{') && value.contains("workspace = true");
            inherited.then(|| name.trim_end_matches(".workspace").to_string())
        })
        .collect()
}

/// The standalone workspace's sections, from `ours` (this repository's manifest): the members,
/// the core crates from `core`, the dependency lines that `manifests` use, and our package
/// defaults, lints and profiles.
fn workspace_manifest(ours: &str, manifests: &[&str], core: &Core) -> anyhow::Result<String> {
    let ours = sections(ours);
    let Some(dependencies) = ours.iter().find(|s| s.header == "[workspace.dependencies]") else {
        bail!("the workspace manifest has no [workspace.dependencies]");
    };
    let mut used: Vec<String> = manifests.iter().flat_map(|m| workspace_dependencies(m)).collect();
    used.sort();
    used.dedup();
    let mut out = String::from("[workspace]\nresolver = \"3\"\nmembers = [\"xtask\"]\n\n");
    out.push_str("[workspace.dependencies]\n");
    out.push_str(&core.dependencies());
    for name in used.iter().filter(|name| !name.starts_with("oxiserve")) {
        let key = |line: &str| line.split_once('=').map(|(key, _)| key.trim() == name);
        let Some(at) = dependencies.body.iter().position(|line| key(line) == Some(true)) else {
            bail!("the generated service uses `{name}`, which [workspace.dependencies] lacks");
        };
        let comments = dependencies.body[..at].iter().rev().take_while(|l| l.starts_with('#'));
        let mut comments: Vec<&str> = comments.copied().collect();
        comments.reverse();
        for line in comments.into_iter().chain([dependencies.body[at]]) {
            out.push_str(line);
            out.push('\n');
        }
    }
    let kept = |header: &str| {
        header == "[workspace.package]"
            || header.starts_with("[workspace.lints")
            || header.starts_with("[profile")
    };
    for section in ours.iter().filter(|section| kept(section.header)) {
        out.push('\n');
        for line in section.comments.iter().chain([&section.header]) {
            out.push_str(line);
            out.push('\n');
        }
        let body = section.body.join("\n");
        out.push_str(body.trim_matches('\n'));
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "[workspace]\nmembers = [\"crates/*\"]\n\n[workspace.package]\n\
        edition = \"2024\"\n\n[workspace.dependencies]\noxiserve = { path = \"crates/oxiserve\" }\n\
        anyhow = \"1\"\n# Exact floats.\nserde_json = { version = \"1\", features = [\"x\"] }\n\
        tokio = \"1\"\n\n[workspace.lints.clippy]\nall = \"warn\"\n\n# Fast.\n[profile.release]\nlto = true\n";

    const PACKAGE: &str = "[package]\nname = \"demo\"\nedition.workspace = true\n\n\
        [dependencies]\noxiserve.workspace = true\ntokio.workspace = true\n\n\
        [dev-dependencies]\nserde_json = { workspace = true, features = [\"y\"] }\n\n\
        [lints]\nworkspace = true\n";

    #[test]
    fn the_workspace_takes_what_the_service_uses_and_our_settings() {
        let core =
            Core::Git { url: "https://example.com/oxiserve.git".into(), tag: "v0.1.0".into() };
        let manifest = workspace_manifest(OURS, &[PACKAGE], &core).unwrap();
        let expected = "[workspace]\nresolver = \"3\"\nmembers = [\"xtask\"]\n\n\
            [workspace.dependencies]\n\
            oxiserve = { git = \"https://example.com/oxiserve.git\", tag = \"v0.1.0\" }\n\
            oxiserve-xtask = { git = \"https://example.com/oxiserve.git\", tag = \"v0.1.0\" }\n\
            # Exact floats.\nserde_json = { version = \"1\", features = [\"x\"] }\n\
            tokio = \"1\"\n\n[workspace.package]\nedition = \"2024\"\n\n\
            [workspace.lints.clippy]\nall = \"warn\"\n\n# Fast.\n[profile.release]\nlto = true\n";
        assert_eq!(manifest, expected);
        // The service's `edition.workspace` and `[lints] workspace` are not dependencies.
        assert_eq!(workspace_dependencies(PACKAGE), ["oxiserve", "tokio", "serde_json"]);
    }

    #[test]
    fn a_dependency_the_workspace_lacks_is_named() {
        let core = Core::Path(PathBuf::from("/src/oxiserve"));
        let package = "[dependencies]\nrand.workspace = true\n";
        let error = workspace_manifest(OURS, &[package], &core).unwrap_err().to_string();
        assert!(error.contains("`rand`"), "{error}");
        let lines = core.dependencies();
        assert!(
            lines.contains("oxiserve = { path = \"/src/oxiserve/crates/oxiserve\" }"),
            "{lines}"
        );
    }
}
