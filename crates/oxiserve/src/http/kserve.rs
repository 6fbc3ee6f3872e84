//! KServe v2 over HTTP (the Open Inference Protocol's REST binding) for every model of the
//! service, with Triton's binary tensor data extension, so `tritonclient.http` works in its
//! default binary mode as well as in JSON:
//!
//! - `GET /v2`, `GET /v2/health/live`, `GET /v2/health/ready`;
//! - `GET /v2/models/{model}[/versions/{version}]` (metadata) and `.../ready`;
//! - `POST /v2/models/{model}[/versions/{version}]/infer`.
//!
//! A request body with binary tensors is its JSON header, `Inference-Header-Content-Length`
//! bytes long, followed by each binary input's bytes in the order of `inputs`; an answer with
//! binary outputs is built the same way. Errors are `{"error": "..."}` as the protocol says:
//! 400 for a bad request, 404 for an unknown model or version, 503 while loading or
//! overloaded, 504 past the deadline.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::buffered::BufferedBody;
use super::path::PathParams;
use crate::engine::{ServiceStatus, StatusState};
use crate::error::Error;
use crate::kserve::{self, ModelMetadata};
use crate::protocol::tensor_data;
use crate::tensor::{DataType, Tensors};

/// The header giving the length of the JSON part of a body that carries binary tensors.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// The v2 routes with their OpenAPI.
pub(crate) fn routes(status: StatusState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(server_metadata))
        .routes(routes!(server_live))
        .routes(routes!(server_ready))
        .routes(routes!(model_metadata))
        .routes(routes!(version_metadata))
        .routes(routes!(model_ready))
        .routes(routes!(version_ready))
        .routes(routes!(model_infer))
        .routes(routes!(version_infer))
        .with_state(status)
}

/// The path parameters of a v2 route, refused as v2 errors.
type V2Path = PathParams<ModelPath, V2Error>;

/// A v2 error: the crate's error, answered as `{"error": "..."}`.
struct V2Error(Error);

impl From<Error> for V2Error {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

/// The body of every v2 error.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        self.0.log_answered();
        // The protocol answers every client error about the request itself with 400.
        let status = match StatusCode::from_u16(self.0.kind().status) {
            Ok(StatusCode::UNPROCESSABLE_ENTITY) => StatusCode::BAD_REQUEST,
            Ok(status) => status,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(ErrorBody { error: self.0.public_detail() })).into_response()
    }
}

/// What `GET /v2` answers.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServerMetadata {
    /// `oxiserve`.
    pub name: String,
    /// The oxiserve version.
    pub version: String,
    /// Supported protocol extensions.
    pub extensions: Vec<String>,
}

/// Server metadata: name, version and protocol extensions.
#[utoipa::path(get, path = "/v2", tag = "kserve-v2",
    responses((status = 200, description = "Server metadata", body = ServerMetadata)))]
async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: kserve::SERVER_NAME.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        extensions: kserve::EXTENSIONS.iter().map(|e| e.to_string()).collect(),
    })
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/v2/health/live", tag = "kserve-v2",
    responses((status = 200, description = "Alive")))]
async fn server_live() -> StatusCode {
    StatusCode::OK
}

/// Readiness: every model is loaded and warmed up, and the server is not shutting down.
#[utoipa::path(get, path = "/v2/health/ready", tag = "kserve-v2", responses(
    (status = 200, description = "Ready"),
    (status = 400, description = "Not ready", body = ErrorBody)))]
async fn server_ready(State(status): State<StatusState>) -> Response {
    readiness(status.is_ready(), || "the server is not ready".into())
}

/// 200 when `ready`, else 400 with `why`: the protocol's answer to a readiness question.
fn readiness(ready: bool, why: impl FnOnce() -> String) -> Response {
    if ready {
        StatusCode::OK.into_response()
    } else {
        (StatusCode::BAD_REQUEST, Json(ErrorBody { error: why() })).into_response()
    }
}

/// A model named in the path, with a version or not.
#[derive(Debug, Deserialize)]
struct ModelPath {
    model: String,
    version: Option<String>,
}

/// Metadata of the version serving `model`.
#[utoipa::path(get, path = "/v2/models/{model}", tag = "kserve-v2",
    params(("model" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn model_metadata(
    State(status): State<StatusState>,
    PathParams(path, _): V2Path,
) -> Result<Json<ModelMetadata>, V2Error> {
    metadata(status.as_ref(), &path)
}

/// Metadata of one loaded version of `model`.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}", tag = "kserve-v2",
    params(
        ("model" = String, Path, description = "Model name"),
        ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "Unknown model or version", body = ErrorBody)))]
async fn version_metadata(
    State(status): State<StatusState>,
    PathParams(path, _): V2Path,
) -> Result<Json<ModelMetadata>, V2Error> {
    metadata(status.as_ref(), &path)
}

fn metadata(status: &dyn ServiceStatus, path: &ModelPath) -> Result<Json<ModelMetadata>, V2Error> {
    let models = status.registry();
    let model = kserve::resolve(models, &path.model, path.version.as_deref())?;
    Ok(Json(kserve::metadata(models, &model)))
}

/// Whether `model` has a version serving.
#[utoipa::path(get, path = "/v2/models/{model}/ready", tag = "kserve-v2",
    params(("model" = String, Path, description = "Model name")),
    responses(
        (status = 200, description = "Ready"),
        (status = 400, description = "Not ready", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn model_ready(State(status): State<StatusState>, PathParams(path, _): V2Path) -> Response {
    model_readiness(status.as_ref(), &path)
}

/// Whether this version of `model` is loaded.
#[utoipa::path(get, path = "/v2/models/{model}/versions/{version}/ready", tag = "kserve-v2",
    params(
        ("model" = String, Path, description = "Model name"),
        ("version" = String, Path, description = "Model version")),
    responses(
        (status = 200, description = "Ready"),
        (status = 400, description = "Not ready", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody)))]
async fn version_ready(State(status): State<StatusState>, PathParams(path, _): V2Path) -> Response {
    model_readiness(status.as_ref(), &path)
}

fn model_readiness(status: &dyn ServiceStatus, path: &ModelPath) -> Response {
    match kserve::resolve(status.registry(), &path.model, path.version.as_deref()) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(error @ (Error::UnknownModel(_) | Error::InvalidInput { .. })) => {
            V2Error(error).into_response()
        }
        Err(error) => readiness(false, || error.to_string()),
    }
}

/// Request, input and output parameters this server reads; others are ignored.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
struct Parameters {
    /// On an input: its data follows the JSON header, this many bytes.
    binary_data_size: Option<usize>,
    /// On a requested output: answer it as binary data.
    binary_data: Option<bool>,
    /// On the request: answer every output as binary data unless it says otherwise.
    binary_data_output: Option<bool>,
}

/// An inference request (the JSON part).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct InferRequest {
    /// Echoed in the answer.
    id: Option<String>,
    #[serde(default)]
    parameters: Parameters,
    inputs: Vec<RequestInput>,
    /// The outputs wanted, in order; all of them when left out.
    #[serde(default)]
    outputs: Vec<RequestOutput>,
}

/// One input tensor: its data in `data` (JSON) or after the header (binary).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RequestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Parameters,
    /// Row-major values, flat or nested.
    #[schema(value_type = Option<Vec<f64>>)]
    data: Option<serde_json::Value>,
}

/// One output wanted.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RequestOutput {
    name: String,
    #[serde(default)]
    parameters: Parameters,
}

/// An inference answer (the JSON part).
#[derive(Serialize, utoipa::ToSchema)]
struct InferResponse<'a> {
    model_name: String,
    model_version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<ResponseOutput<'a>>,
}

/// One output tensor: its data in `data`, or after the header when it is binary.
#[derive(Serialize, utoipa::ToSchema)]
struct ResponseOutput<'a> {
    name: String,
    datatype: DataType,
    shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    parameters: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<f64>>)]
    data: Option<tensor_data::JsonData<'a>>,
}

/// Runs the version serving `model` on named tensors.
#[utoipa::path(post, path = "/v2/models/{model}/infer", tag = "kserve-v2",
    params(("model" = String, Path, description = "Model name")),
    request_body(content = InferRequest, description = "JSON tensors; with the binary tensor \
        data extension, the JSON is `Inference-Header-Content-Length` bytes long and binary \
        tensors follow it"),
    responses(
        (status = 200, description = "The outputs", body = InferResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown model", body = ErrorBody),
        (status = 503, description = "Not ready or overloaded", body = ErrorBody)))]
async fn model_infer(
    State(status): State<StatusState>,
    PathParams(path, _): V2Path,
    headers: HeaderMap,
    body: Result<BufferedBody, Error>,
) -> Result<Response, V2Error> {
    infer(status.as_ref(), &path, &headers, body).await
}

/// Runs one loaded version of `model` on named tensors.
#[utoipa::path(post, path = "/v2/models/{model}/versions/{version}/infer", tag = "kserve-v2",
    params(
        ("model" = String, Path, description = "Model name"),
        ("version" = String, Path, description = "Model version")),
    request_body(content = InferRequest, description = "As for `/v2/models/{model}/infer`"),
    responses(
        (status = 200, description = "The outputs", body = InferResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 404, description = "Unknown model or version", body = ErrorBody),
        (status = 503, description = "Not ready or overloaded", body = ErrorBody)))]
async fn version_infer(
    State(status): State<StatusState>,
    PathParams(path, _): V2Path,
    headers: HeaderMap,
    body: Result<BufferedBody, Error>,
) -> Result<Response, V2Error> {
    infer(status.as_ref(), &path, &headers, body).await
}

async fn infer(
    status: &dyn ServiceStatus,
    path: &ModelPath,
    headers: &HeaderMap,
    body: Result<BufferedBody, Error>,
) -> Result<Response, V2Error> {
    let BufferedBody(body) = body?;
    let (header, mut binary) = split_body(headers, &body)?;
    let request: InferRequest = serde_json::from_slice(header)
        .map_err(|e| Error::MalformedBody(format!("not a v2 inference request: {e}")))?;
    let model = kserve::resolve(status.registry(), &path.model, path.version.as_deref())?;

    let mut inputs = Tensors::new();
    for input in &request.inputs {
        let (spec, shape) = kserve::input_spec(&model, &input.name, &input.datatype, &input.shape)?;
        let bad =
            |detail: String| Error::invalid_input(format!("input `{}`: {detail}", input.name));
        let tensor = match (input.parameters.binary_data_size, &input.data) {
            (Some(size), _) => {
                let Some((data, rest)) = binary.split_at_checked(size) else {
                    return Err(bad(format!(
                        "binary_data_size is {size}, {} bytes are left",
                        binary.len()
                    ))
                    .into());
                };
                binary = rest;
                tensor_data::from_raw(spec.datatype, &shape, data)
            }
            (None, Some(data)) => tensor_data::from_json(spec.datatype, &shape, data),
            (None, None) => Err("no `data` and no binary_data_size".into()),
        }
        .map_err(bad)?;
        if inputs.insert(input.name.clone(), tensor).is_some() {
            return Err(bad("given twice".into()).into());
        }
    }
    if !binary.is_empty() {
        return Err(Error::invalid_input(format!(
            "{} bytes after the inputs' binary data belong to no input",
            binary.len()
        ))
        .into());
    }

    let requested: Vec<String> = request.outputs.iter().map(|o| o.name.clone()).collect();
    let outputs = kserve::infer(&model, inputs, &requested).await?;
    let binary_default = request.parameters.binary_data_output.unwrap_or(false);
    let wants_binary = |name: &str| {
        let asked = request.outputs.iter().find(|o| o.name == name);
        asked.and_then(|o| o.parameters.binary_data).unwrap_or(binary_default)
    };
    let mut tail = Vec::new();
    let answer = InferResponse {
        model_name: model.name().to_string(),
        model_version: model.version().to_string(),
        id: request.id.clone(),
        outputs: outputs
            .iter()
            .map(|(name, tensor)| {
                let (parameters, data) = if wants_binary(name) {
                    let start = tail.len();
                    tensor_data::write_raw(tensor, &mut tail);
                    let size = tail.len() - start;
                    (Some(serde_json::json!({ "binary_data_size": size })), None)
                } else {
                    (None, Some(tensor_data::JsonData(tensor)))
                };
                ResponseOutput {
                    name: name.clone(),
                    datatype: tensor.datatype(),
                    shape: tensor.shape().to_vec(),
                    parameters,
                    data,
                }
            })
            .collect(),
    };
    let json = serde_json::to_vec(&answer).map_err(|e| Error::internal(e.to_string()))?;
    Ok(respond(json, tail))
}

/// The JSON part and the binary part of a request body.
fn split_body<'b>(headers: &HeaderMap, body: &'b [u8]) -> Result<(&'b [u8], &'b [u8]), Error> {
    let Some(value) = headers.get(HEADER_LENGTH) else { return Ok((body, &[])) };
    let length = value.to_str().ok().and_then(|text| text.trim().parse::<usize>().ok());
    let bad = |detail: String| Error::BadHeader { header: HEADER_LENGTH, detail };
    let length = length.ok_or_else(|| bad("expected a whole number of bytes".into()))?;
    body.split_at_checked(length)
        .ok_or_else(|| bad(format!("{length} is longer than the body ({} bytes)", body.len())))
}

/// The answer: JSON alone, or JSON followed by binary outputs.
fn respond(json: Vec<u8>, binary: Vec<u8>) -> Response {
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], json).into_response();
    }
    let length = HeaderValue::from(json.len());
    let mut body = json;
    body.extend_from_slice(&binary);
    let headers = [(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"))];
    let mut response = (headers, body).into_response();
    response.headers_mut().insert(HEADER_LENGTH, length);
    response
}
