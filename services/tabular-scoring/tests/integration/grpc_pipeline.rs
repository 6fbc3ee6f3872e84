//! The typed pipeline over gRPC (`oxiserve.v1.Pipeline`, with a tonic client): the same JSON
//! in and out as `POST /v1/predict`, the same answers, versions and errors.

use crate::common;

use oxiserve::grpc::proto::pipeline::pipeline_client::PipelineClient;
use oxiserve::grpc::proto::pipeline::{ModelVersion, PredictRequest};
use tabular_scoring::{FOREST, Mode, PenguinInput, Prediction};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_predict_answers_like_http() {
    let app = common::app().await;
    let server = app.serve_grpc().await.unwrap();
    let mut client = PipelineClient::connect(format!("http://{}", server.address())).await.unwrap();
    let cases = common::fixture_inputs();
    assert!(cases.len() > 50);
    for case in cases.iter().take(30) {
        for mode in [Mode::Fast, Mode::Accurate, Mode::Ensemble] {
            let input = PenguinInput { mode: Some(mode), ..case.clone() };
            let input_json = serde_json::to_string(&input).unwrap();
            let request = PredictRequest { input_json: input_json.clone(), model_version: None };
            let response = client.predict(request).await.unwrap().into_inner();
            let over_grpc: Prediction = serde_json::from_str(&response.output_json).unwrap();
            let over_http = app.predict(&input).await.unwrap();
            assert_eq!(
                serde_json::to_value(&over_grpc).unwrap(),
                serde_json::to_value(&over_http).unwrap(),
                "{input_json}"
            );
            let ran: Vec<(String, u64)> =
                response.models.iter().map(|m| (m.model.clone(), m.version)).collect();
            let named: Vec<(String, u64)> =
                over_http.models.iter().map(|m| (m.name.clone(), m.version)).collect();
            assert_eq!(ran, named);
            assert!(response.server_timing.contains("infer;dur="), "{}", response.server_timing);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_predict_errors_have_the_right_codes() {
    let app = common::app().await;
    let server = app.serve_grpc().await.unwrap();
    let mut client = PipelineClient::connect(format!("http://{}", server.address())).await.unwrap();
    let call = |input_json: &str, model_version: Option<ModelVersion>| PredictRequest {
        input_json: input_json.to_string(),
        model_version,
    };
    let valid = serde_json::to_string(&common::input()).unwrap();
    // A value out of range names the field, like the 422 over HTTP.
    let out_of_range = r#"{"island": "Dream", "bill_length_mm": -4}"#;
    let status = client.predict(call(out_of_range, None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("bill_length_mm"), "{}", status.message());
    // Broken JSON.
    let status = client.predict(call("{", None)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    // A version that is not loaded, of a model that exists or not.
    let seven = ModelVersion { model: FOREST.into(), version: 7 };
    let status = client.predict(call(&valid, Some(seven))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert!(status.message().contains("version 7"), "{}", status.message());
    let unknown = ModelVersion { model: "nope".into(), version: 1 };
    let status = client.predict(call(&valid, Some(unknown))).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{}", status.message());
    // The version that exists answers, and says so.
    let one = ModelVersion { model: FOREST.into(), version: 1 };
    let response = client.predict(call(&valid, Some(one))).await.unwrap().into_inner();
    assert!(response.models.iter().any(|m| m.model == FOREST && m.version == 1));
}
