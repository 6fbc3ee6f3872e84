//! Every datatype oxiserve's tensors hold, over KServe v2 with a real client: Python
//! `tritonclient` sends one tensor of each (BOOL, UINT8 to UINT64, INT8 to INT64, FP16, FP32,
//! FP64, BYTES)
//! to `dtype-echo` (built by `trainer/build_dtype_echo.py`) over HTTP in binary and JSON mode
//! and over gRPC, and every output must equal what Python onnxruntime computes on the same
//! model. `cargo xtask test` provides the python in `XTASK_TEST_PYTHON`.

use std::time::Duration;

use oxiserve::testing::TestApp;
use oxiserve::{Config, Context, Error, Inference, Models, Outputs, Pipeline, Result};
use oxiserve_test_support::python_checks;
use serde::{Deserialize, Serialize};

const MODEL: &str = "dtype-echo";
const MODELS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/models");

/// A pipeline that only serves `dtype-echo` for the v2 routes.
struct Echo;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct Nothing {}

impl Pipeline for Echo {
    type Input = Nothing;
    type Output = Nothing;

    fn name(&self) -> &str {
        "dtype-echo"
    }

    fn models(&self) -> Vec<String> {
        vec![MODEL.into()]
    }

    fn preprocess(&self, _: &Nothing, _: &Context, _: &Models) -> Result<Inference> {
        Err(Error::invalid_input("this service is called through its KServe v2 routes"))
    }

    fn postprocess(&self, _: Nothing, _: &Context, _: Outputs) -> Result<Nothing> {
        Ok(Nothing {})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_datatype_crosses_http_and_grpc_intact() {
    let mut config = Config::default();
    config.models.uri = MODELS.into();
    config.models.sessions = 1;
    config.models.poll_interval = Duration::ZERO;
    let app = TestApp::with_config(Echo, config).await.unwrap();
    let (http, grpc) = (app.serve().await.unwrap(), app.serve_grpc().await.unwrap());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/kserve_datatypes.py");
    let args = [http.address().to_string(), grpc.address().to_string(), MODELS.to_string()];
    let stdout = python_checks(script, &args).await;
    // 13 datatypes, each over HTTP binary, HTTP JSON and gRPC.
    assert!(stdout.contains("\"checked\": 39"), "{stdout}");
}
