//! The HTTP contract of {{name}} through the in-process harness: an answer per row, and a
//! problem+json answer naming the field for every bad request.

use oxiserve::testing::TestApp;
use serde_json::json;

use {{crate}}::Input;

async fn app() -> TestApp<{{crate}}::{{Pipeline}}> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    app.expect("the bundled model loads")
}

#[tokio::test]
async fn every_row_gets_an_answer() {
    let app = app().await;
    let rows = vec![vec![0.5, -1.0, 2.0, 0.0], vec![0.0; 4], vec![1.0; 4]];
    let output = app.predict(&Input { x: rows.clone() }).await.unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(output.y.len(), rows.len());
    assert!(output.y.iter().all(|row| !row.is_empty() && row.iter().all(|y| y.is_finite())));
    assert_ne!(output.y[1], output.y[2], "different rows, different answers");

    let response = app.post_json("/v1/predict", json!({"x": rows}).to_string()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["x-model-version"], "model=1");
}

#[tokio::test]
async fn bad_requests_are_problems_naming_the_field() {
    let app = app().await;
    for (body, status, field) in [
        (json!({"x": []}), 422, Some("x")),
        (json!({"x": [[1.0, 2.0]]}), 422, Some("x[0]")),
        (json!({"x": [[0.0, 0.0, 0.0, 0.0], [1.0]]}), 422, Some("x[1]")),
        (json!({"x": "rows"}), 422, Some("x")),
        (json!({"rows": [[0.0, 0.0, 0.0, 0.0]]}), 422, Some("rows")),
    ] {
        let response = app.post_json("/v1/predict", body.to_string()).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        let problem = response.problem();
        assert_eq!(problem.field.as_deref(), field, "{body}: {problem:?}");
    }
    let response = app.post_json("/v1/predict", "{not json").await;
    assert_eq!(response.status, 400, "{}", response.text());
    response.problem();
}

#[tokio::test]
async fn the_openapi_document_describes_the_input() {
    let app = app().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    let document: serde_json::Value = response.json();
    let x = &document["components"]["schemas"]["Input"]["properties"]["x"];
    assert!(x.is_object(), "{document}");
}
