//! Hostile requests from the adversarial review (issue 13): each once crashed the server,
//! answered with the wrong status, or was served when it should have been refused. Every one
//! must get a clear client error in the transport's format, and the server must keep serving.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use oxiserve::grpc::proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use oxiserve::grpc::proto::inference::model_infer_request::InferInputTensor;
use oxiserve::grpc::proto::inference::{
    ModelInferRequest, ModelInferResponse, ModelReadyRequest, ServerLiveResponse,
};
use oxiserve::http::PROBLEM_CONTENT_TYPE;
use tabular_scoring::LINEAR;
use tonic::Code;

/// A v2 JSON inference request for the linear model with one FP32 input.
fn v2_request(shape: &str, data: &str) -> String {
    format!(
        r#"{{"inputs":[{{"name":"features","datatype":"FP32","shape":{shape},"data":{data}}}]}}"#
    )
}

#[tokio::test]
async fn a_huge_declared_shape_is_a_400_and_allocates_nothing() {
    let app = common::app().await;
    let path = format!("/v2/models/{LINEAR}/infer");
    // The first aborted the process (a 360 PB allocation); the second panicked into a 500.
    for shape in ["[10000000000000000,9]", "[1000000000000000000,9]", "[1000000000000,9]"] {
        let response = app.post_json(&path, v2_request(shape, "[]")).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{shape}: {}", response.text());
        let error: serde_json::Value = response.json();
        assert!(error["error"].as_str().unwrap().contains("has 0"), "{error}");
    }
    let nine = "[0.1,-0.3,1.2,0.4,0,1,0,1,0]";
    assert_eq!(app.post_json(&path, v2_request("[1,9]", nine)).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_number_too_large_for_fp32_is_a_400() {
    let app = common::app().await;
    let path = format!("/v2/models/{LINEAR}/infer");
    let response = app.post_json(&path, v2_request("[1,9]", "[1e39,-0.3,1.2,0.4,0,1,0,1,0]")).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
    assert!(response.text().contains("FP32"), "{}", response.text());
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_problem_json() {
    let app = common::app().await;
    let body = serde_json::to_string(&common::input()).unwrap();
    let request = Request::post("/v1/models/%ff/versions/1/predict")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    let response = app.request(request).await;
    assert_eq!(response.headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
    assert_eq!(response.problem().status, 400);
    // The v2 routes answer in their own format.
    let response = app.get("/v2/models/%ff/ready").await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert!(response.json::<serde_json::Value>()["error"].is_string(), "{}", response.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_client_errors_have_client_codes() {
    let app = common::app().await;
    let server = app.serve_grpc().await.unwrap();
    let url = format!("http://{}", server.address());
    let mut client = GrpcInferenceServiceClient::connect(url.clone()).await.unwrap();

    let ready = ModelReadyRequest { name: LINEAR.into(), version: "x".into() };
    let status = client.model_ready(ready).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());

    // Over `limits.body_bytes` (1 MiB by default).
    let big = ModelInferRequest {
        model_name: LINEAR.into(),
        inputs: vec![InferInputTensor {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![1, 9],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0; 2 << 20]],
        ..Default::default()
    };
    let status = client.model_infer(big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());

    // Bytes that are not a ModelInferRequest: a varint where a string is due.
    let channel = tonic::transport::Channel::from_shared(url).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<ServerLiveResponse, ModelInferResponse>::default();
    let path = "/inference.GRPCInferenceService/ModelInfer".parse().unwrap();
    let garbage = tonic::Request::new(ServerLiveResponse { live: true });
    let status = grpc.unary(garbage, path, codec).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_cannot_take_the_server() {
    use std::io::Read;
    let mut config = common::bundled_config();
    config.limits.max_connections = 4;
    config.limits.handshake_timeout_ms = 300;
    let app = oxiserve::testing::TestApp::with_config(tabular_scoring::TabularScoring, config)
        .await
        .unwrap();
    let server = app.serve().await.unwrap();
    let address = server.address().to_string();
    let live = move |address: String| {
        tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(|| {
                oxiserve_test_support::http_request(&address, "GET", "/health/live", "")
            })
            .map(|(status, _)| status)
            .ok()
        })
    };
    // Four connections that never send a byte take every slot: a fifth is closed at once.
    let silent: Vec<_> = (0..4).map(|_| std::net::TcpStream::connect(&address).unwrap()).collect();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(live(address.clone()).await.unwrap(), None, "no slot is left");
    // The handshake timeout frees them; the probe answers again.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(live(address.clone()).await.unwrap(), Some(200));
    for mut connection in silent {
        assert_eq!(connection.read(&mut [0; 1]).unwrap_or(0), 0, "closed by the server");
    }
}

/// Waits until `GET /v1/models` lists `count` failed versions of the forest; returns its status.
async fn wait_for_failures(
    app: &oxiserve::testing::TestApp<tabular_scoring::TabularScoring>,
    count: usize,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    loop {
        let status = common::forest_status(app).await;
        if status["failed_versions"].as_array().is_some_and(|failed| failed.len() >= count) {
            return status;
        }
        assert!(start.elapsed().as_secs() < 20, "never {count} failed versions: {status}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_reads_only_regular_files_inside_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repository");
    let config = common::repository_config(&root, std::time::Duration::from_millis(50));
    let app =
        oxiserve::testing::TestApp::with_config(tabular_scoring::TabularScoring, config).await;
    let app = app.unwrap();
    // 2: the graph is a link to a file outside the repository (its size and sha256 were
    // reported to anyone); 3: a link to /dev/zero (read whole, it took 3 GB in 5 s); 4: a
    // FIFO (the read hung the poll loop of every model, and shutdown).
    let secret = tmp.path().join("secret.bin");
    std::fs::write(&secret, b"not a model").unwrap();
    for (version, target) in [(2, secret.as_path()), (3, std::path::Path::new("/dev/zero"))] {
        common::publish_with_graph(&root, tabular_scoring::FOREST, version, |_, graph| {
            std::os::unix::fs::symlink(target, graph).unwrap();
        });
    }
    common::publish_with_graph(&root, tabular_scoring::FOREST, 4, |_, fifo| {
        let made = std::process::Command::new("mkfifo").arg(fifo).status().unwrap();
        assert!(made.success());
    });

    let status = wait_for_failures(&app, 3).await;
    let failed = status["failed_versions"].as_array().unwrap();
    let reason = |version: u64| {
        let failure = failed.iter().find(|f| f["version"] == version).unwrap();
        failure["error"].as_str().unwrap().to_string()
    };
    assert!(reason(2).contains("outside the model repository"), "{}", reason(2));
    assert!(reason(3).contains("outside the model repository"), "{}", reason(3));
    assert!(reason(4).contains("not a regular file"), "{}", reason(4));
    assert!(reason(4).starts_with("model artifact penguins-forest/4/model.onnx"), "{}", reason(4));
    // Public answers name files inside the repository, never where the repository lives.
    let models = app.get("/v1/models").await.text();
    assert!(!models.contains(&tmp.path().display().to_string()), "{models}");
    assert_eq!(common::forest_version(&app).await, 1, "version 1 serves on");
    // The poll loop goes on: a good version is adopted after the bad ones.
    common::publish(&root, tabular_scoring::FOREST, 5);
    common::wait_for_version(&app, 5).await;
}

/// A v2 inference request as a hostile client writes it: the right or a wrong input name,
/// any datatype name, shapes with negative and huge dimensions, data of any kind, binary sizes
/// that do or do not add up, and a JSON header length that may lie.
fn hostile_v2_request() -> impl proptest::strategy::Strategy<Value = (Vec<u8>, Option<String>)> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        any::<f64>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::json!(1e39)),
        ".{0,6}".prop_map(serde_json::Value::from),
        any::<bool>().prop_map(serde_json::Value::from),
    ];
    let value =
        prop_oneof![20 => (-1e3..1e3f64).prop_map(serde_json::Value::from), 1 => leaf.clone()];
    let features = prop::collection::vec(value, 9).prop_map(|values| {
        let input = serde_json::json!({"name": "features", "datatype": "FP32", "shape": [1, 9],
            "data": values});
        serde_json::json!({"inputs": [input]})
    });
    let data = leaf.prop_recursive(3, 32, 9, |inner| {
        prop::collection::vec(inner, 0..10).prop_map(serde_json::Value::Array)
    });
    let dimension = prop_oneof![4 => -1i64..10, 1 => any::<i64>(), 1 => Just(1i64 << 60)];
    let input = (
        prop_oneof![Just("features"), Just("nope")],
        prop_oneof![
            4 => prop::sample::select(vec!["FP32", "INT64", "BYTES", "fp32"]).prop_map(String::from),
            1 => ".{0,5}",
        ],
        prop::collection::vec(dimension, 0..4),
        prop::option::of(data),
        prop::option::of(prop_oneof![0u64..64, any::<u64>()]),
    )
        .prop_map(|(name, datatype, shape, data, binary)| {
            let mut input = serde_json::json!({"name": name, "datatype": datatype, "shape": shape});
            if let Some(data) = data {
                input["data"] = data;
            }
            if let Some(size) = binary {
                input["parameters"] = serde_json::json!({"binary_data_size": size});
            }
            input
        });
    let request = (prop::collection::vec(input, 0..3), any::<bool>()).prop_map(|(inputs, binary)| {
        serde_json::json!({"inputs": inputs, "parameters": {"binary_data_output": binary}})
    });
    let tail = prop::collection::vec(any::<u8>(), 0..64);
    let garbage = prop::collection::vec(any::<u8>(), 0..128);
    let body = prop_oneof![
        3 => (request, tail).prop_map(|(request, tail)| (request.to_string().into_bytes(), tail)),
        2 => features.prop_map(|request| (request.to_string().into_bytes(), Vec::new())),
        1 => garbage.prop_map(|bytes| (bytes, Vec::new())),
    ];
    let header = prop_oneof![
        2 => Just(None),
        2 => Just(Some(true)),
        1 => Just(Some(false)),
    ];
    (body, header, "[ -~]{0,4}").prop_map(|((json, tail), header, lie)| {
        let length = match header {
            None => None,
            Some(true) => Some(json.len().to_string()),
            Some(false) => Some(lie),
        };
        let mut body = json;
        body.extend(tail);
        (body, length)
    })
}

/// The bounded fuzz campaign of the KServe v2 HTTP decoder (JSON, the binary extension and
/// its header), through the real router: every request gets an answer, and never a server
/// error. `PROPTEST_CASES` sets its length.
#[test]
fn hostile_v2_requests_get_client_errors_never_server_errors() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(common::app());
    let config = proptest::test_runner::Config {
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let answered = std::cell::Cell::new(0);
    let outcome = runner.run(&hostile_v2_request(), |(body, header)| {
        let mut request = Request::post(format!("/v2/models/{LINEAR}/infer"))
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(length) = header {
            request = request.header(oxiserve::http::KSERVE_HEADER_LENGTH, length);
        }
        let response = runtime.block_on(app.request(request.body(Body::from(body)).unwrap()));
        proptest::prop_assert!(
            response.status.is_success() || response.status.is_client_error(),
            "{}: {}",
            response.status,
            response.text()
        );
        answered.set(answered.get() + usize::from(response.status.is_success()));
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    assert!(answered.get() > 0, "the campaign reached the model too");
}
