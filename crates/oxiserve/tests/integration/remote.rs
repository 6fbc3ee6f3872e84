//! The remote backend against a real KServe v2 server: the test model `blobs` runs on MLServer
//! (scikit-learn runtime, serving the estimator the trainer pickled beside the ONNX graph),
//! with no change to the pipeline, and answers like Python onnxruntime on the committed
//! fixture, one by one and batched. MLServer killed mid-test gives 503 problem+json and
//! not-ready while the model in process (`token-pool`) still answers; when it returns, so does
//! the service. A server whose signature does not match
//! the manifest fails the start. `cargo xtask test` creates MLServer's venv and sets `MLSERVER`.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use oxiserve::config::RemoteConfig;
use oxiserve::model::{Manifest, TensorSpec};
use oxiserve::testing::TestApp;
use oxiserve::{
    Config, Context, DataType, Error, Inference, Models, Outputs, Pipeline, Result, Tensor,
};
use oxiserve_test_support::{MlServer, SklearnModel};
use serde::{Deserialize, Serialize};

/// The model on the remote server.
const MODEL: &str = "blobs";
/// A model that runs in process beside it.
const LOCAL: &str = "token-pool";

/// Four features in, the class and its probabilities out, straight from `blobs` (or the
/// probabilities alone, the only output asked for); or token ids in and their pooled embedding
/// out, from `token-pool`, asked for that output alone: one `if` between a remote and a local
/// model.
struct Blobs;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Query {
    Classify { features: Vec<f32> },
    Score { score: Vec<f32> },
    Pool { ids: Vec<i64> },
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
enum Answer {
    Classified { label: i64, probabilities: Vec<f32> },
    Scored { probabilities: Vec<f32> },
    Pooled { pooled: Vec<f32> },
}

/// A pipeline error when `output` holds `tensor`, which it did not ask for.
fn not_asked_for(output: &oxiserve::ModelOutput, tensor: &str) -> Result<()> {
    match output.tensor(tensor) {
        Ok(_) => Err(Error::pipeline(format!("`{tensor}` came back unasked"))),
        Err(_) => Ok(()),
    }
}

impl Pipeline for Blobs {
    type Input = Query;
    type Output = Answer;

    fn name(&self) -> &str {
        "blobs"
    }

    fn models(&self) -> Vec<String> {
        vec![MODEL.into(), LOCAL.into()]
    }

    fn preprocess(&self, input: &Query, _: &Context, models: &Models) -> Result<Inference> {
        let invalid = |e: ndarray::ShapeError| Error::pipeline(e.to_string());
        let features = |features: &[f32]| {
            if features.len() != 4 {
                return Err(Error::invalid_field("features", "must hold 4 numbers"));
            }
            let row =
                ndarray::Array2::from_shape_vec((1, 4), features.to_vec()).map_err(invalid)?;
            Ok([("features", Tensor::from(row))])
        };
        Ok(match input {
            Query::Classify { features: row } => {
                Inference::new().run(&models.get(MODEL)?, features(row)?)
            }
            Query::Score { score } => Inference::new().run_outputs(
                &models.get(MODEL)?,
                features(score)?,
                &["probabilities"],
            ),
            Query::Pool { ids } => {
                let ids = ndarray::Array2::from_shape_vec((1, ids.len()), ids.clone())
                    .map_err(invalid)?;
                let mask = Tensor::from(ids.mapv(|_| 1_i64));
                let inputs = [("input_ids", Tensor::from(ids)), ("attention_mask", mask)];
                Inference::new().run_outputs(&models.get(LOCAL)?, inputs, &["pooled"])
            }
        })
    }

    fn postprocess(&self, input: Query, _: &Context, outputs: Outputs) -> Result<Answer> {
        Ok(match input {
            Query::Classify { .. } => {
                let output = outputs.get(MODEL)?;
                let label = output.tensor("label")?.as_i64()?.iter().copied().next();
                let label = label.ok_or_else(|| Error::pipeline("no label"))?;
                let probabilities = output.tensor("probabilities")?.as_f32()?;
                Answer::Classified { label, probabilities: probabilities.iter().copied().collect() }
            }
            Query::Score { .. } => {
                let output = outputs.get(MODEL)?;
                not_asked_for(output, "label")?;
                let probabilities = output.tensor("probabilities")?.as_f32()?;
                Answer::Scored { probabilities: probabilities.iter().copied().collect() }
            }
            Query::Pool { .. } => {
                let output = outputs.get(LOCAL)?;
                not_asked_for(output, "token_embeddings")?;
                let pooled = output.tensor("pooled")?.as_f32()?;
                Answer::Pooled { pooled: pooled.iter().copied().collect() }
            }
        })
    }
}

/// One case of the fixture that `trainer/build_blobs.py` wrote with Python onnxruntime.
#[derive(Deserialize)]
struct Case {
    features: Vec<f32>,
    label: i64,
    probabilities: Vec<f32>,
}

fn fixture() -> (Vec<Case>, f32) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/blobs.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let cases = serde_json::from_value(fixture["cases"].clone()).unwrap();
    (cases, fixture["tolerance"].as_f64().unwrap() as f32)
}

/// Asserts that `answer` is what Python onnxruntime gave for `case`.
fn assert_matches(case: &Case, answer: &Answer, tolerance: f32) {
    let Answer::Classified { label, probabilities } = answer else {
        panic!("not a classification: {answer:?}");
    };
    assert_eq!(*label, case.label, "{:?}", case.features);
    assert_probabilities(case, probabilities, tolerance);
}

/// Asserts that `probabilities` are what Python onnxruntime gave for `case`.
fn assert_probabilities(case: &Case, probabilities: &[f32], tolerance: f32) {
    assert_eq!(probabilities.len(), case.probabilities.len());
    for (ours, theirs) in probabilities.iter().zip(&case.probabilities) {
        assert!((ours - theirs).abs() < tolerance, "{:?}: {ours} vs {theirs}", case.features);
    }
}

/// MLServer serving the estimator of `blobs`, declaring the signature the server really has
/// (`predict`, `predict_proba`).
async fn mlserver() -> MlServer {
    let dir = common::models_dir().join(MODEL).join("1");
    let manifest = Manifest::read(&dir, MODEL, 1).unwrap();
    let spec = |name: &str, datatype, shape: &[i64]| TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    let model = SklearnModel {
        name: MODEL.into(),
        joblib: dir.join("model.joblib"),
        inputs: manifest.inputs.clone(),
        outputs: vec![
            spec("predict", DataType::Int64, &[-1]),
            spec("predict_proba", DataType::Fp64, &[-1, 3]),
        ],
    };
    MlServer::start(&[model]).await.expect("MLServer starts (run `cargo xtask test`)")
}

/// Settings with `blobs` on `endpoint`, its outputs renamed as `outputs`.
fn remote_config(endpoint: &str, outputs: &[(&str, &str)]) -> Config {
    let mut config = Config::default();
    config.models.uri = common::models_dir().display().to_string();
    config.models.sessions = 2;
    config.models.poll_interval = Duration::ZERO;
    // Every request must reach the model, so the response cache is off.
    config.cache.capacity = 0;
    let outputs: BTreeMap<String, String> =
        outputs.iter().map(|(ours, theirs)| (ours.to_string(), theirs.to_string())).collect();
    let remote = RemoteConfig {
        endpoint: endpoint.into(),
        timeout_ms: 2_000,
        backoff_ms: 20,
        outputs,
        ..RemoteConfig::default()
    };
    config.models.remote.insert(MODEL.into(), remote);
    config
}

const RENAMES: [(&str, &str); 2] = [("label", "predict"), ("probabilities", "predict_proba")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_model_answers_like_onnxruntime_and_survives_its_server() {
    let mut server = mlserver().await;
    let config = remote_config(&server.grpc_endpoint(), &RENAMES);
    let app =
        TestApp::with_config(Blobs, config).await.expect("the service binds the remote model");
    let (cases, tolerance) = fixture();
    let input = |case: &Case| Query::Classify { features: case.features.clone() };

    // Every fixture case one by one, then all at once (batched in front of the remote server).
    for case in &cases {
        let answer = app.predict(&input(case)).await.unwrap_or_else(|p| panic!("{p:?}"));
        assert_matches(case, &answer, tolerance);
    }
    let runs = || app.engine().models().get(MODEL).unwrap().stats().runs();
    let runs_before = runs();
    let inputs: Vec<Query> = cases.iter().map(input).collect();
    let answers = join_all(inputs.iter().map(|input| app.predict(input))).await;
    for (case, answer) in cases.iter().zip(answers) {
        assert_matches(case, &answer.unwrap_or_else(|p| panic!("{p:?}")), tolerance);
    }
    // Asked for the probabilities alone (the server too), they are the same.
    let scores: Vec<Query> =
        cases.iter().map(|case| Query::Score { score: case.features.clone() }).collect();
    for (case, answer) in cases.iter().zip(join_all(scores.iter().map(|s| app.predict(s))).await) {
        let Answer::Scored { probabilities } = answer.unwrap_or_else(|p| panic!("{p:?}")) else {
            panic!("not the probabilities alone");
        };
        assert_probabilities(case, &probabilities, tolerance);
    }
    let runs = runs() - runs_before;
    assert!(runs > 0, "the remote model ran");
    assert!(
        runs < 2 * cases.len() as u64,
        "{runs} remote calls for {} requests: no batching",
        2 * cases.len()
    );
    assert_eq!(app.get("/health/ready").await.status, 200);

    // The server dies: clear 503s naming it, and the service reports not ready.
    server.stop();
    let body = serde_json::to_string(&input(&cases[0])).unwrap();
    let response = app.post_json("/v1/predict", body).await;
    assert_eq!(response.status, 503, "{}", response.text());
    let problem = response.problem();
    assert!(problem.kind.ends_with("remote-unavailable"), "{problem:?}");
    assert!(problem.detail.contains(&server.grpc_endpoint()), "{problem:?}");
    assert_eq!(app.get("/health/ready").await.status, 503);
    // The model in process still answers meanwhile.
    let pooled = app.predict(&Query::Pool { ids: vec![1, 2, 3] }).await;
    assert!(matches!(pooled, Ok(Answer::Pooled { .. })), "{pooled:?}");

    // It comes back: within seconds the service is ready and answers again.
    server.restart().await.unwrap();
    let started = Instant::now();
    while app.get("/health/ready").await.status != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "never ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let answer = app.predict(&input(&cases[0])).await.unwrap_or_else(|p| panic!("{p:?}"));
    assert_matches(&cases[0], &answer, tolerance);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_model_that_does_not_match_the_manifest_fails_the_start() {
    let server = mlserver().await;
    // Without the renames, the server has no `label` or `probabilities`.
    let config = remote_config(&server.grpc_endpoint(), &[]);
    let error = TestApp::with_config(Blobs, config).await.err().expect("the start fails");
    let message = error.to_string();
    assert!(message.contains("`label`") && message.contains("`probabilities`"), "{message}");
    assert!(message.contains(&server.grpc_endpoint()), "{message}");
}
