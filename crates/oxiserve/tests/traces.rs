//! Traces across process boundaries, exported over OTLP to a receiver in the test process.
//!
//! Two services on the test model `token-pool`: `upstream` serves it over KServe v2 gRPC, and
//! `front` runs it as a remote model on `upstream`. A caller's request into `front` carries a W3C
//! `traceparent` and an `x-request-id`; every span of that request, in both services, must
//! arrive in the caller's trace, each under its parent, and the id must come back. A trace
//! the caller did not sample is not exported. One test in this binary, since the tracing
//! subscriber belongs to the process.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use oxiserve::Config;
use oxiserve::config::RemoteConfig;
use oxiserve::testing::TestApp;
use oxiserve_test_support::{OtlpReceiver, ReceivedSpan};

use crate::common::{MODEL, TokenPool};

/// The caller's trace and span, as in the W3C Trace Context specification's example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// A trace whose caller chose not to sample it.
const UNSAMPLED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// The one span named `name` whose attributes include `attribute`.
fn span<'a>(spans: &'a [ReceivedSpan], name: &str, attribute: (&str, &str)) -> &'a ReceivedSpan {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.name == name && s.attributes.get(attribute.0).map(String::as_str) == Some(attribute.1)
        })
        .collect();
    assert_eq!(found.len(), 1, "one `{name}` span with {attribute:?} in {spans:#?}");
    found[0]
}

/// The one span named `name` under `parent`.
fn child<'a>(spans: &'a [ReceivedSpan], name: &str, parent: &ReceivedSpan) -> &'a ReceivedSpan {
    let found: Vec<_> =
        spans.iter().filter(|s| s.name == name && s.parent_span_id == parent.span_id).collect();
    assert_eq!(found.len(), 1, "one `{name}` span under `{}` in {spans:#?}", parent.name);
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_runs_through_every_stage_and_into_the_remote_model_server() {
    let receiver = OtlpReceiver::start().await.unwrap();
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.poll_interval = Duration::ZERO;
    config.cache.capacity = 0;
    config.telemetry.otlp_endpoint = Some(receiver.endpoint());
    let telemetry =
        oxiserve::telemetry::init(&config.log, &config.telemetry, "token-pool").unwrap();
    let pipeline = || TokenPool::new();

    let upstream = TestApp::with_config(pipeline(), config.clone()).await.unwrap();
    let grpc = upstream.serve_grpc().await.unwrap();
    let mut front_config = config;
    let remote = RemoteConfig {
        endpoint: format!("http://{}", grpc.address()),
        timeout_ms: 5_000,
        ..RemoteConfig::default()
    };
    front_config.models.remote.insert(MODEL.into(), remote);
    let front = TestApp::with_config(pipeline(), front_config).await.unwrap();

    let input = serde_json::json!({"ids": [1, 2, 3]});
    let request = Request::post("/v1/predict")
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .header("x-request-id", "trace-test-1")
        .body(Body::from(serde_json::to_vec(&input).unwrap()))
        .unwrap();
    let response = front.request(request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["x-request-id"], "trace-test-1");
    // A caller that decided not to sample its trace (flags 00): nothing of it is exported.
    let unsampled = Request::post("/v1/predict")
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{UNSAMPLED_TRACE_ID}-{CALLER_SPAN}-00"))
        .body(Body::from(serde_json::to_vec(&input).unwrap()))
        .unwrap();
    assert_eq!(front.request(unsampled).await.status, 200);
    telemetry.flush().unwrap();
    let received = receiver.spans();
    assert!(!received.iter().any(|s| s.trace_id == UNSAMPLED_TRACE_ID), "unsampled spans sent");

    let spans: Vec<ReceivedSpan> =
        received.into_iter().filter(|s| s.trace_id == TRACE_ID).collect();
    assert!(spans.iter().all(|s| s.service == "token-pool"), "{spans:#?}");
    // The front service: the request continues the caller's span, the stages sit under it.
    let request = span(&spans, "request", ("route", "/v1/predict"));
    assert_eq!(request.parent_span_id, CALLER_SPAN);
    assert_eq!(request.attributes["request_id"], "trace-test-1");
    child(&spans, "preprocess", request);
    child(&spans, "postprocess", request);
    let model = child(&spans, "model", request);
    assert_eq!(model.attributes["model"], MODEL);
    let remote_call = child(&spans, "inference", model);
    // The upstream service's request is a child of the front's inference span: the
    // `traceparent` went out with the remote call.
    let upstream_request =
        span(&spans, "request", ("rpc", "/inference.GRPCInferenceService/ModelInfer"));
    assert_eq!(upstream_request.parent_span_id, remote_call.span_id);
    // KServe v2 runs the raw model: no pipeline stages, the session run straight under it.
    child(&spans, "inference", upstream_request);
}
