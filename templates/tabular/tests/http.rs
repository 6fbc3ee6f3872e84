//! The HTTP contract of {{name}} through the in-process harness: a class with probabilities
//! and the review flag, and a problem+json answer naming the field for every bad request.

use oxiserve::testing::TestApp;
use serde_json::json;

use {{crate}}::{Input, REVIEW_BELOW};

async fn app() -> TestApp<{{crate}}::{{Pipeline}}> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    app.expect("the bundled model loads")
}

fn input(values: [f32; 4]) -> Input {
    let [sepal_length_cm, sepal_width_cm, petal_length_cm, petal_width_cm] = values;
    Input { sepal_length_cm, sepal_width_cm, petal_length_cm, petal_width_cm }
}

#[tokio::test]
async fn answers_carry_a_class_its_probabilities_and_the_rule() {
    let app = app().await;
    let mut classes = std::collections::BTreeSet::new();
    for values in [[5.0, 3.4, 1.5, 0.2], [6.0, 2.8, 4.5, 1.4], [7.0, 3.1, 6.0, 2.3]] {
        let output = app.predict(&input(values)).await.unwrap_or_else(|p| panic!("{p:?}"));
        let sum: f32 = output.probabilities.values().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{output:?}");
        let confidence = output.probabilities[&output.class];
        assert!(output.probabilities.values().all(|&p| p <= confidence), "{output:?}");
        assert_eq!(output.needs_review, confidence < REVIEW_BELOW, "{output:?}");
        classes.insert(output.class);
    }
    assert_eq!(classes.len(), 3, "three different flowers, three classes: {classes:?}");

    let body = json!({
        "sepal_length_cm": 6.1, "sepal_width_cm": 2.8, "petal_length_cm": 4.7, "petal_width_cm": 1.2
    });
    let response = app.post_json("/v1/predict", body.to_string()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["x-model-version"], "classifier=1");
}

#[tokio::test]
async fn bad_requests_are_problems_naming_the_field() {
    let app = app().await;
    let valid = json!({
        "sepal_length_cm": 6.1, "sepal_width_cm": 2.8, "petal_length_cm": 4.7, "petal_width_cm": 1.2
    });
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let mut missing = valid.clone();
    missing.as_object_mut().unwrap().remove("petal_width_cm");
    for (body, status, field) in [
        (with("sepal_width_cm", json!(-1.0)), 422, "sepal_width_cm"),
        (with("petal_length_cm", json!("long")), 422, "petal_length_cm"),
        (with("colour", json!("blue")), 422, "colour"),
        (missing, 422, "petal_width_cm"),
    ] {
        let response = app.post_json("/v1/predict", body.to_string()).await;
        assert_eq!(response.status, status, "{body}: {}", response.text());
        let problem = response.problem();
        assert_eq!(problem.field.as_deref(), Some(field), "{body}: {problem:?}");
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
    let properties = &document["components"]["schemas"]["Input"]["properties"];
    for feature in Input::FEATURES {
        assert!(properties[feature].is_object(), "{feature}: {document}");
    }
}
