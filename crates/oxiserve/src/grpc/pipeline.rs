//! `oxiserve.v1.Pipeline`: the service's typed pipeline over gRPC. The input and output travel
//! as the same JSON as `POST /v1/predict`, parsed and checked the same way, so one contract
//! (described by `/openapi.json`) serves both transports; the answer goes through the same
//! response cache.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::json;
use crate::pipeline::Pipeline;
use crate::protocol::proto::pipeline::pipeline_server;
use crate::protocol::proto::pipeline::{ModelVersion, PredictRequest, PredictResponse};

/// `oxiserve.v1.Pipeline` over an engine.
pub(super) struct Predictor<P> {
    engine: Arc<Engine<P>>,
}

impl<P> Predictor<P> {
    /// The service over `engine`.
    pub(super) fn new(engine: Arc<Engine<P>>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl<P: Pipeline> pipeline_server::Pipeline for Predictor<P> {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let request = request.into_inner();
        let input: P::Input = json::parse(request.input_json.as_bytes())?;
        let version = request.model_version.as_ref().map(|v| (v.model.as_str(), v.version));
        let served = self.engine.answer(input, version).await.map_err(|e| Status::from(&*e))?;
        let answer = &served.answer;
        let output_json = String::from_utf8(answer.body.to_vec()).expect("serde_json writes UTF-8");
        let server_timing = served.server_timing();
        let models = answer
            .versions
            .iter()
            .map(|(model, version)| ModelVersion { model: model.clone(), version: *version })
            .collect();
        Ok(Response::new(PredictResponse { output_json, models, server_timing }))
    }
}
