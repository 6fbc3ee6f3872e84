//! The HTTP contract of {{name}} through the in-process harness, on the parity fixture's
//! first case: an answer with every output, and a problem+json answer naming the field for a
//! request with no rows or a row of the wrong size.

use oxiserve::testing::TestApp;
use serde_json::{Map, Value};

async fn app() -> TestApp<{{crate}}::{{Pipeline}}> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    app.expect("the bundled model loads")
}

/// The parity fixture's first case: its `input` and Python's `output`.
fn first_case() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    fixture["cases"][0].clone()
}

/// The first case's request.
fn request() -> Map<String, Value> {
    first_case()["input"].as_object().unwrap().clone()
}

#[tokio::test]
async fn a_request_gets_every_output() {
    let app = app().await;
    let response = app.post_json("/v1/predict", Value::Object(request()).to_string()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["x-model-version"], format!("{}=1", {{crate}}::MODEL));
    let output: Map<String, Value> = response.json();
    let case = first_case();
    let names: Vec<_> = case["output"].as_object().unwrap().keys().collect();
    assert_eq!(output.keys().collect::<Vec<_>>(), names, "one field per output tensor");
}

#[tokio::test]
async fn bad_rows_are_problems_naming_the_field() {
    let app = app().await;
    for (name, rows) in request() {
        let mut empty = request();
        empty.insert(name.clone(), Value::Array(Vec::new()));
        let response = app.post_json("/v1/predict", Value::Object(empty).to_string()).await;
        assert_eq!(response.status, 422, "{name} empty: {}", response.text());
        assert_eq!(response.problem().field.as_deref(), Some(name.as_str()));

        // A row one value short, where rows are lists.
        if let Some(Value::Array(row)) = rows.as_array().unwrap().first() {
            let mut short = request();
            let mut row = row.clone();
            row.pop();
            short.insert(name.clone(), Value::Array(vec![Value::Array(row)]));
            let response = app.post_json("/v1/predict", Value::Object(short).to_string()).await;
            assert_eq!(response.status, 422, "{name} short: {}", response.text());
            assert_eq!(response.problem().field, Some(format!("{name}[0]")));
        }

        let mut missing = request();
        missing.remove(&name);
        let response = app.post_json("/v1/predict", Value::Object(missing).to_string()).await;
        assert_eq!(response.status, 422, "{name} missing: {}", response.text());
    }
}
