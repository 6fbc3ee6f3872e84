//! Parity with Python: `tests/fixtures/` holds images with the probabilities Python gave for
//! them (Pillow, numpy, onnxruntime: the twin of oxiserve's `services/image-orientation`,
//! whose `bench/fastapi/image-orientation/build_fixture.py` renders such pages). Regenerate
//! them with your model and your images, so the test keeps checking that this service
//! answers like Python. The tolerance allows for the JPEG and WebP decoders, which differ.

use oxiserve::testing::TestApp;
use oxiserve::vision::ImageFile;
use serde::Deserialize;

use {{crate}}::Input;

#[derive(Deserialize)]
struct Fixture {
    tolerance: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    file: String,
    probabilities: Vec<f32>,
}

#[tokio::test]
async fn probabilities_match_python() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(fixtures.join("parity.json")).unwrap();
    let fixture: Fixture = serde_json::from_str(&text).unwrap();
    assert!(!fixture.cases.is_empty());
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await.unwrap();
    for case in &fixture.cases {
        let image = ImageFile(std::fs::read(fixtures.join(&case.file)).unwrap());
        let output = app.predict(&Input { image }).await.unwrap();
        assert_eq!(output.probabilities.len(), case.probabilities.len(), "{}", case.file);
        for (got, want) in output.probabilities.iter().zip(&case.probabilities) {
            let off = (got.probability - want).abs();
            assert!(off <= fixture.tolerance, "{}: {got:?} against {want}", case.file);
        }
    }
}
