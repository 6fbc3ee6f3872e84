//! Parity with Python: `tests/fixtures/parity.json` holds rows and what Python onnxruntime
//! answered for them (written with the model by the trainer). The service must agree, for
//! each row alone and for all rows in one request.

use oxiserve::testing::TestApp;
use serde::Deserialize;

use {{crate}}::Input;

#[derive(Deserialize)]
struct Fixture {
    tolerance: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    x: Vec<f32>,
    y: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture is committed"))
        .expect("the fixture parses")
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32) {
    assert_eq!(got.len(), want.len(), "{got:?} against Python's {want:?}");
    let close = got.iter().zip(want).all(|(got, want)| (got - want).abs() <= tolerance);
    assert!(close, "{got:?} against Python's {want:?}");
}

#[tokio::test]
async fn answers_match_python_onnxruntime() {
    let fixture = fixture();
    assert!(!fixture.cases.is_empty());
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    let app = app.expect("the bundled model loads");
    for case in &fixture.cases {
        let output = app.predict(&Input { x: vec![case.x.clone()] }).await.unwrap();
        assert_close(&output.y[0], &case.y, fixture.tolerance);
    }
    let all = Input { x: fixture.cases.iter().map(|case| case.x.clone()).collect() };
    let output = app.predict(&all).await.unwrap();
    for (got, case) in output.y.iter().zip(&fixture.cases) {
        assert_close(got, &case.y, fixture.tolerance);
    }
}
