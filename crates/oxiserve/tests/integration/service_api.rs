//! The API a service builds on, tried by a test service as an author would: the request
//! context (headers over REST and gRPC, request id, deadline, transport), routes of the
//! service's own (served, cached and described in `/openapi.json`, checked by schemathesis;
//! one reads plain text too, raw or uploaded as a multipart form),
//! and a heavy stage that does not hold the runtime up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use oxiserve::testing::TestApp;
use oxiserve::{
    Config, Context, Endpoint, Endpoints, Error, Inference, Models, Outputs, Pipeline, Result,
    Transport,
};
use oxiserve_test_support::schemathesis;
use serde::{Deserialize, Serialize};

/// Greets on behalf of the tenant named in `x-tenant`, after sleeping `work_ms` in its
/// (heavy) preprocess stage; serves the legacy route `/legacy/greet` too. "slow" may work
/// longer than the schema allows others, and "panic" panics in the heavy stage.
struct Concierge;

/// Whether the stage of "slow" has started, and whether it is running now.
static SLOW_STARTED: AtomicBool = AtomicBool::new(false);
static SLOW_RUNNING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Visit {
    /// Who to greet.
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// Milliseconds of work in preprocess.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 100.0)]
    work_ms: f64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct Welcome {
    text: String,
    request_id: String,
    transport: String,
    /// Milliseconds left before the deadline when preprocess ran.
    deadline_left_ms: Option<u64>,
}

/// The request of the route an older client calls.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LegacyGreet {
    /// Who to greet.
    #[schema(min_length = 1, max_length = 64)]
    who: String,
}

/// The response of the legacy route.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
struct LegacyReply {
    message: String,
}

/// `/legacy/greet`: the old field names, answered by the same pipeline.
struct Legacy;

impl Endpoint for Legacy {
    type Input = Visit;
    type Output = Welcome;
    type Request = LegacyGreet;
    type Response = LegacyReply;

    fn path(&self) -> &str {
        "/legacy/greet"
    }

    fn input(&self, request: LegacyGreet, _: &Context) -> Result<Visit> {
        if request.who.is_empty() || request.who.chars().count() > 64 {
            return Err(Error::invalid_field("who", "must be 1 to 64 characters"));
        }
        Ok(Visit { name: request.who, work_ms: 0.0 })
    }

    fn output(&self, output: Welcome, _: &Context) -> Result<LegacyReply> {
        Ok(LegacyReply { message: output.text })
    }

    fn example(&self) -> Option<LegacyGreet> {
        Some(LegacyGreet { who: "Grace".into() })
    }
}

/// `/greet/card`: a name card, sent as plain text (raw, or as an uploaded file) or as the
/// legacy JSON.
struct Card;

impl Endpoint for Card {
    type Input = Visit;
    type Output = Welcome;
    type Request = LegacyGreet;
    type Response = LegacyReply;

    fn path(&self) -> &str {
        "/greet/card"
    }

    fn media_types(&self) -> &[&'static str] {
        &["text/plain"]
    }

    fn read(&self, body: &[u8], media_type: &str, _: &Context) -> Result<LegacyGreet> {
        assert_eq!(media_type, "text/plain", "only the declared type reaches `read`");
        let text = std::str::from_utf8(body)
            .map_err(|_| Error::invalid_field("body", "is not UTF-8 text"))?;
        Ok(LegacyGreet { who: text.trim().to_string() })
    }

    fn input(&self, request: LegacyGreet, context: &Context) -> Result<Visit> {
        Legacy.input(request, context)
    }

    fn output(&self, output: Welcome, context: &Context) -> Result<LegacyReply> {
        Legacy.output(output, context)
    }
}

impl Pipeline for Concierge {
    type Input = Visit;
    type Output = Welcome;

    fn name(&self) -> &str {
        "concierge"
    }

    fn models(&self) -> Vec<String> {
        Vec::new()
    }

    fn preprocess(&self, input: &Visit, _: &Context, _: &Models) -> Result<Inference> {
        if input.name.is_empty() || input.name.chars().count() > 64 {
            return Err(Error::invalid_field("name", "must be 1 to 64 characters"));
        }
        let work_ms = input.work_ms;
        let most = if input.name == "slow" { 5e3 } else { 100.0 };
        if !(0.0..=most).contains(&work_ms) {
            return Err(Error::invalid_field("work_ms", "from 0 to 100"));
        }
        assert_ne!(input.name, "panic", "the stage was asked to panic");
        let slow = input.name == "slow";
        if slow {
            SLOW_STARTED.store(true, Ordering::SeqCst);
            SLOW_RUNNING.store(true, Ordering::SeqCst);
        }
        // Blocking work, as tokenising or decoding is.
        std::thread::sleep(Duration::from_secs_f64(work_ms / 1e3));
        if slow {
            SLOW_RUNNING.store(false, Ordering::SeqCst);
        }
        Ok(Inference::new())
    }

    fn postprocess(&self, input: Visit, context: &Context, _: Outputs) -> Result<Welcome> {
        let tenant = context.header("x-tenant").unwrap_or("nobody");
        Ok(Welcome {
            text: format!("hello, {}, from {tenant}", input.name),
            request_id: context.request_id().to_string(),
            transport: format!("{:?}", context.transport()),
            deadline_left_ms: context.remaining().map(|left| left.as_millis() as u64),
        })
    }

    /// The answer depends on the tenant, so the key holds it (and the request id and deadline
    /// are left out of cached answers' concerns: they are what the first request saw).
    fn cache_key(&self, input: &Visit, context: &Context) -> Option<Vec<u8>> {
        let tenant = context.header("x-tenant").unwrap_or_default();
        (input.name == "cached").then(|| format!("{tenant}\0{}", input.name).into_bytes())
    }

    fn endpoints(&self) -> Endpoints<Visit, Welcome> {
        Endpoints::new().post(Legacy).post(Card)
    }

    fn heavy_stages(&self) -> bool {
        true
    }

    fn example(&self) -> Option<Visit> {
        Some(Visit { name: "Ada".into(), work_ms: 0.0 })
    }
}

async fn app() -> TestApp<Concierge> {
    TestApp::with_config(Concierge, Config::default()).await.expect("no models to load")
}

fn visit(name: &str) -> String {
    format!(r#"{{"name": "{name}"}}"#)
}

#[tokio::test]
async fn the_pipeline_sees_the_callers_headers_id_deadline_and_transport() {
    let app = app().await;
    let request = axum::http::Request::post("/v1/predict")
        .header("content-type", "application/json")
        .header("X-Tenant", "acme")
        .header("x-request-id", "visit-42")
        .header("x-request-timeout-ms", "1500")
        .body(visit("Ada").into())
        .unwrap();
    let response = app.request(request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let welcome: Welcome = response.json();
    assert_eq!(welcome.text, "hello, Ada, from acme");
    assert_eq!(welcome.request_id, "visit-42");
    assert_eq!(welcome.transport, "Http");
    let left = welcome.deadline_left_ms.expect("a request has a deadline");
    assert!(left > 0 && left <= 1500, "the client's shorter deadline: {left} ms");
    // Without the headers: no tenant, a request id made up and echoed, the service's deadline.
    let response = app.post_json("/v1/predict", visit("Ada")).await;
    let welcome: Welcome = response.json();
    assert_eq!(welcome.text, "hello, Ada, from nobody");
    assert_eq!(response.headers["x-request-id"], welcome.request_id.as_str());
    let limit = Config::default().limits.request_timeout_ms;
    assert!(welcome.deadline_left_ms.is_some_and(|left| left > 1500 && left <= limit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_metadata_reaches_the_pipeline_as_headers() {
    use oxiserve::grpc::proto::pipeline::PredictRequest;
    use oxiserve::grpc::proto::pipeline::pipeline_client::PipelineClient;
    let app = app().await;
    let server = app.serve_grpc().await.unwrap();
    let mut client = PipelineClient::connect(format!("http://{}", server.address())).await.unwrap();
    let mut request =
        tonic::Request::new(PredictRequest { input_json: visit("Ada"), model_version: None });
    request.metadata_mut().insert("x-tenant", "globex".parse().unwrap());
    request.metadata_mut().insert("x-request-id", "rpc-7".parse().unwrap());
    request.set_timeout(Duration::from_millis(900));
    let answer = client.predict(request).await.unwrap().into_inner();
    let welcome: Welcome = serde_json::from_str(&answer.output_json).unwrap();
    assert_eq!(welcome.text, "hello, Ada, from globex");
    assert_eq!(welcome.request_id, "rpc-7");
    assert_eq!(welcome.transport, format!("{:?}", Transport::Grpc));
    assert!(welcome.deadline_left_ms.is_some_and(|left| left > 0 && left <= 900), "{welcome:?}");
}

#[tokio::test]
async fn cached_answers_are_kept_apart_by_what_the_key_takes_from_the_context() {
    let app = app().await;
    let ask = |tenant: &'static str| {
        axum::http::Request::post("/v1/predict")
            .header("content-type", "application/json")
            .header("x-tenant", tenant)
            .body(visit("cached").into())
            .unwrap()
    };
    for _ in 0..2 {
        for tenant in ["acme", "globex"] {
            let response = app.request(ask(tenant)).await;
            let welcome: Welcome = response.json();
            assert_eq!(welcome.text, format!("hello, cached, from {tenant}"));
        }
    }
    let again = app.request(ask("acme")).await;
    let timing = again.headers["server-timing"].to_str().unwrap();
    assert!(timing.starts_with("cache;desc=memory"), "the second ask is a cache hit: {timing}");
}

#[tokio::test]
async fn a_route_of_the_services_own_is_served_cached_and_checked_like_predict() {
    let app = app().await;
    let response = app.post_json("/legacy/greet", r#"{"who": "Grace"}"#).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let reply: LegacyReply = response.json();
    assert_eq!(reply.message, "hello, Grace, from nobody");
    assert!(response.headers.contains_key("server-timing"));
    // The route's own field names, in problems that name them.
    let problem = app.post_json("/legacy/greet", r#"{"who": 3}"#).await.problem();
    assert_eq!((problem.status, problem.field.as_deref()), (422, Some("who")));
    let problem = app.post_json("/legacy/greet", r#"{"who": ""}"#).await.problem();
    assert_eq!((problem.status, problem.field.as_deref()), (422, Some("who")));
    let response = app.post("/legacy/greet", "text/plain", "who").await;
    assert_eq!(response.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(app.get("/legacy/greet").await.status, StatusCode::METHOD_NOT_ALLOWED);
    // The route's answers are cached apart from /v1/predict's for the same input.
    let cached = app.post_json("/legacy/greet", r#"{"who": "cached"}"#).await;
    assert_eq!(cached.json::<LegacyReply>().message, "hello, cached, from nobody");
    let predicted: Welcome = app.post_json("/v1/predict", visit("cached")).await.json();
    assert_eq!(predicted.text, "hello, cached, from nobody");
    let cached = app.post_json("/legacy/greet", r#"{"who": "cached"}"#).await;
    assert!(cached.headers["server-timing"].to_str().unwrap().starts_with("cache"));
    assert_eq!(cached.json::<LegacyReply>().message, "hello, cached, from nobody");
}

/// A `multipart/form-data` body with one part: `name`, declared as `media_type`, holding
/// `content`, with a file name when `file` is true.
fn form(media_type: &str, content: &[u8], file: bool) -> (String, Vec<u8>) {
    let boundary = "oxiserve-test-boundary";
    let file_name = if file { "; filename=\"card.txt\"" } else { "" };
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"{file_name}\r\n\
         Content-Type: {media_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn a_route_reads_its_own_media_types_raw_or_uploaded_and_refuses_others() {
    let app = app().await;
    let greeted = |response: oxiserve::testing::TestResponse| {
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        response.json::<LegacyReply>().message
    };
    // Raw, with parameters on the type; as an uploaded file; and JSON still.
    let raw = app.post("/greet/card", "Text/Plain; charset=utf-8", "Grace\n").await;
    assert_eq!(greeted(raw), "hello, Grace, from nobody");
    let (content_type, body) = form("text/plain", b"Ada", true);
    assert_eq!(
        greeted(app.post("/greet/card", &content_type, body).await),
        "hello, Ada, from nobody"
    );
    let json = app.post_json("/greet/card", r#"{"who": "Alan"}"#).await;
    assert_eq!(greeted(json), "hello, Alan, from nobody");
    // The route's own errors, on what `read` made of the body.
    let problem = app.post("/greet/card", "text/plain", vec![0xff, 0xfe]).await.problem();
    assert_eq!((problem.status, problem.field.as_deref()), (422, Some("body")));
    let problem = app.post("/greet/card", "text/plain", "").await.problem();
    assert_eq!((problem.status, problem.field.as_deref()), (422, Some("who")));
    // Types it does not read: 415 naming the ones it does, raw or uploaded.
    for (content_type, body) in
        [("image/png".to_string(), b"png".to_vec()), form("image/png", b"png", true)]
    {
        let problem = app.post("/greet/card", &content_type, body).await.problem();
        assert_eq!(problem.status, 415, "{problem:?}");
        assert!(problem.detail.contains("`image/png`"), "{problem:?}");
        assert!(problem.detail.contains("reads `application/json`, `text/plain`"), "{problem:?}");
    }
    // A form without a file, or one that is not a form at all: 400.
    let empty = "--b--\r\n";
    let problem = app.post("/greet/card", "multipart/form-data; boundary=b", empty).await.problem();
    assert_eq!(problem.status, 400, "{problem:?}");
    let problem = app.post("/greet/card", "multipart/form-data", "Grace").await.problem();
    assert_eq!(problem.status, 400, "{problem:?}");
}

#[tokio::test]
async fn a_body_of_a_routes_own_type_past_the_limit_is_a_413() {
    let mut config = Config::default();
    config.limits.body_bytes = 1024;
    let app = TestApp::with_config(Concierge, config).await.unwrap();
    let big = "Grace".repeat(300);
    let problem = app.post("/greet/card", "text/plain", big.clone()).await.problem();
    assert_eq!(problem.status, 413, "{problem:?}");
    let (content_type, body) = form("text/plain", big.as_bytes(), true);
    let problem = app.post("/greet/card", &content_type, body).await.problem();
    assert_eq!(problem.status, 413, "{problem:?}");
}

#[tokio::test]
async fn the_openapi_document_describes_the_route_with_its_own_schemas() {
    let api: serde_json::Value = app().await.get("/openapi.json").await.json();
    let operation = &api["paths"]["/legacy/greet"]["post"];
    assert_eq!(operation["tags"][0], "service");
    let body = &operation["requestBody"]["content"]["application/json"];
    assert_eq!(body["schema"]["$ref"], "#/components/schemas/LegacyGreet");
    assert_eq!(body["example"]["who"], "Grace");
    let answer = &operation["responses"]["200"]["content"]["application/json"]["schema"];
    assert_eq!(answer["$ref"], "#/components/schemas/LegacyReply");
    let schemas = &api["components"]["schemas"];
    assert_eq!(schemas["LegacyGreet"]["required"][0], "who");
    assert!(schemas["LegacyReply"]["properties"]["message"].is_object());
    assert!(schemas["Visit"].is_object(), "the framework's predict schemas are still there");
    // A route that reads other media types lists them, raw and as an uploaded file.
    let body = &api["paths"]["/greet/card"]["post"]["requestBody"]["content"];
    assert_eq!(body["text/plain"]["schema"]["format"], "binary", "{body}");
    assert_eq!(body["multipart/form-data"]["schema"]["properties"]["file"]["format"], "binary");
    assert!(body["application/json"].is_object());
    assert!(
        api["paths"]["/legacy/greet"]["post"]["requestBody"]["content"]["text/plain"].is_null()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_wrong_with_the_service_routes() {
    let app = app().await;
    let server = app.serve().await.unwrap();
    let url = format!("{}/openapi.json", server.url());
    schemathesis(&url, "^/(legacy/greet|v1/predict)$", 150).await;
}

/// One worker thread for the whole runtime: a stage that blocked it would hold up every other
/// request, the health check included, until it ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_slow_heavy_stage_delays_neither_health_nor_a_cheap_request() {
    let app = app().await;
    let server = app.serve().await.unwrap();
    let client = reqwest_like::Client::new(server.url());
    let slow = tokio::spawn({
        let client = client.clone();
        async move { client.post("/v1/predict", r#"{"name": "slow", "work_ms": 3000}"#).await }
    });
    while !SLOW_STARTED.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let live = client.get("/health/live").await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    let cheap = client.post("/v1/predict", &visit("Ada")).await;
    assert!(cheap.contains("hello, Ada"), "{cheap}");
    assert!(SLOW_RUNNING.load(Ordering::SeqCst), "both answered while the slow stage still ran");
    assert!(!slow.is_finished());
    let slow = slow.await.unwrap();
    assert!(slow.contains("hello, slow"), "{slow}");
}

#[tokio::test]
async fn a_heavy_stage_that_panics_is_a_500_and_the_service_goes_on() {
    let app = app().await;
    let response = app.post_json("/v1/predict", visit("panic")).await;
    assert_eq!(response.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!response.problem().detail.contains("asked to panic"));
    let after: Welcome = app.post_json("/v1/predict", visit("Ada")).await.json();
    assert_eq!(after.text, "hello, Ada, from nobody");
}

/// Just enough HTTP/1.1 over a fresh connection per request, so the test needs no client crate.
mod reqwest_like {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Clone)]
    pub(super) struct Client {
        address: String,
    }

    impl Client {
        pub(super) fn new(url: String) -> Self {
            Self { address: url.trim_start_matches("http://").to_string() }
        }

        pub(super) async fn get(&self, path: &str) -> String {
            self.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")).await
        }

        pub(super) async fn post(&self, path: &str, body: &str) -> String {
            self.send(format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ))
            .await
        }

        async fn send(&self, request: String) -> String {
            let mut stream = tokio::net::TcpStream::connect(&self.address).await.unwrap();
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).await.unwrap();
            reply
        }
    }
}
