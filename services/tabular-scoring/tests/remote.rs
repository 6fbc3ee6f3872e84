//! The remote backend against a real KServe v2 server: the linear model runs on MLServer
//! (scikit-learn runtime, serving the estimator the trainer pickled beside the ONNX graph),
//! with no change to the pipeline, and answers like the local ONNX model. MLServer killed
//! mid-test gives 503 problem+json and not-ready; when it returns, so does the service.
//! `cargo xtask test` creates MLServer's venv and sets `MLSERVER`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use oxiserve::config::RemoteConfig;
use oxiserve::model::{Manifest, TensorSpec};
use oxiserve::testing::TestApp;
use oxiserve::{Config, DataType};
use oxiserve_test_support::{MlServer, SklearnModel};
use tabular_scoring::{LINEAR, Mode, PenguinInput, TabularScoring};

/// MLServer serving the linear model's estimator, declaring the signature the server really
/// has (`predict`, `predict_proba`).
async fn mlserver() -> MlServer {
    let dir = common::models_dir().join(LINEAR).join("1");
    let manifest = Manifest::read(&dir, LINEAR, 1).unwrap();
    let spec = |name: &str, datatype, shape: &[i64]| TensorSpec {
        name: name.into(),
        datatype,
        shape: shape.to_vec(),
    };
    let model = SklearnModel {
        name: LINEAR.into(),
        joblib: dir.join("model.joblib"),
        inputs: manifest.inputs.clone(),
        outputs: vec![
            spec("predict", DataType::Int64, &[-1]),
            spec("predict_proba", DataType::Fp64, &[-1, 3]),
        ],
    };
    MlServer::start(&[model]).await.expect("MLServer starts (run `cargo xtask test`)")
}

/// The service's settings with the linear model on `endpoint`, its outputs renamed as `outputs`.
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
    config.models.remote.insert(LINEAR.into(), remote);
    config
}

const RENAMES: [(&str, &str); 2] = [("label", "predict"), ("probabilities", "predict_proba")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_model_answers_like_the_local_one_and_survives_its_server() {
    let mut server = mlserver().await;
    let remote =
        TestApp::with_config(TabularScoring, remote_config(&server.grpc_endpoint(), &RENAMES))
            .await
            .expect("the service binds the remote model");
    let local = common::app().await;

    // Every fixture case, in the modes that run the linear model, one by one and then all at
    // once (batched in front of the remote server): the same answers within 1e-5.
    let cases: Vec<PenguinInput> = common::fixture_inputs()
        .into_iter()
        .flat_map(|case| {
            [Mode::Fast, Mode::Ensemble]
                .map(|mode| PenguinInput { mode: Some(mode), ..case.clone() })
        })
        .collect();
    let compare = |input: &PenguinInput,
                   theirs: &tabular_scoring::Prediction,
                   ours: &tabular_scoring::Prediction| {
        assert_eq!((&theirs.species, &theirs.models), (&ours.species, &ours.models), "{input:?}");
        for (class, p) in &ours.probabilities {
            assert!((p - theirs.probabilities[class]).abs() < 1e-5, "{input:?}: {class}");
        }
    };
    for input in &cases {
        let over_remote = remote.predict(input).await.unwrap_or_else(|p| panic!("{p:?}"));
        compare(input, &over_remote, &local.predict(input).await.unwrap());
    }
    let runs_before = remote.engine().models().get(LINEAR).unwrap().stats().runs();
    let answers = join_all(cases.iter().map(|input| remote.predict(input))).await;
    for (input, answer) in cases.iter().zip(answers) {
        compare(input, &answer.unwrap(), &local.predict(input).await.unwrap());
    }
    let runs = remote.engine().models().get(LINEAR).unwrap().stats().runs() - runs_before;
    assert!(runs > 0, "the remote model ran");
    assert!(
        runs < cases.len() as u64,
        "{runs} remote calls for {} requests: no batching",
        cases.len()
    );
    assert_eq!(remote.get("/health/ready").await.status, 200);

    // The server dies: clear 503s naming it, and the service reports not ready.
    server.stop();
    let fast = PenguinInput { mode: Some(Mode::Fast), ..common::input() };
    let body = serde_json::to_string(&fast).unwrap();
    let response = remote.post_json("/v1/predict", body.clone()).await;
    assert_eq!(response.status, 503, "{}", response.text());
    let problem = response.problem();
    assert!(problem.kind.ends_with("remote-unavailable"), "{problem:?}");
    assert!(problem.detail.contains(&server.grpc_endpoint()), "{problem:?}");
    assert_eq!(remote.get("/health/ready").await.status, 503);
    // The forest still runs in process meanwhile.
    let accurate = PenguinInput { mode: Some(Mode::Accurate), ..common::input() };
    assert!(remote.predict(&accurate).await.is_ok());

    // It comes back: within seconds the service is ready and answers again.
    server.restart().await.unwrap();
    let started = Instant::now();
    while remote.get("/health/ready").await.status != 200 {
        assert!(started.elapsed() < Duration::from_secs(30), "never ready again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let over_remote = remote.predict(&fast).await.unwrap_or_else(|p| panic!("{p:?}"));
    compare(&fast, &over_remote, &local.predict(&fast).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_model_that_does_not_match_the_manifest_fails_the_start() {
    let server = mlserver().await;
    // Without the renames, the server has no `label` or `probabilities`.
    let config = remote_config(&server.grpc_endpoint(), &[]);
    let error = TestApp::with_config(TabularScoring, config).await.err().expect("the start fails");
    let message = error.to_string();
    assert!(message.contains("`label`") && message.contains("`probabilities`"), "{message}");
    assert!(message.contains(&server.grpc_endpoint()), "{message}");
}
