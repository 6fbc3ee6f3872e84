//! Parity with Python: `tests/fixtures/parity.json` holds feature rows and what Python
//! onnxruntime answered for them (written with the model by the trainer). The service must
//! choose the same class with the same probabilities, and flag exactly the rows whose class
//! Python gave less than `REVIEW_BELOW`.

use std::collections::BTreeMap;

use oxiserve::testing::TestApp;
use serde::Deserialize;

use {{crate}}::{Input, REVIEW_BELOW};

#[derive(Deserialize)]
struct Fixture {
    classes: Vec<String>,
    tolerance: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    features: Input,
    class: String,
    probabilities: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture is committed"))
        .expect("the fixture parses")
}

#[tokio::test]
async fn answers_match_python_onnxruntime() {
    let fixture = fixture();
    assert!(!fixture.cases.is_empty());
    let models = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let app = TestApp::start({{crate}}::{{Pipeline}}, models).await;
    let app = app.expect("the bundled model loads");
    let mut flagged = 0;
    for case in &fixture.cases {
        let output = app.predict(&case.features).await.unwrap_or_else(|p| panic!("{p:?}"));
        assert_eq!(output.class, case.class, "{:?}", case.features);
        let want: BTreeMap<_, _> =
            fixture.classes.iter().cloned().zip(case.probabilities.iter().copied()).collect();
        assert_eq!(output.probabilities.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
        for (class, got) in &output.probabilities {
            let close = (got - want[class]).abs() <= fixture.tolerance;
            assert!(close, "{class}: {got} against Python's {} for {:?}", want[class], case.features);
        }
        assert_eq!(output.needs_review, want[&case.class] < REVIEW_BELOW, "{:?}", case.features);
        flagged += usize::from(output.needs_review);
    }
    assert!(flagged > 0 && flagged < fixture.cases.len(), "the fixture tries both sides of the rule");
}
