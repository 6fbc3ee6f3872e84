//! Shared helpers for the service's integration tests.

#![allow(dead_code, reason = "each test binary uses its own subset of the helpers")]

use std::path::{Path, PathBuf};

use oxiserve::testing::TestApp;
use tabular_scoring::TabularScoring;

/// The bundled model repository.
pub(crate) fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The service with its bundled models, loaded and ready.
pub(crate) async fn app() -> TestApp<TabularScoring> {
    TestApp::start(TabularScoring, models_dir()).await.expect("the bundled models load")
}

/// Copies the directory tree `from` to `to`.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Publishes a copy of the bundled version 1 of `model` as `version` under `root`, the way a
/// trainer does: the files first, `manifest.json` last.
pub(crate) fn publish(root: &Path, model: &str, version: u64) {
    let from = models_dir().join(model).join("1");
    let to = root.join(model).join(version.to_string());
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(from.join("model.onnx"), to.join("model.onnx")).unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("manifest.json")).unwrap())
            .unwrap();
    manifest["version"] = version.into();
    std::fs::write(to.join("manifest.json"), manifest.to_string()).unwrap();
}
