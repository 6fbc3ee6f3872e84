//! The test harness on a pipeline that needs no model: typed calls, client errors, panics and
//! readiness, all through the real router.

use axum::http::StatusCode;
use oxiserve::testing::TestApp;
use oxiserve::{Config, Context, Error, Inference, Models, Outputs, Pipeline, Result};
use serde::{Deserialize, Serialize};

/// Greets by name; rejects empty names; panics on "panic" to prove panics become 500s; asks
/// for a model it never declared on "typo"; answers what JSON cannot hold on "unserialisable".
struct Greeter;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct Name {
    name: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct Greeting {
    text: String,
    /// Keys that are not strings: JSON cannot hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    bytes: Option<std::collections::BTreeMap<Vec<u8>, u8>>,
}

impl Pipeline for Greeter {
    type Input = Name;
    type Output = Greeting;

    fn name(&self) -> &str {
        "greeter"
    }

    fn models(&self) -> Vec<String> {
        Vec::new()
    }

    fn preprocess(&self, input: &Name, _: &Context, models: &Models) -> Result<Inference> {
        match input.name.as_str() {
            "" => Err(Error::invalid_field("name", "must not be empty")),
            "panic" => panic!("the pipeline was asked to panic"),
            "typo" => models.get("greeter-modle").map(|_| Inference::new()),
            _ => Ok(Inference::new()),
        }
    }

    fn postprocess(&self, input: Name, _: &Context, outputs: Outputs) -> Result<Greeting> {
        assert_eq!(outputs.iter().count(), 0, "no model ran");
        let bytes = (input.name == "unserialisable").then(|| [(vec![1u8], 1u8)].into());
        Ok(Greeting { text: format!("hello, {}", input.name), bytes })
    }

    fn example(&self) -> Option<Name> {
        Some(Name { name: "warm-up".into() })
    }
}

async fn app() -> TestApp<Greeter> {
    TestApp::with_config(Greeter, Config::default()).await.expect("a pipeline without models loads")
}

#[tokio::test]
async fn predict_returns_the_typed_output() {
    let greeting = app().await.predict(&Name { name: "Ada".into() }).await.unwrap();
    assert_eq!(greeting.text, "hello, Ada");
}

#[tokio::test]
async fn client_errors_come_back_as_problems() {
    let problem = app().await.predict(&Name { name: String::new() }).await.unwrap_err();
    assert_eq!((problem.status, problem.field.as_deref()), (422, Some("name")));
}

#[tokio::test]
async fn a_panicking_pipeline_gives_500_and_hides_the_message() {
    let app = app().await;
    let response = app.post_json("/v1/predict", r#"{"name": "panic"}"#).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    let problem = response.problem();
    assert!(!problem.detail.contains("asked to panic"), "{problem:?}");
    let after = app.predict(&Name { name: "still here".into() }).await.unwrap();
    assert_eq!(after.text, "hello, still here", "the server survives the panic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_over_grpc_is_internal_and_the_server_goes_on() {
    use oxiserve::grpc::proto::pipeline::PredictRequest;
    use oxiserve::grpc::proto::pipeline::pipeline_client::PipelineClient;
    let app = app().await;
    let server = app.serve_grpc().await.unwrap();
    let mut client = PipelineClient::connect(format!("http://{}", server.address())).await.unwrap();
    let call = |name: &str| PredictRequest {
        input_json: format!(r#"{{"name": "{name}"}}"#),
        model_version: None,
    };
    let status = client.predict(call("panic")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(!status.message().contains("asked to panic"), "{status:?}");
    let after = client.predict(call("still here")).await.unwrap().into_inner();
    assert!(after.output_json.contains("hello, still here"), "{after:?}");
}

#[tokio::test]
async fn a_model_the_pipeline_never_declared_is_a_500_not_a_503() {
    let response = app().await.post_json("/v1/predict", r#"{"name": "typo"}"#).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR, "clients must not retry");
    assert!(!response.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn an_output_json_cannot_hold_is_a_500_not_a_panic() {
    let app = app().await;
    // The engine itself answers with an error (it panicked before, caught only by the HTTP
    // panic guard).
    let name = Name { name: "unserialisable".into() };
    let error = app.engine().answer(name, None).await.unwrap_err();
    assert!(error.to_string().contains("does not serialise"), "{error}");
    let response = app.post_json("/v1/predict", r#"{"name": "unserialisable"}"#).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.problem().kind, "urn:oxiserve:problem:internal");
}

#[tokio::test]
async fn an_unloaded_app_is_not_ready_and_a_loaded_one_is() {
    let unloaded =
        TestApp::unloaded(Greeter, Config::default()).await.expect("no Redis to connect to");
    assert!(!unloaded.engine().is_ready());
    assert_eq!(unloaded.get("/health/ready").await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(app().await.get("/health/ready").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_socket_server_answers_until_dropped() {
    let app = app().await;
    let server = app.serve().await.unwrap();
    let address = server.url().trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    drop(server);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(tokio::net::TcpStream::connect(&address).await.is_err(), "the listener is closed");
}

/// The service takes `POST /v1/predict` before its router (`http::Dispatch`); the router alone,
/// as `oxiserve::http::serve` runs it, must answer every such request the same way.
#[tokio::test]
async fn predict_answers_alike_through_the_router_alone() {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let mut config = Config::default();
    config.limits.body_bytes = 64;
    let app = TestApp::with_config(Greeter, config.clone()).await.unwrap();
    let engine = Arc::new(oxiserve::Engine::new(Greeter));
    engine.load(&oxiserve::Loader::new(&config).await.unwrap()).await.unwrap();
    let router = oxiserve::http::router(engine, &config, None);

    let long = format!(r#"{{"name": "{}"}}"#, "a".repeat(100));
    let cases: [(Method, &str, &str, &str); 9] = [
        (Method::POST, "/v1/predict", "application/json", r#"{"name": "Ada"}"#),
        (Method::POST, "/v1/predict?explain=1", "application/json", r#"{"name": "Ada"}"#),
        (Method::POST, "/v1/predict/", "application/json", r#"{"name": "Ada"}"#),
        (Method::POST, "/v1/predict", "application/json", r#"{"name": ""}"#),
        (Method::POST, "/v1/predict", "application/json", r#"{"name": "panic"}"#),
        (Method::POST, "/v1/predict", "application/json", "{"),
        (Method::POST, "/v1/predict", "text/plain", r#"{"name": "Ada"}"#),
        (Method::POST, "/v1/predict", "application/json", &long),
        (Method::GET, "/v1/predict", "application/json", ""),
    ];
    for (method, path, content_type, body) in cases {
        let request = || {
            Request::builder()
                .method(method.clone())
                .uri(path)
                .header("content-type", content_type)
                .header("x-request-id", "same-id")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        let served = app.request(request()).await;
        let alone = router.clone().oneshot(request()).await.unwrap();
        let (parts, alone_body) = alone.into_parts();
        let alone_body = alone_body.collect().await.unwrap().to_bytes();
        let case = format!("{method} {path} {content_type} {body}");
        assert_eq!(served.status, parts.status, "{case}");
        assert_eq!(served.body, alone_body, "{case}");
        for name in ["content-type", "x-request-id", "x-model-version"] {
            assert_eq!(served.headers.get(name), parts.headers.get(name), "{name}: {case}");
        }
        assert_eq!(
            served.headers.contains_key("server-timing"),
            parts.headers.contains_key("server-timing"),
            "{case}"
        );
    }
}
