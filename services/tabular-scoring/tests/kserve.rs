//! KServe v2 over HTTP with a real client: `tests/kserve_client.py` drives the service's models
//! with Python `tritonclient` (binary and JSON tensors, metadata, readiness, requested outputs,
//! errors) and compares every answer with Python onnxruntime on the same model files.
//! `cargo xtask test` installs tritonclient into the venv named by `XTASK_TEST_PYTHON`.

mod common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_gets_what_onnxruntime_computes() {
    let app = common::app().await;
    let server = app.serve().await.unwrap();
    let python = std::env::var("XTASK_TEST_PYTHON")
        .expect("XTASK_TEST_PYTHON names a python with tritonclient: run `cargo xtask test`");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kserve_client.py");
    let address = server.url().trim_start_matches("http://").to_string();
    let models = common::models_dir();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python).arg(script).arg(address).arg(models).output()
    })
    .await
    .unwrap()
    .expect("the test python runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the client's checks failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["passed"].as_array().map(Vec::len), Some(4), "{report}");
}
