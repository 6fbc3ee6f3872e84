//! The admin API, for operators: roll back, pin, unpin and sync a model.
//!
//! The routes exist only when `admin.token` is set, and every request must carry
//! `Authorization: Bearer <token>`. A missing or wrong token gets the same 401, with no hint
//! of which part was wrong; the comparison takes the same time whatever the token.
//!
//! - `POST /admin/models/{model}/rollback`: serve the previous good version, retire this one.
//! - `POST /admin/models/{model}/pin`: keep a version serving; body `{"version": N}` or empty
//!   for the one serving now.
//! - `POST /admin/models/{model}/unpin`: follow the policy again.
//! - `POST /admin/models/{model}/sync`: look for new versions now.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use crate::config::Secret;
use crate::engine::Engine;
use crate::error::Error;
use crate::model::{Loader, ModelStatus};
use crate::pipeline::Pipeline;

/// What the admin routes need: the loader (to bring versions in) and the token.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// Loads versions for rollback and sync.
    pub loader: Loader,
    /// The bearer token every admin request must carry.
    pub token: Secret,
}

struct AdminState<P> {
    engine: Arc<Engine<P>>,
    loader: Loader,
}

impl<P> Clone for AdminState<P> {
    fn clone(&self) -> Self {
        Self { engine: Arc::clone(&self.engine), loader: self.loader.clone() }
    }
}

/// The body of `pin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    version: Option<u64>,
}

/// The admin routes behind the bearer-token check.
pub(crate) fn routes<P: Pipeline>(engine: Arc<Engine<P>>, access: AdminAccess) -> Router {
    Router::new()
        .route("/admin/models/{model}/rollback", post(rollback::<P>))
        .route("/admin/models/{model}/pin", post(pin::<P>))
        .route("/admin/models/{model}/unpin", post(unpin::<P>))
        .route("/admin/models/{model}/sync", post(sync::<P>))
        .route_layer(middleware::from_fn_with_state(access.token, require_token))
        .with_state(AdminState { engine, loader: access.loader })
}

async fn rollback<P: Pipeline>(
    State(state): State<AdminState<P>>,
    Path(model): Path<String>,
) -> Result<Json<ModelStatus>, Error> {
    state.engine.rollback(&state.loader, &model).await.map(Json)
}

async fn pin<P: Pipeline>(
    State(state): State<AdminState<P>>,
    Path(model): Path<String>,
    body: Bytes,
) -> Result<Json<ModelStatus>, Error> {
    let version = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::json::parse::<Pin>(&body)?.version
    };
    state.engine.pin(&model, version).map(Json)
}

async fn unpin<P: Pipeline>(
    State(state): State<AdminState<P>>,
    Path(model): Path<String>,
) -> Result<Json<ModelStatus>, Error> {
    state.engine.unpin(&model).map(Json)
}

async fn sync<P: Pipeline>(
    State(state): State<AdminState<P>>,
    Path(model): Path<String>,
) -> Result<Json<ModelStatus>, Error> {
    state.engine.sync_now(&state.loader, &model).await.map(Json)
}

/// Rejects requests without `Authorization: Bearer <token>`.
async fn require_token(
    State(token): State<Secret>,
    request: Request,
    next: Next,
) -> Result<Response, Error> {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
        Ok(next.run(request).await)
    } else {
        Err(Error::Unauthorized)
    }
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let longest = a.len().max(b.len());
    let differences = (0..longest).fold(a.len() ^ b.len(), |acc, i| {
        acc | usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0))
    });
    differences == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
