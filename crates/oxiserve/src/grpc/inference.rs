//! `inference.GRPCInferenceService`: KServe v2 over gRPC for the raw models.
//!
//! ModelInfer takes inputs as `raw_input_contents` (what `tritonclient.grpc` sends) or as
//! typed `contents`, and answers in the same form (raw when an output is FP16, which has no
//! typed form). Model resolution, input checks and the run
//! itself are shared with HTTP (`crate::kserve`).

use tonic::{Request, Response, Status};

use crate::engine::StatusState;
use crate::error::Error;
use crate::kserve;
use crate::protocol::proto::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::protocol::proto::inference::model_infer_response::InferOutputTensor;
use crate::protocol::proto::inference::model_metadata_response::TensorMetadata;
use crate::protocol::proto::inference::*;
use crate::protocol::{contents, tensor_data};
use crate::tensor::Tensors;

/// `inference.GRPCInferenceService` over the service's models.
pub(super) struct Inference {
    status: StatusState,
}

impl Inference {
    /// The service over the models of `status`.
    pub(super) fn new(status: StatusState) -> Self {
        Self { status }
    }
}

/// An empty version string means "the server's choice".
fn version(text: &str) -> Option<&str> {
    (!text.is_empty()).then_some(text)
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.status.is_ready() }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let ready =
            match kserve::resolve(self.status.registry(), &request.name, version(&request.version))
            {
                Ok(_) => true,
                Err(error @ (Error::UnknownModel(_) | Error::InvalidInput { .. })) => {
                    return Err(error.into());
                }
                Err(_) => false,
            };
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: kserve::SERVER_NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: kserve::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let models = self.status.registry();
        let model = kserve::resolve(models, &request.name, version(&request.version))?;
        let metadata = kserve::metadata(models, &model);
        let describe = |tensors: Vec<kserve::TensorMetadata>| {
            tensors
                .into_iter()
                .map(|t| TensorMetadata {
                    name: t.name,
                    datatype: t.datatype.to_string(),
                    shape: t.shape,
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: metadata.name,
            versions: metadata.versions,
            platform: metadata.platform,
            inputs: describe(metadata.inputs),
            outputs: describe(metadata.outputs),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        let models = self.status.registry();
        let model = kserve::resolve(models, &request.model_name, version(&request.model_version))?;
        let raw = !request.raw_input_contents.is_empty();
        if raw && request.raw_input_contents.len() != request.inputs.len() {
            return Err(Error::invalid_input(format!(
                "{} inputs but {} raw_input_contents",
                request.inputs.len(),
                request.raw_input_contents.len()
            ))
            .into());
        }
        let mut inputs = Tensors::new();
        let mut raw_contents = request.raw_input_contents.into_iter();
        for input in request.inputs {
            let (spec, shape) =
                kserve::input_spec(&model, &input.name, &input.datatype, &input.shape)?;
            let bad =
                |detail: String| Error::invalid_input(format!("input `{}`: {detail}", input.name));
            let tensor = match (raw_contents.next(), input.contents) {
                (Some(bytes), _) => tensor_data::from_raw(spec.datatype, &shape, &bytes),
                (None, Some(typed)) => contents::read(spec.datatype, &shape, typed),
                (None, None) => Err("no contents and no raw_input_contents".into()),
            }
            .map_err(bad)?;
            if inputs.insert(input.name.clone(), tensor).is_some() {
                return Err(bad("given twice".into()).into());
            }
        }
        let requested: Vec<String> = request.outputs.into_iter().map(|o| o.name).collect();
        let outputs = kserve::infer(&model, inputs, &requested).await?;
        let mut response = ModelInferResponse {
            model_name: model.name().to_string(),
            model_version: model.version().to_string(),
            id: request.id,
            ..Default::default()
        };
        // Typed answers for typed requests, unless an output (FP16) has no typed form.
        let typed: Option<Vec<_>> =
            if raw { None } else { outputs.iter().map(|(_, t)| contents::write(t)).collect() };
        let mut typed = typed.map(Vec::into_iter);
        for (name, tensor) in outputs {
            let contents = if let Some(typed) = typed.as_mut() {
                typed.next()
            } else {
                let mut bytes = Vec::new();
                tensor_data::write_raw(&tensor, &mut bytes);
                response.raw_output_contents.push(bytes);
                None
            };
            response.outputs.push(InferOutputTensor {
                name,
                datatype: tensor.datatype().to_string(),
                shape: tensor.shape().iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents,
            });
        }
        Ok(Response::new(response))
    }
}
