//! `cargo xtask new NAME`: a new service from a template under `templates/<kind>/` (drawn over
//! `templates/common/`), or with `--model FILE` around an ONNX model a team has
//! (`templates/model/`), written to `services/NAME/`: a member of this workspace that
//! `cargo xtask serve --service NAME` serves and `cargo xtask test` tests. With
//! `--standalone DIR` the same service is written as a repository of its own (see
//! `standalone`).
//!
//! Nothing is written unless everything is: the service is rendered into a scratch directory
//! beside its destination and moved into place last, and a bad name, a name already taken or a
//! destination that is not empty stops the command before anything is written.
//!
//! `cargo xtask test` renders every template into a scratch workspace and runs the generated
//! services' own checks ([`check_templates`]), so a change to the core that breaks a template
//! fails CI.

mod model;
mod standalone;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use oxiserve_xtask::changelog::Version;
use xshell::{Shell, cmd};

use self::standalone::Core;
use crate::template::{self, Values};

/// Options of `cargo xtask new`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service's name, which is also its crate's and its directory's: lowercase letters,
    /// digits and dashes, starting with a letter (e.g. `fraud-score`).
    name: String,
    /// Which template to start from.
    #[arg(long, value_enum, default_value_t = Kind::Tabular, conflicts_with = "model")]
    kind: Kind,
    /// Start from this ONNX model instead: its signature, read by ONNX Runtime, gives the
    /// manifest and the request and answer fields (FP32 and INT64 tensors with a dynamic
    /// first dimension).
    #[arg(long, value_name = "FILE")]
    model: Option<PathBuf>,
    /// Write the service as a repository of its own in DIR (a new or empty directory): its
    /// own workspace, `cargo xtask serve` and `test`, `.ci/run`, README and `.gitignore`.
    #[arg(long, value_name = "DIR")]
    standalone: Option<PathBuf>,
    /// With `--standalone`: take the core crates from this checkout of oxiserve, by path.
    #[arg(long, value_name = "PATH", requires = "standalone", conflicts_with = "oxiserve_git")]
    oxiserve_path: Option<PathBuf>,
    /// With `--standalone`: take the core crates from this git repository (default: this
    /// checkout's `origin` remote).
    #[arg(long, value_name = "URL", requires = "standalone")]
    oxiserve_git: Option<String>,
    /// With `--standalone`: the core's release tag (default: `v` and this checkout's core
    /// version).
    #[arg(long, value_name = "TAG", requires = "standalone", conflicts_with = "oxiserve_path")]
    oxiserve_tag: Option<String>,
}

/// Where a generated service lives.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Layout {
    /// In this workspace, under `services/`.
    Workspace,
    /// In a repository of its own, with the core from `Core`.
    Standalone(Core),
}

/// The service templates chosen with `--kind`, one directory each under `templates/`, drawn
/// over `templates/common/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Kind {
    /// Named features in; a class, its probabilities and a business rule out.
    Tabular,
    /// One model, tensors in and out: the least code.
    Blank,
    /// Texts in, sentence embeddings out: tokenising, batching texts of different lengths,
    /// pooling; the model is fetched at set-up.
    Text,
    /// An image in, a class out: image files decoded with limits, the model's preprocessing
    /// from its manifest; the model is fetched at set-up.
    Image,
}

impl Kind {
    /// Every kind, for the template checks.
    const ALL: [Kind; 4] = [Kind::Tabular, Kind::Blank, Kind::Text, Kind::Image];

    /// The template's directory under `templates/`.
    fn directory(self) -> &'static str {
        match self {
            Kind::Tabular => "tabular",
            Kind::Blank => "blank",
            Kind::Text => "text",
            Kind::Image => "image",
        }
    }

    /// The crate's description.
    fn description(self) -> &'static str {
        match self {
            Kind::Tabular => "an oxiserve service: features in, class probabilities and a rule out",
            Kind::Blank => "an oxiserve service: one model, tensors in and out",
            Kind::Text => "an oxiserve service: texts in, sentence embeddings out",
            Kind::Image => "an oxiserve service: an image in, its class out",
        }
    }

    /// The features of the `oxiserve` dependency beyond its defaults.
    fn core_features(self) -> &'static str {
        match self {
            Kind::Text => ", features = [\"text\"]",
            Kind::Image => ", features = [\"vision\"]",
            Kind::Tabular | Kind::Blank => "",
        }
    }

    /// The first core release that carries what the template uses, when that is not the
    /// first release.
    fn first_core(self) -> Option<Version> {
        match self {
            // `oxiserve::text`, `oxiserve::vision`, `Model::read_file`, routes that read other
            // media types and fetched models came after 0.1.0.
            Kind::Text | Kind::Image => Some(Version(0, 2, 0)),
            Kind::Tabular | Kind::Blank => None,
        }
    }
}

/// What a service is generated from: a template directory, its values beyond the name, and the
/// files a model import wrote.
struct Source {
    directory: &'static str,
    values: Values,
    imported: Option<model::Imported>,
}

impl Source {
    fn kind(kind: Kind) -> Self {
        let values = Values::from([
            ("description", kind.description().to_string()),
            ("core_features", kind.core_features().to_string()),
        ]);
        Self { directory: kind.directory(), values, imported: None }
    }

    /// The `model` template around `file`, imported first.
    fn model(root: &Path, file: &Path) -> anyhow::Result<Self> {
        let imported = model::import(root, file)?;
        let file_name = file.file_name().map(|name| name.to_string_lossy().into_owned());
        let mut values = Values::from([
            ("description", "an oxiserve service around an imported ONNX model".to_string()),
            ("core_features", String::new()),
            ("model", model::MODEL.to_string()),
            ("model_file", file_name.unwrap_or_default()),
        ]);
        let manifest = imported.models().join(model::MODEL).join("1/manifest.json");
        model::values(&manifest, &mut values)?;
        Ok(Self { directory: "model", values, imported: Some(imported) })
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
    let (layout, destination) = match &args.standalone {
        Some(dir) => (Layout::Standalone(core(root, args)?), dir.clone()),
        None => {
            for taken in ["crates", "services"].map(|dir| root.join(dir).join(&args.name)) {
                ensure!(!taken.exists(), "{} exists already: choose another name", taken.display());
            }
            (Layout::Workspace, root.join("services").join(&args.name))
        }
    };
    if let (Layout::Standalone(Core::Git { tag, .. }), None) = (&layout, &args.model) {
        check_core_release(args.kind, tag)?;
    }
    let source = match &args.model {
        Some(file) => Source::model(root, file)?,
        None => Source::kind(args.kind),
    };
    generate(root, &source, &args.name, &destination, &layout)?;
    let (name, dir) = (&args.name, destination.display());
    let (test, serve) = match layout {
        Layout::Workspace => (format!("test --service {name}"), format!("serve --service {name}")),
        Layout::Standalone(_) => ("test".into(), "serve".into()),
    };
    println!(
        "Created {dir} from the {} template. Next:\n  cargo xtask {test}\n  cargo xtask {serve}\n\
         and read {dir}/README.md.",
        source.directory,
    );
    Ok(())
}

/// Refuses a core release tag older than what the `kind` template needs, naming both.
fn check_core_release(kind: Kind, tag: &str) -> anyhow::Result<()> {
    let Some(first) = kind.first_core() else { return Ok(()) };
    let version = Version::from_tag(tag)?;
    ensure!(
        version >= first,
        "the {} template needs oxiserve {first} or later, and {tag} is older: choose a newer \
         release with --oxiserve-tag, or take the core from a checkout with --oxiserve-path",
        kind.directory(),
    );
    Ok(())
}

/// Where a standalone service takes the core from: `--oxiserve-path`, else `--oxiserve-git`
/// (or this checkout's `origin` remote) at `--oxiserve-tag` (or this checkout's version).
fn core(root: &Path, args: &Args) -> anyhow::Result<Core> {
    if let Some(path) = &args.oxiserve_path {
        let path = path.canonicalize().with_context(|| path.display().to_string())?;
        ensure!(
            path.join("crates/oxiserve/Cargo.toml").is_file(),
            "{} is not a checkout of oxiserve (no crates/oxiserve/Cargo.toml)",
            path.display()
        );
        return Ok(Core::Path(path));
    }
    let url = match &args.oxiserve_git {
        Some(url) => url.clone(),
        None => {
            let sh = Shell::new()?;
            sh.change_dir(root);
            let origin = cmd!(sh, "git remote get-url origin").quiet().ignore_stderr().read();
            origin.ok().filter(|url| !url.is_empty()).context(
                "this checkout has no `origin` remote: say where the core comes from with \
                 --oxiserve-git URL or --oxiserve-path PATH",
            )?
        }
    };
    let tag = match &args.oxiserve_tag {
        Some(tag) => tag.clone(),
        None => standalone::default_tag(root)?,
    };
    Ok(Core::Git { url, tag })
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

/// Renders the `kind` template as service `name`, a repository of its own in `destination`
/// whose core crates come from the git repository `url` at `tag`.
pub(crate) fn standalone_from_git(
    root: &Path,
    kind: Kind,
    name: &str,
    destination: &Path,
    (url, tag): (&str, &str),
) -> anyhow::Result<()> {
    let core = Core::Git { url: url.into(), tag: tag.into() };
    generate(root, &Source::kind(kind), name, destination, &Layout::Standalone(core))
}

/// Renders `source` as service `name` into `destination` in `layout`; the destination must not
/// exist or be an empty directory. On any failure nothing is left behind.
fn generate(
    root: &Path,
    source: &Source,
    name: &str,
    destination: &Path,
    layout: &Layout,
) -> anyhow::Result<()> {
    if destination.exists() {
        let empty = std::fs::read_dir(destination).is_ok_and(|mut dir| dir.next().is_none());
        ensure!(empty, "{} exists and is not empty: nothing was written", destination.display());
    }
    let parent = destination.parent().context("the destination has a parent directory")?;
    std::fs::create_dir_all(parent)?;
    let scratch = parent.join(format!(".{name}.new-{}", std::process::id()));
    let mut values = source.values.clone();
    values.insert("name", name.to_string());
    values.insert("crate", crate_name(name));
    values.insert("Pipeline", type_name(name));
    match layout {
        Layout::Workspace => {
            values.insert("oxiserve", "[oxiserve](../../README.md)".into());
            values.insert("serve", format!("cargo xtask serve --service {name}"));
            values.insert("test", format!("cargo xtask test --service {name}"));
            values.insert("project_rows", String::new());
        }
        Layout::Standalone(_) => standalone::readme_values(&mut values),
    }
    let templates = root.join("templates");
    let write = || -> anyhow::Result<()> {
        std::fs::create_dir(&scratch)?;
        template::render_dir(&templates.join("common"), &scratch, &values)?;
        template::render_dir(&templates.join(source.directory), &scratch, &values)?;
        if let Some(imported) = &source.imported {
            template::copy_dir(&imported.models(), &scratch.join("models"))?;
            std::fs::create_dir_all(scratch.join("tests/fixtures"))?;
            std::fs::copy(imported.fixture(), scratch.join("tests/fixtures/parity.json"))?;
        }
        if let Layout::Standalone(core) = layout {
            standalone::add_project(root, &scratch, &values, core)?;
        }
        // Lines that hold the name, or generated from a model, may need wrapping.
        format(&scratch)?;
        if destination.exists() {
            std::fs::remove_dir(destination)?;
        }
        Ok(std::fs::rename(&scratch, destination)?)
    };
    let written = write();
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    written
}

/// Formats the Rust files under `dir` with rustfmt (which reads the workspace's
/// `rustfmt.toml` from the directories above).
fn format(dir: &Path) -> anyhow::Result<()> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    let status =
        std::process::Command::new("rustfmt").args(["--edition", "2024"]).args(&files).status()?;
    ensure!(status.success(), "rustfmt failed on the generated service");
    Ok(())
}

/// Renders every kind, and `--model` on the reference service's forest, into a scratch
/// workspace under `target/template-check/workspace/` that depends on this checkout's crates by
/// path, with this workspace's lock file and build directory (so the dependencies compiled for
/// the workspace's own tests are reused), and checks each generated service's formatting and
/// its clippy, tests included, with warnings denied. Then renders every kind as a standalone
/// repository depending on this checkout by path (`target/template-check/standalone-<kind>/`)
/// and runs its `.ci/run` with the same build directory: each kind's tests run there, once.
/// The `--model` service, which has no standalone check, runs its tests in the workspace.
pub(crate) fn check_templates(sh: &Shell, root: &Path) -> anyhow::Result<()> {
    let scratch = root.join("target/template-check");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    check_in_workspace(sh, root, &scratch.join("workspace"))?;
    let _target = sh.push_env("CARGO_TARGET_DIR", root.join("target"));
    for kind in Kind::ALL {
        let name = format!("standalone-{}", kind.directory());
        let dir = scratch.join(&name);
        generate(
            root,
            &Source::kind(kind),
            &name,
            &dir,
            &Layout::Standalone(Core::Path(root.into())),
        )?;
        let _dir = sh.push_dir(&dir);
        cmd!(sh, ".ci/run").run().with_context(|| format!("the standalone {name} fails its CI"))?;
    }
    Ok(())
}

/// The in-workspace half of [`check_templates`], in the scratch workspace at `scratch`.
fn check_in_workspace(sh: &Shell, root: &Path, scratch: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(scratch.join("services"))?;
    std::fs::write(scratch.join("Cargo.toml"), scratch_manifest(root)?)?;
    for file in ["Cargo.lock", "rustfmt.toml"] {
        std::fs::copy(root.join(file), scratch.join(file))?;
    }
    let mut sources: Vec<_> = Kind::ALL.into_iter().map(Source::kind).collect();
    // `--model` on a model no template made: the reference service's forest.
    let forest = root.join("services/tabular-scoring/models/penguins-forest/1/model.onnx");
    sources.push(Source::model(root, &forest)?);
    let (mut packages, mut tested) = (Vec::new(), Vec::new());
    for source in &sources {
        let name = format!("template-{}", source.directory);
        generate(root, source, &name, &scratch.join("services").join(&name), &Layout::Workspace)?;
        // The kinds' tests run in their standalone checks; only the import has none.
        if source.imported.is_some() {
            tested.extend(["-p".to_string(), name.clone()]);
        }
        packages.extend(["-p".to_string(), name]);
    }
    let (packages, tested) = (&packages, &tested);
    let _dir = sh.push_dir(scratch);
    let _target = sh.push_env("CARGO_TARGET_DIR", root.join("target"));
    cmd!(sh, "cargo fmt --all -- --check")
        .run()
        .context("a generated service is not formatted: fix its template")?;
    cmd!(sh, "cargo clippy {packages...} --all-targets -- -D warnings").run()?;
    cmd!(sh, "cargo test {tested...}").run()?;
    Ok(())
}

/// This workspace's manifest, with the generated services as its only members and its own
/// crates named by absolute path.
fn scratch_manifest(root: &Path) -> anyhow::Result<String> {
    let manifest = manifest_with_members(root, "\"services/*\"")?;
    let crates = root.join("crates");
    let crates = crates.to_str().context("the checkout's path is UTF-8")?;
    Ok(manifest.replace("path = \"crates/", &format!("path = \"{crates}/")))
}

/// This workspace's manifest with `members` (the inside of the list) as its members.
pub(crate) fn manifest_with_members(root: &Path, members: &str) -> anyhow::Result<String> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let ours = "members = [\"crates/*\", \"services/*\", \"xtask\"]";
    ensure!(manifest.contains(ours), "the workspace's members line changed: update {ours}");
    Ok(manifest.replace(ours, &format!("members = [{members}]")))
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
    fn a_template_asks_for_the_core_release_that_carries_what_it_uses() {
        let error = check_core_release(Kind::Text, "v0.1.0").unwrap_err().to_string();
        assert!(error.contains("needs oxiserve 0.2.0") && error.contains("v0.1.0"), "{error}");
        check_core_release(Kind::Text, "v0.2.0").unwrap();
        assert!(check_core_release(Kind::Image, "v0.1.0").is_err());
        check_core_release(Kind::Tabular, "v0.1.0").unwrap();
    }

    #[test]
    fn a_destination_that_is_not_empty_is_left_alone() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let scratch = std::env::temp_dir().join(format!("xtask-new-{}", std::process::id()));
        let destination = scratch.join("taken");
        std::fs::create_dir_all(&destination).unwrap();
        std::fs::write(destination.join("keep.txt"), "mine").unwrap();
        let blank = Source::kind(Kind::Blank);
        let error = generate(&root, &blank, "taken", &destination, &Layout::Workspace).unwrap_err();
        assert!(error.to_string().contains("not empty"), "{error}");
        assert_eq!(std::fs::read_to_string(destination.join("keep.txt")).unwrap(), "mine");
        let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
        assert_eq!(left.len(), 1, "no scratch directory left behind");

        // An empty destination is filled; the template's files are all there.
        std::fs::remove_file(destination.join("keep.txt")).unwrap();
        generate(&root, &blank, "taken", &destination, &Layout::Workspace).unwrap();
        let lib = std::fs::read_to_string(destination.join("src/lib.rs")).unwrap();
        assert!(lib.contains("pub struct Taken;") && !lib.contains("{{"), "{lib}");
        assert!(destination.join("models/model/1/model.onnx").is_file());
        std::fs::remove_dir_all(&scratch).unwrap();
    }

    #[test]
    fn a_standalone_project_is_complete_and_names_its_core() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
        let scratch = std::env::temp_dir().join(format!("xtask-standalone-{}", std::process::id()));
        let destination = scratch.join("fraud-score");
        let layout = Layout::Standalone(Core::Path(root.clone()));
        generate(&root, &Source::kind(Kind::Tabular), "fraud-score", &destination, &layout)
            .unwrap();
        let read = |path: &str| std::fs::read_to_string(destination.join(path)).unwrap();
        let manifest = read("Cargo.toml");
        let core = root.join("crates/oxiserve");
        assert!(
            manifest.contains(&format!("oxiserve = {{ path = {:?} }}", core.display().to_string()))
        );
        assert!(manifest.contains("[workspace]") && manifest.contains("members = [\"xtask\"]"));
        assert!(read("xtask/src/main.rs").contains("standalone::main(root, \"fraud-score\")"));
        assert!(read(".cargo/config.toml").contains("--package fraud-score-xtask"));
        assert!(read(".gitignore").contains("target/"));
        let readme = read("README.md");
        assert!(readme.contains("cargo xtask test") && !readme.contains("--service"), "{readme}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(destination.join(".ci/run")).unwrap().permissions().mode();
        assert!(mode & 0o100 != 0, ".ci/run is executable");
        for file in ["rustfmt.toml", "Cargo.lock", "models/classifier/1/model.onnx", "src/lib.rs"] {
            assert!(destination.join(file).is_file(), "{file}");
        }
        std::fs::remove_dir_all(&scratch).unwrap();
    }
}
