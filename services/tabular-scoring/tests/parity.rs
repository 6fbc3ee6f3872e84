//! Parity with Python: the trainer's fixture holds requests and what Python onnxruntime
//! returned for them after the trainer's own preprocessing. The service must agree.

mod common;

use serde::Deserialize;
use tabular_scoring::{FOREST, LINEAR, Mode, PenguinInput};

#[derive(Deserialize)]
struct Fixture {
    classes: Vec<String>,
    tolerance: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    input: PenguinInput,
    expected: std::collections::BTreeMap<String, Expected>,
}

#[derive(Deserialize)]
struct Expected {
    label: usize,
    probabilities: Vec<f32>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/parity.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("the fixture is committed"))
        .expect("the fixture parses")
}

#[tokio::test]
async fn every_mode_matches_python_onnxruntime() {
    let fixture = fixture();
    assert!(fixture.cases.len() > 50, "the fixture covers the held-out split");
    let app = common::app().await;
    for case in &fixture.cases {
        for mode in [Mode::Fast, Mode::Accurate, Mode::Ensemble] {
            let request = PenguinInput { mode: Some(mode), ..case.input.clone() };
            let prediction =
                app.predict(&request).await.unwrap_or_else(|p| panic!("{request:?}: {p:?}"));
            let runs: &[&str] = match mode {
                Mode::Fast => &[LINEAR],
                Mode::Accurate => &[FOREST],
                Mode::Ensemble => &[LINEAR, FOREST],
            };
            let expected: Vec<f32> = (0..fixture.classes.len())
                .map(|i| {
                    runs.iter().map(|m| case.expected[*m].probabilities[i]).sum::<f32>()
                        / runs.len() as f32
                })
                .collect();
            for (class, want) in fixture.classes.iter().zip(&expected) {
                let got = prediction.probabilities[class];
                assert!(
                    (got - want).abs() <= fixture.tolerance,
                    "{mode:?} {request:?}: P({class}) = {got}, Python says {want}"
                );
            }
            if let [only] = runs {
                let label = &fixture.classes[case.expected[*only].label];
                assert_eq!(&prediction.species, label, "{mode:?} {request:?}");
            }
            let names: Vec<&str> = prediction.models.iter().map(|m| m.name.as_str()).collect();
            assert_eq!(names, runs, "the response names the models that ran");
        }
    }
}
