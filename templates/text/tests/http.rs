//! The HTTP contract of {{name}} through the in-process harness: one unit-length embedding
//! per text, a long text cut at the model's limit and flagged, and a problem+json answer
//! naming the field for every bad request.

use oxiserve::testing::TestApp;
use serde_json::json;

use {{crate}}::{Input, MAX_CHARS, MAX_TEXTS};

async fn app() -> TestApp<{{crate}}::{{Pipeline}}> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    app.expect("the model loads (`cargo xtask setup` fetches it)")
}

#[tokio::test]
async fn every_text_gets_a_unit_length_embedding() {
    let app = app().await;
    let long = "every word counts until the window is full ".repeat(100);
    let texts = vec!["A short text.".to_string(), "Ein kurzer Text.".to_string(), long];
    let output = app.predict(&Input { texts }).await.unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(output.embeddings.len(), 3);
    for embedding in &output.embeddings {
        let length: f32 = embedding.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((length - 1.0).abs() < 1e-4, "length {length}");
        assert!(embedding.tokens >= 3, "[CLS], a token, [SEP]");
    }
    assert_ne!(output.embeddings[0].vector, output.embeddings[1].vector);
    assert!(!output.embeddings[0].reached_limit && !output.embeddings[1].reached_limit);
    assert!(output.embeddings[2].reached_limit, "{:?}", output.embeddings[2].tokens);
    assert_eq!(output.embeddings[2].tokens, 256, "cut to the model's limit");

    let response = app.post_json("/v1/predict", json!({"texts": ["hello"]}).to_string()).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.headers["x-model-version"], "minilm=1");
}

#[tokio::test]
async fn bad_requests_are_problems_naming_the_field() {
    let app = app().await;
    let too_many = vec!["a"; MAX_TEXTS + 1];
    let too_long = "a".repeat(MAX_CHARS + 1);
    for (body, field) in [
        (json!({"texts": []}), "texts"),
        (json!({"texts": too_many}), "texts"),
        (json!({"texts": ["fine", ""]}), "texts[1]"),
        (json!({"texts": ["   "]}), "texts[0]"),
        (json!({"texts": [too_long]}), "texts[0]"),
        (json!({"texts": "one text"}), "texts"),
        (json!({"texts": [1, 2]}), "texts[0]"),
        (json!({"text": ["a"]}), "text"),
    ] {
        let response = app.post_json("/v1/predict", body.to_string()).await;
        assert_eq!(response.status, 422, "{body}: {}", response.text());
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
    let texts = &document["components"]["schemas"]["Input"]["properties"]["texts"];
    assert!(texts.is_object(), "{document}");
}
