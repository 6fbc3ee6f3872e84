//! The FastAPI baseline (`bench/fastapi/tabular-scoring`, what `cargo xtask bench` measures oxiserve against)
//! answers like this service on every fixture case in every mode, so the benchmark compares
//! equal work. `cargo xtask test` creates its venv and points `BASELINE_PYTHON` at it.

use crate::common;

use oxiserve_test_support::fastapi_twin;
use tabular_scoring::{Mode, PenguinInput, Prediction};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fastapi_baseline_answers_like_the_service() {
    let (baseline, app) = (fastapi_twin("tabular-scoring").await, common::app().await);
    let address = format!("127.0.0.1:{}", baseline.port());
    let cases = common::fixture_inputs();
    assert!(cases.len() > 50);
    for case in &cases {
        for mode in [Mode::Fast, Mode::Accurate, Mode::Ensemble] {
            let input = PenguinInput { mode: Some(mode), ..case.clone() };
            let ours = app.predict(&input).await.unwrap_or_else(|p| panic!("{p:?}"));
            let body = serde_json::to_string(&input).unwrap();
            let (status, text) =
                oxiserve_test_support::http_request(&address, "POST", "/v1/predict", &body);
            assert_eq!(status, 200, "{body}: {text}");
            let theirs: Prediction = serde_json::from_str(&text).unwrap();
            assert_eq!(
                (&ours.species, ours.needs_review, &ours.review_reasons, &ours.models),
                (&theirs.species, theirs.needs_review, &theirs.review_reasons, &theirs.models),
                "{body}"
            );
            assert!((ours.confidence - theirs.confidence).abs() < 1e-6, "{body}");
            for (class, p) in &ours.probabilities {
                assert!((p - theirs.probabilities[class]).abs() < 1e-6, "{body}: {class}");
            }
        }
    }
    // Both reject a measurement outside the trained range with 422.
    let bad = r#"{"island": "Dream", "bill_length_mm": 900}"#;
    assert_eq!(oxiserve_test_support::http_request(&address, "POST", "/v1/predict", bad).0, 422);
    assert_eq!(app.post_json("/v1/predict", bad).await.status, 422);
}
