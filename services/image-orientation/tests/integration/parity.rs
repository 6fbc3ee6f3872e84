//! Parity with Python, and a real check of the whole path. `tests/fixtures/` holds text pages
//! rendered with Pillow (PNG, JPEG, WebP; upright, turned, upside down) and a blank page, with
//! what the Python twin (`bench/fastapi/image-orientation/orientation.py`: Pillow, numpy,
//! onnxruntime; `build_fixture.py` wrote them) answered. The service must give the same
//! orientation, rule and review flag for each, sent every way a client can, with every
//! probability within [`TOLERANCE`]: Pillow and `fast_image_resize` both resize with Lanczos-3
//! in fixed point, but JPEG and WebP are decoded by other libraries (libjpeg-turbo and libwebp
//! against the `image` crate's); the largest difference measured on these files was 0.00016.

use image::ImageFormat;
use image_orientation::{ImageOrientation, Output, Page};
use oxiserve::testing::{TestApp, TestResponse};
use serde_json::{Value, json};

/// How far a probability may be from Python's.
const TOLERANCE: f32 = 0.001;

fn fixtures() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

async fn app() -> TestApp<ImageOrientation> {
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    TestApp::start(ImageOrientation, models)
        .await
        .expect("the model loads (`cargo xtask setup` fetches it)")
}

fn cases() -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("parity.json")).unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    fixture["cases"].as_array().unwrap().clone()
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn media_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("png") => "image/png",
        Some("jpg") => "image/jpeg",
        _ => "image/webp",
    }
}

fn assert_like_python(page: &Page, case: &Value) {
    let file = &case["file"];
    assert_eq!(u64::from(page.orientation), case["orientation"], "{file}");
    assert_eq!(u64::from(page.rotate_clockwise), case["rotate_clockwise"], "{file}");
    assert_eq!(page.needs_review, case["needs_review"], "{file}");
    let expected = case["probabilities"].as_array().unwrap();
    assert_eq!(page.probabilities.len(), expected.len(), "{file}");
    for (got, want) in page.probabilities.iter().zip(expected) {
        assert_eq!(u64::from(got.degrees), want["degrees"], "{file}");
        let want = want["probability"].as_f64().unwrap() as f32;
        let off = (got.probability - want).abs();
        assert!(
            off <= TOLERANCE,
            "{file}: {} degrees: {} against {want}",
            got.degrees,
            got.probability
        );
    }
}

/// `Server-Timing` reports decoding, resizing and standardising apart, right after `pre`, and
/// their sum is within `pre`.
fn assert_preprocessing_is_timed_apart(response: &TestResponse) {
    let timing = response.headers["server-timing"].to_str().unwrap();
    let entries: Vec<(&str, f64)> = timing
        .split(", ")
        .map(|entry| {
            let (name, duration) = entry.split_once(";dur=").unwrap();
            (name, duration.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = entries.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        ["pre", "decode", "resize", "standardise", "queue", "infer", "post"],
        "{timing}"
    );
    let laps: f64 = entries[1..4].iter().map(|(_, ms)| ms).sum();
    assert!(entries[1..4].iter().all(|(_, ms)| *ms > 0.0), "{timing}");
    assert!(laps <= entries[0].1 + 0.003, "{timing}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_sending_an_image_answers_like_python() {
    let app = app().await;
    let cases = cases();
    let mut files = Vec::new();
    for case in &cases {
        let name = case["file"].as_str().unwrap();
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        // As it is, declared as its own type.
        let response = app.post("/v1/orientation", media_type(name), bytes.clone()).await;
        assert_eq!(response.status, 200, "{name}: {}", response.text());
        assert_like_python(&response.json(), case);
        // As base64 in JSON.
        let body = json!({"image": base64(&bytes)}).to_string();
        let response = app.post_json("/v1/orientation", body).await;
        assert_like_python(&response.json(), case);
        files.push(bytes);
    }
    // All of them in one request, in order, on the batch route and on /v1/predict.
    let body = json!({"images": files.iter().map(|f| base64(f)).collect::<Vec<_>>()}).to_string();
    for path in ["/v1/orientation/batch", "/v1/predict"] {
        let response = app.post_json(path, body.clone()).await;
        assert_eq!(response.status, 200, "{path}: {}", response.text());
        assert_preprocessing_is_timed_apart(&response);
        let output: Output = response.json();
        assert_eq!(output.pages.len(), cases.len());
        for (page, case) in output.pages.iter().zip(&cases) {
            assert_like_python(page, case);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_turned_every_way_is_told_how_to_turn_back() {
    let app = app().await;
    let upright = image::open(fixtures().join("page-landscape.png")).unwrap();
    let turned = [
        (0, upright.clone()),
        (90, upright.rotate90()),
        (180, upright.rotate180()),
        (270, upright.rotate270()),
    ];
    for (degrees, image) in turned {
        for format in [ImageFormat::Png, ImageFormat::Jpeg] {
            let mut bytes = std::io::Cursor::new(Vec::new());
            image.to_rgb8().write_to(&mut bytes, format).unwrap();
            let response =
                app.post("/v1/orientation", format.to_mime_type(), bytes.into_inner()).await;
            assert_eq!(response.status, 200, "{degrees} {format:?}: {}", response.text());
            let page: Page = response.json();
            assert_eq!(page.orientation, degrees, "{format:?}: {page:?}");
            assert_eq!((page.orientation + page.rotate_clockwise) % 360, 0);
            assert!(!page.needs_review && page.confidence > 0.9, "{degrees}: {page:?}");
        }
    }
}
