//! Parity with Python: the trainer's fixture holds requests and what Python onnxruntime
//! returned for them after the trainer's own preprocessing. The service must agree, whether
//! requests run one by one or stacked into dynamic batches, on the ONNX-ML interpreter or on
//! ONNX Runtime.

use crate::common;

use std::sync::Arc;

use futures_util::future::join_all;
use oxiserve::Config;
use oxiserve::config::{OnnxMl, RunOverrides};
use oxiserve::model::Runtime;
use oxiserve::testing::TestApp;
use serde::Deserialize;
use tabular_scoring::{FOREST, LINEAR, Mode, PenguinInput, Prediction, TabularScoring};

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

/// `case` run in `mode`, with the mode set on the request.
fn request(case: &Case, mode: Mode) -> PenguinInput {
    PenguinInput { mode: Some(mode), ..case.input.clone() }
}

/// Asserts that `prediction` agrees with Python for `case` in `mode`.
fn assert_matches_python(fixture: &Fixture, case: &Case, mode: Mode, prediction: &Prediction) {
    let runs: &[&str] = match mode {
        Mode::Fast => &[LINEAR],
        Mode::Accurate => &[FOREST],
        Mode::Ensemble => &[LINEAR, FOREST],
    };
    let expected: Vec<f32> = (0..fixture.classes.len())
        .map(|i| {
            runs.iter().map(|m| case.expected[*m].probabilities[i]).sum::<f32>() / runs.len() as f32
        })
        .collect();
    for (class, want) in fixture.classes.iter().zip(&expected) {
        let got = prediction.probabilities[class];
        assert!(
            (got - want).abs() <= fixture.tolerance,
            "{mode:?} {:?}: P({class}) = {got}, Python says {want}",
            case.input
        );
    }
    if let [only] = runs {
        assert_eq!(
            prediction.species, fixture.classes[case.expected[*only].label],
            "{mode:?} {:?}",
            case.input
        );
    }
    let names: Vec<&str> = prediction.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, runs, "the response names the models that ran");
}

#[tokio::test]
async fn every_mode_matches_python_onnxruntime() {
    let fixture = fixture();
    assert!(fixture.cases.len() > 50, "the fixture covers the held-out split");
    // By default both models run on the ONNX-ML interpreter; `models.onnx_ml` puts them on
    // ONNX Runtime. Either must give Python's answers.
    for (onnx_ml, runtime) in
        [(OnnxMl::Rust, Runtime::OnnxMl), (OnnxMl::OnnxRuntime, Runtime::OnnxRuntime)]
    {
        let mut config = common::bundled_config();
        config.models.onnx_ml = onnx_ml;
        let app = TestApp::with_config(TabularScoring, config).await.unwrap();
        for model in [LINEAR, FOREST] {
            assert_eq!(app.engine().models().get(model).unwrap().runtime(), runtime, "{model}");
        }
        for case in &fixture.cases {
            for mode in [Mode::Fast, Mode::Accurate, Mode::Ensemble] {
                let prediction =
                    app.predict(&request(case, mode)).await.unwrap_or_else(|p| panic!("{p:?}"));
                assert_matches_python(&fixture, case, mode, &prediction);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_requests_match_python_onnxruntime() {
    let fixture = fixture();
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.sessions = 1;
    config.models.poll_interval = std::time::Duration::ZERO;
    config.models.batching.max_batch_size = 64;
    config.models.batching.max_delay_us = 20_000;
    config.cache.capacity = 0; // every request must reach the models to be batched
    // The linear model alone runs unbatched: per-model settings override the global ones.
    let unbatched = RunOverrides { max_batch_size: Some(1), ..RunOverrides::default() };
    config.models.overrides.insert(LINEAR.into(), unbatched);
    let app = Arc::new(TestApp::with_config(TabularScoring, config).await.unwrap());
    let forest = app.engine().models().get(FOREST).unwrap();
    let linear = app.engine().models().get(LINEAR).unwrap();
    let (runs_before, rows_before) = (forest.stats().runs(), forest.stats().rows());
    let linear_before = (linear.stats().runs(), linear.stats().rows());

    // Every case in every mode at once: batches mix rows of different requests and modes.
    let requests = fixture
        .cases
        .iter()
        .flat_map(|case| [Mode::Fast, Mode::Accurate, Mode::Ensemble].map(|mode| (case, mode)));
    let answers = join_all(requests.map(|(case, mode)| {
        let app = Arc::clone(&app);
        async move { (case, mode, app.predict(&request(case, mode)).await) }
    }))
    .await;
    for (case, mode, prediction) in answers {
        assert_matches_python(
            &fixture,
            case,
            mode,
            &prediction.unwrap_or_else(|p| panic!("{p:?}")),
        );
    }

    let runs = forest.stats().runs() - runs_before;
    let rows = forest.stats().rows() - rows_before;
    assert_eq!(
        rows,
        2 * fixture.cases.len() as u64,
        "one forest row per accurate and ensemble request"
    );
    assert!(runs < rows, "requests were batched: {rows} rows in {runs} runs");
    let linear_runs = linear.stats().runs() - linear_before.0;
    assert_eq!(linear_runs, linear.stats().rows() - linear_before.1, "one row per linear run");
    assert_eq!(linear_runs, 2 * fixture.cases.len() as u64, "fast and ensemble requests");
}
