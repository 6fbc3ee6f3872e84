//! Padding: requests whose token sequences differ in length share a dynamic batch, and each
//! gets exactly what it would get alone, as Python onnxruntime computed it (fixture written by
//! `trainer/build_token_pool.py`). Also the model card: the vocabulary size in the manifest is
//! parsed as each version loads, so a version with a bad one never serves.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use oxiserve::testing::TestApp;
use oxiserve::{Config, Padding, Result};
use serde::Deserialize;

use crate::common::{MODEL, Pooled, TokenPool, Tokens};

/// Pads token ids and the mask with 0, and cuts per-token outputs back.
fn token_padding() -> Padding {
    Padding::new().input("input_ids", 0.0).input("attention_mask", 0.0).output("token_embeddings")
}

#[derive(Deserialize)]
struct Fixture {
    tolerance: f32,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    ids: Vec<i64>,
    pooled: Vec<f32>,
    tokens: Vec<Vec<f32>>,
}

fn fixture() -> Fixture {
    let text = include_str!("../fixtures/token_pool.json");
    serde_json::from_str(text).expect("the fixture parses")
}

/// One session that gathers batches for 20 ms, no response cache.
async fn app(padding: Padding) -> Result<TestApp<TokenPool>> {
    app_on(&common::models_dir(), padding).await
}

/// [`app`] on the model repository at `root`.
async fn app_on(root: &std::path::Path, padding: Padding) -> Result<TestApp<TokenPool>> {
    TestApp::with_config(TokenPool { padding }, config(root, 1)).await
}

/// `sessions` sessions of the models at `root` that gather batches for 20 ms, no cache.
fn config(root: &std::path::Path, sessions: usize) -> Config {
    let mut config = Config::default();
    config.models.uri = root.display().to_string();
    config.models.sessions = sessions;
    config.models.poll_interval = Duration::ZERO;
    config.models.batching.max_batch_size = 64;
    config.models.batching.max_delay_us = 20_000;
    config.cache.capacity = 0;
    config
}

fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= tolerance, "{what}: {got:?} vs {want:?}");
    }
}

fn assert_matches(output: &Pooled, case: &Case, tolerance: f32, what: &str) {
    assert_close(&output.pooled, &case.pooled, tolerance, what);
    assert_eq!(output.tokens.len(), case.ids.len(), "{what}: one embedding per own token");
    for (got, want) in output.tokens.iter().zip(&case.tokens) {
        assert_close(got, want, tolerance, what);
    }
}

/// Sends every case at once; returns the outputs in case order.
async fn all_at_once(app: &Arc<TestApp<TokenPool>>, cases: &[Case]) -> Vec<Pooled> {
    join_all(cases.iter().map(|case| {
        let app = Arc::clone(app);
        let input = Tokens { ids: case.ids.clone() };
        async move { app.predict(&input).await.unwrap_or_else(|p| panic!("{p:?}")) }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_lengths_share_padded_batches_and_match_single_runs() {
    let fixture = fixture();
    let app = Arc::new(app(token_padding()).await.expect("token-pool loads"));
    let model = app.engine().models().get(MODEL).unwrap();
    let (runs, rows) = (model.stats().runs(), model.stats().rows());

    let batched = all_at_once(&app, &fixture.cases).await;
    let (runs, rows) = (model.stats().runs() - runs, model.stats().rows() - rows);
    assert_eq!(rows, fixture.cases.len() as u64);
    assert!(runs < rows, "lengths 1 to 16 were batched together: {rows} rows in {runs} runs");
    // Lengths 1 to 9 and 10 to 16 make two groups of similar lengths: at least two runs.
    assert!(runs >= 2, "one run padded every case to 16: {rows} rows in {runs} runs");

    for (index, (case, output)) in fixture.cases.iter().zip(&batched).enumerate() {
        assert_matches(output, case, fixture.tolerance, &format!("batched case {index}"));
        let alone = app.predict(&Tokens { ids: case.ids.clone() }).await.unwrap();
        assert_close(&output.pooled, &alone.pooled, 1e-6, "batched vs alone");
        assert_eq!(output.tokens, alone.tokens, "padded positions change no token embedding");
    }
}

/// With two sessions, the length groups of one gathered batch are shared between both
/// workers; every case still gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_groups_shared_between_workers_answer_every_case() {
    let fixture = fixture();
    let config = config(&common::models_dir(), 2);
    let app = TestApp::with_config(TokenPool { padding: token_padding() }, config).await;
    let app = Arc::new(app.expect("token-pool loads"));
    for round in 0..3 {
        let outputs = all_at_once(&app, &fixture.cases).await;
        for (index, (case, output)) in fixture.cases.iter().zip(&outputs).enumerate() {
            assert_matches(
                output,
                case,
                fixture.tolerance,
                &format!("round {round}, case {index}"),
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_padding_mixed_lengths_run_apart_and_still_match() {
    let fixture = fixture();
    let app = Arc::new(app(Padding::new()).await.expect("token-pool loads"));
    let outputs = all_at_once(&app, &fixture.cases).await;
    for (index, (case, output)) in fixture.cases.iter().zip(&outputs).enumerate() {
        assert_matches(output, case, fixture.tolerance, &format!("case {index}"));
    }
}

#[tokio::test]
async fn padding_must_name_variable_length_tensors_of_the_model() {
    let missing = app(Padding::new().input("token_type_ids", 0.0)).await.err().unwrap();
    assert!(missing.to_string().contains("token_type_ids"), "{missing}");
    let fixed = app(Padding::new().output("pooled")).await.err().unwrap();
    assert!(fixed.to_string().contains("no dynamic dimension 1"), "{fixed}");
}

#[tokio::test]
async fn a_version_whose_card_is_bad_fails_its_load_and_the_previous_one_serves() {
    let root = tempfile::tempdir().unwrap();
    common::publish(root.path(), 1, |_| {});
    common::publish(root.path(), 2, |manifest| {
        manifest["metadata"]["vocabulary"] = "sixty-four".into();
    });
    let app = app_on(root.path(), Padding::new()).await.expect("version 1 loads");
    let status = app.engine().models().status(MODEL).unwrap();
    assert_eq!(status.version, Some(1), "{status:?}");
    let failed = &status.failed_versions;
    assert_eq!(failed.len(), 1, "{status:?}");
    assert_eq!(failed[0].version, 2);
    assert!(failed[0].error.contains("`vocabulary` is not a positive integer"), "{failed:?}");
    let pooled = app.predict(&Tokens { ids: vec![1, 2, 3] }).await.expect("version 1 answers");
    assert_eq!(pooled.tokens.len(), 3);
    let problem = app.predict(&Tokens { ids: vec![1, 64] }).await.unwrap_err();
    assert_eq!((problem.status, problem.field.as_deref()), (422, Some("ids")));
}
