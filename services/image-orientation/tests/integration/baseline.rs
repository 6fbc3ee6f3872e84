//! The FastAPI baseline (`bench/fastapi/image-orientation`, what `cargo xtask bench --service
//! image-orientation` measures oxiserve against) answers like this service on every fixture
//! image, alone and in one batch, so the benchmark compares equal work: the same orientation
//! and review flag, every probability within 0.001. `cargo xtask test` creates its venv and
//! points `BASELINE_PYTHON` at it.

use std::path::Path;

use image_orientation::ImageOrientation;
use oxiserve::testing::TestApp;
use oxiserve_test_support::{fastapi_twin, http_request};
use serde_json::{Value, json};

fn assert_alike(ours: &Value, theirs: &Value, what: &str) {
    assert_eq!(ours["orientation"], theirs["orientation"], "{what}");
    assert_eq!(ours["rotate_clockwise"], theirs["rotate_clockwise"], "{what}");
    assert_eq!(ours["needs_review"], theirs["needs_review"], "{what}");
    let (a, b) =
        (ours["probabilities"].as_array().unwrap(), theirs["probabilities"].as_array().unwrap());
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x["degrees"], y["degrees"], "{what}");
        let off = (x["probability"].as_f64().unwrap() - y["probability"].as_f64().unwrap()).abs();
        assert!(off <= 1e-3, "{what}: {x} against {y}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fastapi_baseline_answers_like_the_service() {
    use base64::Engine as _;
    let baseline = fastapi_twin("image-orientation").await;
    let address = format!("127.0.0.1:{}", baseline.port());
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let app = TestApp::start(ImageOrientation, models).await.unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixture: Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("parity.json")).unwrap())
            .unwrap();
    let mut images = Vec::new();
    for case in fixture["cases"].as_array().unwrap() {
        let file = case["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures.join(file)).unwrap();
        let image = base64::engine::general_purpose::STANDARD.encode(bytes);
        let body = json!({"image": image}).to_string();
        let ours: Value = app.post_json("/v1/orientation", body.clone()).await.json();
        let (status, theirs) = http_request(&address, "POST", "/v1/orientation", &body);
        assert_eq!(status, 200, "{file}: {theirs}");
        assert_alike(&ours, &serde_json::from_str(&theirs).unwrap(), file);
        images.push(image);
    }
    let body = json!({"images": images}).to_string();
    let ours: Value = app.post_json("/v1/orientation/batch", body.clone()).await.json();
    let (status, theirs) = http_request(&address, "POST", "/v1/orientation/batch", &body);
    assert_eq!(status, 200, "{theirs}");
    let theirs: Value = serde_json::from_str(&theirs).unwrap();
    for (a, b) in ours["pages"].as_array().unwrap().iter().zip(theirs["pages"].as_array().unwrap())
    {
        assert_alike(a, b, "in one batch");
    }
    // Both refuse an empty image and bytes that are no image, with the same statuses.
    for (image, status) in [("", 422), ("AAAA", 415)] {
        let body = json!({"image": image}).to_string();
        assert_eq!(app.post_json("/v1/orientation", body.clone()).await.status, status);
        assert_eq!(http_request(&address, "POST", "/v1/orientation", &body).0, status, "{image:?}");
    }
}
