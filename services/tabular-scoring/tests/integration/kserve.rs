//! KServe v2 with a real client: `tests/kserve_client.py` drives the service's models with
//! Python `tritonclient` over HTTP (binary and JSON tensors) and gRPC (raw and typed
//! contents): metadata, readiness, requested outputs and errors, every answer compared with
//! Python onnxruntime on the same model files. The gRPC health service is checked with
//! `grpcio-health-checking` and reflection with `grpcio-reflection`. `cargo xtask test`
//! installs these into the venv named by `XTASK_TEST_PYTHON`.

use crate::common;

use oxiserve::Config;
use oxiserve::testing::TestApp;
use oxiserve_test_support::python_checks;
use tabular_scoring::TabularScoring;

/// Runs `tests/kserve_client.py` with `args` and asserts that every check passed.
async fn client(args: &[&str]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kserve_client.py");
    let args: Vec<String> = args.iter().map(ToString::to_string).collect();
    let stdout = python_checks(script, &args).await;
    assert!(stdout.contains("\"passed\""), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_over_http_gets_what_onnxruntime_computes() {
    let app = common::app().await;
    let server = app.serve().await.unwrap();
    let models = common::models_dir();
    client(&["http", &server.address().to_string(), &models.display().to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_over_grpc_gets_what_onnxruntime_computes() {
    let app = common::app().await;
    let server = app.serve_grpc().await.unwrap();
    let models = common::models_dir();
    client(&["grpc", &server.address().to_string(), &models.display().to_string()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_follows_readiness() {
    // Loading: not serving.
    let loading = TestApp::unloaded(TabularScoring, Config::default()).await.unwrap();
    let server = loading.serve_grpc().await.unwrap();
    client(&["health", &server.address().to_string(), "NOT_SERVING"]).await;
    // Ready: serving; draining for shutdown: not serving again.
    let app = common::app().await;
    let server = app.serve_grpc().await.unwrap();
    client(&["health", &server.address().to_string(), "SERVING"]).await;
    app.engine().start_draining();
    client(&["health", &server.address().to_string(), "NOT_SERVING"]).await;
}
