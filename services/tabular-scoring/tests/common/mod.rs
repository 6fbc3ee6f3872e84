//! Shared helpers for the service's integration tests.

#![allow(
    dead_code,
    reason = "each test binary uses its own subset of the helpers"
)]

use std::path::PathBuf;

use oxiserve::testing::TestApp;
use tabular_scoring::TabularScoring;

/// The bundled model repository.
pub(crate) fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// The service with its bundled models, loaded and ready.
pub(crate) async fn app() -> TestApp<TabularScoring> {
    TestApp::start(TabularScoring, models_dir())
        .await
        .expect("the bundled models load")
}
