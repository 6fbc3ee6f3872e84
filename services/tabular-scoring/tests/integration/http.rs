//! The HTTP contract through the in-process harness: predictions, branching, business rules,
//! the model list, probes, OpenAPI, and a problem+json answer for every error status.

use crate::common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use oxiserve::Config;
use oxiserve::testing::{TestApp, TestResponse};
use serde_json::Value;
use tabular_scoring::{Mode, PenguinInput, ReviewReason, Sex, TabularScoring};

fn gentoo() -> PenguinInput {
    PenguinInput {
        island: "Biscoe".into(),
        sex: Some(Sex::Male),
        bill_length_mm: Some(50.0),
        bill_depth_mm: Some(15.2),
        flipper_length_mm: Some(218.0),
        body_mass_g: Some(5700.0),
        ..PenguinInput::default()
    }
}

fn assert_problem(response: &TestResponse, status: StatusCode, field: Option<&str>) {
    assert_eq!(response.status, status, "{}", response.text());
    let problem = response.problem();
    assert!(problem.kind.starts_with("urn:oxiserve:problem:"), "{problem:?}");
    assert!(!problem.title.is_empty() && !problem.detail.is_empty(), "{problem:?}");
    assert_eq!(problem.field.as_deref(), field, "{problem:?}");
}

#[tokio::test]
async fn the_mode_field_chooses_the_models() {
    let app = common::app().await;
    for (mode, models) in [
        (None, vec!["penguins-forest"]),
        (Some(Mode::Fast), vec!["penguins-linear"]),
        (Some(Mode::Ensemble), vec!["penguins-linear", "penguins-forest"]),
    ] {
        let prediction = app.predict(&PenguinInput { mode, ..gentoo() }).await.unwrap();
        assert_eq!(prediction.species, "Gentoo");
        let names: Vec<_> = prediction.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, models);
        assert!(prediction.models.iter().all(|m| m.version == 1));
        let total: f32 = prediction.probabilities.values().sum();
        assert!((total - 1.0).abs() < 1e-3, "probabilities sum to one: {total}");
    }
}

#[tokio::test]
async fn business_rules_flag_predictions_for_review() {
    let app = common::app().await;
    let confident = app.predict(&gentoo()).await.unwrap();
    assert!(!confident.needs_review && confident.review_reasons.is_empty());

    let strict = PenguinInput { min_confidence: Some(1.0), mode: Some(Mode::Fast), ..gentoo() };
    let strict = app.predict(&strict).await.unwrap();
    assert!(strict.confidence < 1.0);
    assert_eq!(strict.review_reasons, vec![ReviewReason::LowConfidence]);

    let sparse = PenguinInput {
        island: "Dream".into(),
        bill_length_mm: Some(49.0),
        ..PenguinInput::default()
    };
    let sparse = app.predict(&sparse).await.unwrap();
    assert!(sparse.needs_review);
    assert!(sparse.review_reasons.contains(&ReviewReason::MostlyImputed), "{sparse:?}");
}

#[tokio::test]
async fn every_client_error_is_problem_json() {
    let app = common::app().await;
    let cases: [(&str, &str, StatusCode, Option<&str>); 7] = [
        ("application/json", "{\"island\": ", StatusCode::BAD_REQUEST, None),
        ("application/json", r#"{"island": "Dream",}"#, StatusCode::BAD_REQUEST, None),
        ("application/json", r#"{"island": 7}"#, StatusCode::UNPROCESSABLE_ENTITY, Some("island")),
        (
            "application/json",
            r#"{"sex": "male"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("island"),
        ),
        (
            "application/json",
            r#"{"island": "Dream", "sex": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("sex"),
        ),
        (
            "application/json",
            r#"{"island": "Dream", "body_mass_g": -5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("body_mass_g"),
        ),
        ("text/plain", r#"{"island": "Dream"}"#, StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
    ];
    for (content_type, body, status, field) in cases {
        let response = app.post("/v1/predict", content_type, body).await;
        assert_problem(&response, status, field);
    }
    let threshold =
        app.post_json("/v1/predict", r#"{"island": "Dream", "min_confidence": 2}"#).await;
    assert_problem(&threshold, StatusCode::UNPROCESSABLE_ENTITY, Some("min_confidence"));
    let unknown = app.post_json("/v1/predict", r#"{"island": "Dream", "wingspan": 2}"#).await;
    assert_problem(&unknown, StatusCode::UNPROCESSABLE_ENTITY, Some("wingspan"));
    let missing_type = Request::post("/v1/predict").body(Body::from("{}")).unwrap();
    assert_problem(&app.request(missing_type).await, StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    assert_problem(&app.get("/v2/nothing").await, StatusCode::NOT_FOUND, None);
    assert_problem(&app.get("/v1/predict").await, StatusCode::METHOD_NOT_ALLOWED, None);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = common::app().await;
    let padding = " ".repeat(Config::default().limits.body_bytes);
    let response =
        app.post_json("/v1/predict", format!("{{\"island\": \"Dream\"{padding}}}")).await;
    assert_problem(&response, StatusCode::PAYLOAD_TOO_LARGE, None);
}

#[tokio::test]
async fn before_models_load_the_service_is_live_but_not_ready() {
    let app =
        TestApp::unloaded(TabularScoring, Config::default()).await.expect("no Redis to connect to");
    assert_eq!(app.get("/health/live").await.status, StatusCode::OK);
    let ready = app.get("/health/ready").await;
    assert_problem(&ready, StatusCode::SERVICE_UNAVAILABLE, None);
    assert_eq!(ready.headers.get(header::RETRY_AFTER).unwrap(), "1");
    let predict = app.post_json("/v1/predict", serde_json::to_vec(&gentoo()).unwrap()).await;
    assert_problem(&predict, StatusCode::SERVICE_UNAVAILABLE, None);
    let models: Value = app.get("/v1/models").await.json();
    assert!(
        models["models"].as_array().unwrap().iter().all(|m| m["state"] == "loading"),
        "{models}"
    );
}

#[tokio::test]
async fn ready_service_lists_its_models() {
    let app = common::app().await;
    assert_eq!(app.get("/health/ready").await.status, StatusCode::OK);
    let models: Value = app.get("/v1/models").await.json();
    let models = models["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["penguins-forest", "penguins-linear"]);
    assert!(models.iter().all(|m| m["state"] == "ready" && m["version"] == 1), "{models:?}");
}

#[tokio::test]
async fn the_openapi_example_is_a_request_that_works() {
    let app = common::app().await;
    let spec: Value = app.get("/openapi.json").await.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."), "{}", spec["openapi"]);
    for path in ["/v1/predict", "/v1/models", "/health/live", "/health/ready"] {
        assert!(spec["paths"][path].is_object(), "{path} is documented");
    }
    let body = &spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"];
    let schema_ref = body["schema"]["$ref"].as_str().unwrap();
    let schema_name = schema_ref.rsplit('/').next().unwrap();
    assert!(spec["components"]["schemas"][schema_name]["properties"]["island"].is_object());
    let example = &body["example"];
    let response = app.post_json("/v1/predict", serde_json::to_vec(example).unwrap()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let responses = &spec["paths"]["/v1/predict"]["post"]["responses"];
    for status in ["200", "400", "413", "415", "422", "503", "504"] {
        assert!(responses[status].is_object(), "status {status} is documented");
    }
}

#[tokio::test]
async fn the_openapi_document_passes_a_real_validator() {
    let python = std::env::var("XTASK_TEST_PYTHON").expect(
        "XTASK_TEST_PYTHON names a python with openapi-spec-validator: run `cargo xtask test`",
    );
    let app = common::app().await;
    let spec = app.get("/openapi.json").await;
    let file = tempfile::NamedTempFile::with_suffix(".json").unwrap();
    std::fs::write(file.path(), &spec.body).unwrap();
    let output = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("the validator runs");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "openapi-spec-validator rejects the document: {report}");
    assert!(report.contains("OK"), "{report}");
}

#[tokio::test]
async fn the_docs_ui_is_served_from_the_binary() {
    let app = common::app().await;
    let page = app
        .request(Request::builder().method(Method::GET).uri("/docs/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("swagger-ui"), "{}", page.text());
    let script = app.get("/docs/swagger-ui-bundle.js").await;
    assert_eq!(script.status, StatusCode::OK);
    assert!(script.body.len() > 100_000, "the UI bundle is embedded, not fetched from a CDN");
}

#[tokio::test]
async fn responses_say_where_the_time_went() {
    let app = common::app().await;
    let response = app.post_json("/v1/predict", serde_json::to_vec(&gentoo()).unwrap()).await;
    assert_eq!(response.status, StatusCode::OK);
    let timing = response.headers["server-timing"].to_str().unwrap().to_string();
    let stages: Vec<(&str, f64)> = timing
        .split(", ")
        .map(|entry| {
            let (name, duration) = entry.split_once(";dur=").expect("name;dur=ms");
            (name, duration.parse().expect("milliseconds"))
        })
        .collect();
    let names: Vec<&str> = stages.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, ["pre", "queue", "infer", "post"], "{timing}");
    assert!(stages.iter().all(|(_, ms)| *ms >= 0.0), "{timing}");
    assert!(stages[2].1 > 0.0, "the model ran: {timing}");
}
