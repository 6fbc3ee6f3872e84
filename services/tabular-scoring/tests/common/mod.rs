//! Shared helpers for the service's integration tests.

#![allow(dead_code, reason = "each test binary uses its own subset of the helpers")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oxiserve::Config;
use oxiserve::testing::TestApp;
use serde_json::Value;
use tabular_scoring::{FOREST, PenguinInput, TabularScoring};

/// The bundled model repository.
pub(crate) fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// Settings for the service on its bundled models, without polling; tests change the rest.
pub(crate) fn bundled_config() -> Config {
    let mut config = Config::default();
    config.models.uri = models_dir().display().to_string();
    config.models.poll_interval = Duration::ZERO;
    config
}

/// The service with its bundled models, loaded and ready.
pub(crate) async fn app() -> TestApp<TabularScoring> {
    TestApp::start(TabularScoring, models_dir()).await.expect("the bundled models load")
}

/// The requests of the parity fixture (`tests/fixtures/parity.json`, written by the trainer).
pub(crate) fn fixture_inputs() -> Vec<PenguinInput> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    cases.iter().map(|case| serde_json::from_value(case["input"].clone()).unwrap()).collect()
}

/// Settings for the service on a private copy of the bundled repository at `root`, one session
/// per model, polling every `poll`.
pub(crate) fn repository_config(root: &Path, poll: Duration) -> Config {
    copy_dir(&models_dir(), root);
    let mut config = Config::default();
    config.models.uri = root.display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = poll;
    config
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
    publish_with_graph(root, model, version, |from, to| {
        std::fs::copy(from, to).unwrap();
    });
}

/// Publishes `version` of `model` like [`publish`], with `place_graph(bundled, target)` putting
/// something at the graph's path (a copy, a link, a FIFO) before the manifest is written, so a
/// poll never sees the version half made.
pub(crate) fn publish_with_graph(
    root: &Path,
    model: &str,
    version: u64,
    place_graph: impl FnOnce(&Path, &Path),
) {
    let from = models_dir().join(model).join("1");
    let to = root.join(model).join(version.to_string());
    std::fs::create_dir_all(&to).unwrap();
    place_graph(&from.join("model.onnx"), &to.join("model.onnx"));
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(from.join("manifest.json")).unwrap())
            .unwrap();
    manifest["version"] = version.into();
    std::fs::write(to.join("manifest.json"), manifest.to_string()).unwrap();
}

/// A request the forest answers, with few measurements.
pub(crate) fn input() -> PenguinInput {
    PenguinInput { island: "Dream".into(), bill_length_mm: Some(49.0), ..PenguinInput::default() }
}

/// The forest version that answers a request now.
pub(crate) async fn forest_version(app: &TestApp<TabularScoring>) -> u64 {
    let prediction = app.predict(&input()).await.expect("predictions keep working");
    prediction.models.iter().find(|m| m.name == FOREST).expect("the forest ran").version
}

/// Waits until the forest answers with `version`, failing after a generous bound.
pub(crate) async fn wait_for_version(app: &TestApp<TabularScoring>, version: u64) -> Duration {
    let start = Instant::now();
    while forest_version(app).await != version {
        assert!(start.elapsed() < Duration::from_secs(20), "version {version} was never served");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

/// The state of the forest in `GET /v1/models`.
pub(crate) async fn forest_status(app: &TestApp<TabularScoring>) -> Value {
    let models: Value = app.get("/v1/models").await.json();
    models["models"].as_array().unwrap().iter().find(|m| m["name"] == FOREST).unwrap().clone()
}
