//! `cargo xtask new NAME`: a new service from a template under `templates/<kind>/`, written to
//! `services/NAME/`, a member of this workspace that `cargo xtask serve --service NAME` serves
//! and `cargo xtask test` tests.
//!
//! Nothing is written unless everything is: the service is rendered into a scratch directory
//! beside its destination and moved into place last, and a bad name, a name already taken or a
//! destination that is not empty stops the command before anything is written.
//!
//! `cargo xtask test` renders every kind into a scratch workspace and runs the generated
//! service's own checks ([`check_templates`]), so a change to the core that breaks the template
//! fails CI.

mod template;

use std::path::Path;

use anyhow::{Context, bail, ensure};
use xshell::{Shell, cmd};

use self::template::Values;

/// Options of `cargo xtask new`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service's name, which is also its crate's and its directory's: lowercase letters,
    /// digits and dashes, starting with a letter (e.g. `fraud-score`).
    name: String,
    /// Which template to start from.
    #[arg(long, value_enum, default_value_t = Kind::Blank)]
    kind: Kind,
}

/// The service templates, one directory each under `templates/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// One model, tensors in and out: the least code.
    Blank,
}

impl Kind {
    /// Every kind, for the template checks.
    const ALL: [Kind; 1] = [Kind::Blank];

    /// The template's directory under `templates/`.
    fn directory(self) -> &'static str {
        match self {
            Kind::Blank => "blank",
        }
    }
}

/// Names that a service may not take: the workspace's own crates, and crates every service
/// depends on.
const RESERVED: [&str; 8] =
    ["oxiserve", "oxiserve-test-support", "xtask", "test", "core", "std", "alloc", "proc-macro"];

/// Rust keywords, which a crate name in snake case may not be.
const KEYWORDS: [&str; 51] = [
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use",
    "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro", "override",
    "priv", "try", "typeof", "unsized", "virtual", "yield",
];

pub(crate) fn run(root: &Path, args: &Args) -> anyhow::Result<()> {
    check_name(&args.name)?;
    for taken in ["crates", "services"].map(|dir| root.join(dir).join(&args.name)) {
        ensure!(!taken.exists(), "{} exists already: choose another name", taken.display());
    }
    let destination = root.join("services").join(&args.name);
    generate(root, args.kind, &args.name, &destination)?;
    // Lines that hold the name may need wrapping for a long one.
    let sh = Shell::new()?;
    sh.change_dir(root);
    let name = &args.name;
    cmd!(sh, "cargo fmt -p {name}").run()?;
    println!(
        "Created {} from the {} template. Next:\n  cargo xtask test --service {name}\n  \
         cargo xtask serve --service {name}\nand read services/{name}/README.md.",
        destination.display(),
        args.kind.directory(),
        name = args.name,
    );
    Ok(())
}

/// A service name is a crate name that reads well as a directory and a URL path: lowercase
/// ASCII letters and digits in dash-separated words, starting with a letter, 64 characters
/// at most, and neither reserved nor a keyword.
fn check_name(name: &str) -> anyhow::Result<()> {
    let words_ok = name.split('-').all(|word| {
        !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    });
    let starts_ok = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
    if !(words_ok && starts_ok && name.len() <= 64) {
        bail!(
            "`{name}` is not a valid service name: use lowercase letters, digits and single \
             dashes, starting with a letter (e.g. `fraud-score`), 64 characters at most"
        );
    }
    if RESERVED.contains(&name) || KEYWORDS.contains(&crate_name(name).as_str()) {
        bail!("`{name}` is reserved: choose another service name");
    }
    Ok(())
}

/// The crate's name in Rust code: dashes become underscores.
fn crate_name(name: &str) -> String {
    name.replace('-', "_")
}

/// The pipeline type's name: the name's words capitalised (`fraud-score` → `FraudScore`).
fn type_name(name: &str) -> String {
    let capitalise = |word: &str| {
        let mut chars = word.chars();
        chars.next().map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
    };
    name.split('-').filter_map(capitalise).collect()
}

/// Renders the `kind` template as service `name` into `destination`, which must not exist or
/// be an empty directory; on any failure nothing is left behind.
fn generate(root: &Path, kind: Kind, name: &str, destination: &Path) -> anyhow::Result<()> {
    if destination.exists() {
        let empty = std::fs::read_dir(destination).is_ok_and(|mut dir| dir.next().is_none());
        ensure!(empty, "{} exists and is not empty: nothing was written", destination.display());
    }
    let parent = destination.parent().context("the destination has a parent directory")?;
    std::fs::create_dir_all(parent)?;
    let scratch = parent.join(format!(".{name}.new-{}", std::process::id()));
    let values = Values::from([
        ("name", name.to_string()),
        ("crate", crate_name(name)),
        ("Pipeline", type_name(name)),
    ]);
    let template = root.join("templates").join(kind.directory());
    let written = std::fs::create_dir(&scratch)
        .map_err(anyhow::Error::from)
        .and_then(|()| template::render_dir(&template, &scratch, &values))
        .and_then(|()| {
            if destination.exists() {
                std::fs::remove_dir(destination)?;
            }
            Ok(std::fs::rename(&scratch, destination)?)
        });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    written
}

/// Renders every kind into a scratch workspace under `target/template-check/` that depends on
/// this checkout's crates by path, with this workspace's lock file and build directory (so the
/// dependencies compiled for the workspace's own tests are reused), and runs each generated
/// service's own checks: formatting, clippy with warnings denied, and its tests.
pub(crate) fn check_templates(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let scratch = root.join("target/template-check");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(scratch.join("services"))?;
    std::fs::write(scratch.join("Cargo.toml"), scratch_manifest(root)?)?;
    for file in ["Cargo.lock", "rustfmt.toml"] {
        std::fs::copy(root.join(file), scratch.join(file))?;
    }
    let mut packages = Vec::new();
    for kind in Kind::ALL {
        let name = format!("template-{}", kind.directory());
        generate(root, kind, &name, &scratch.join("services").join(&name))?;
        packages.extend(["-p".to_string(), name]);
    }
    let packages = &packages;
    let _dir = sh.push_dir(&scratch);
    let _target = sh.push_env("CARGO_TARGET_DIR", root.join("target"));
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("a generated service is not formatted: fix its template")?;
    cmd!(sh, "cargo clippy {packages...} --all-targets -- -D warnings").run()?;
    cmd!(sh, "cargo test {packages...}").run()?;
    Ok(())
}

/// This workspace's manifest, with the generated services as its only members and its own
/// crates named by absolute path.
fn scratch_manifest(root: &Path) -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let members = "members = [\"crates/*\", \"services/*\", \"xtask\"]";
    ensure!(manifest.contains(members), "the workspace's members line changed: update {members}");
    let crates = root.join("crates");
    let crates = crates.to_str().context("the checkout's path is UTF-8")?;
    Ok(manifest
        .replace(members, "members = [\"services/*\"]")
        .replace("path = \"crates/", &format!("path = \"{crates}/")))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["fraud-score", "a", "text2vec", "a-b-c"] {
            check_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in ["", "Fraud", "2fast", "fraud_score", "-a", "a-", "a--b", "é", "a b"] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
        for reserved in ["oxiserve", "xtask", "self", "async", "type"] {
            let error = check_name(reserved).unwrap_err().to_string();
            assert!(error.contains("reserved"), "{reserved}: {error}");
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn names_become_crate_and_type_names() {
        assert_eq!(crate_name("fraud-score-v2"), "fraud_score_v2");
        assert_eq!(type_name("fraud-score-v2"), "FraudScoreV2");
    }

    #[test]
    fn a_destination_that_is_not_empty_is_left_alone() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let scratch = std::env::temp_dir().join(format!("xtask-new-{}", std::process::id()));
        let destination = scratch.join("taken");
        std::fs::create_dir_all(&destination).unwrap();
        std::fs::write(destination.join("keep.txt"), "mine").unwrap();
        let error = generate(&root, Kind::Blank, "taken", &destination).unwrap_err();
        assert!(error.to_string().contains("not empty"), "{error}");
        assert_eq!(std::fs::read_to_string(destination.join("keep.txt")).unwrap(), "mine");
        let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
        assert_eq!(left.len(), 1, "no scratch directory left behind");

        // An empty destination is filled; the template's files are all there.
        std::fs::remove_file(destination.join("keep.txt")).unwrap();
        generate(&root, Kind::Blank, "taken", &destination).unwrap();
        let lib = std::fs::read_to_string(destination.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct Taken;") && !lib.contains("{{"), "{lib}");
        assert!(destination.join("models/model/1/model.onnx").is_file());
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
