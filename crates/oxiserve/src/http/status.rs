//! Health probes and the model list: the routes every service has, whatever its pipeline.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::engine::StatusState;
use crate::error::Error;
use crate::http::problem::Problem;
use crate::model::ModelStatus;

/// The body of the health probes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// The body of `GET /v1/models`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Every model of the service.
    pub models: Vec<ModelStatus>,
}

/// The status routes with their OpenAPI.
pub(crate) fn routes(status: StatusState) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(models))
        .with_state(status)
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "The process is alive", body = Health)))]
async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: every model is loaded and warmed up.
#[utoipa::path(get, path = "/health/ready", tag = "health", responses(
    (status = 200, description = "Ready for predictions", body = Health),
    (status = 503, description = "Models are still loading", body = Problem,
        content_type = "application/problem+json")))]
async fn ready(State(status): State<StatusState>) -> Result<Json<Health>, Error> {
    if status.is_ready() { Ok(Json(Health { status: "ok" })) } else { Err(Error::NotReady) }
}

/// The models of this service, their versions and states.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, description = "Every model with its state", body = ModelList)))]
async fn models(State(status): State<StatusState>) -> (StatusCode, Json<ModelList>) {
    (StatusCode::OK, Json(ModelList { models: status.models() }))
}
