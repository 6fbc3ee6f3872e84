//! The HTTP contract of {{name}} through the in-process harness: an image sent as it is, as
//! base64 in JSON and as an upload gets the same answer, and every bad image is a
//! problem+json answer, after which the service answers the next good one.

use oxiserve::testing::TestApp;
use oxiserve::vision::ImageFile;
use serde_json::json;

use {{crate}}::{Input, Output};

async fn app() -> TestApp<{{crate}}::{{Pipeline}}> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    app.expect("the model loads (`cargo xtask setup` fetches it)")
}

fn page() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/page-landscape.png"))
        .expect("the fixture is committed")
}

#[tokio::test]
async fn an_image_gets_the_same_answer_however_it_is_sent() {
    let app = app().await;
    let typed = app.predict(&Input { image: ImageFile(page()) }).await.unwrap();
    assert_eq!(typed.label, "upright");
    assert!(!typed.needs_review && typed.confidence > 0.9, "{typed:?}");
    let same = |output: Output| {
        assert_eq!(output.label, typed.label);
        assert!((output.confidence - typed.confidence).abs() < 1e-5, "{output:?}");
    };
    let raw = app.post("/v1/classify", "image/png", page()).await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    same(raw.json());
    let body = serde_json::to_string(&Input { image: ImageFile(page()) }).unwrap();
    same(app.post_json("/v1/classify", body).await.json());
}

#[tokio::test]
async fn bad_images_are_problems_and_the_service_goes_on() {
    let app = app().await;
    let truncated = page()[..1000].to_vec();
    for (body, status) in [
        (Vec::new(), 422),
        (b"not a picture".to_vec(), 415),
        (truncated, 422),
    ] {
        let problem = app.post("/v1/classify", "image/png", body).await.problem();
        assert_eq!(problem.status, status, "{problem:?}");
        assert_eq!(app.post("/v1/classify", "image/png", page()).await.status, 200);
    }
    let problem = app.post_json("/v1/classify", json!({"image": "no base64!"}).to_string()).await;
    assert_eq!(problem.problem().field.as_deref(), Some("image"));
    let problem = app.post("/v1/classify", "text/plain", "hello").await.problem();
    assert_eq!(problem.status, 415, "{problem:?}");
}
