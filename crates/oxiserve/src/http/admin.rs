//! The admin API, for operators: roll back, pin, unpin and sync a model.
//!
//! The routes exist only when `admin.token` is set, and every request must carry
//! `Authorization: Bearer <token>` (the scheme in any case, as RFC 9110 has it). A missing or
//! wrong token gets the same 401, with no hint of which part was wrong, whatever the method:
//! the token is checked before the route's method, so that a `GET` does not learn which paths
//! exist. The comparison takes the same time whatever the token. A token shorter than
//! [`MIN_TOKEN_LENGTH`] is refused at start-up: an empty one would open the API to anyone.
//!
//! - `POST /admin/models/{model}/rollback`: serve the previous good version, retire this one.
//! - `POST /admin/models/{model}/pin`: keep a version serving; body `{"version": N}` or empty
//!   for the one serving now.
//! - `POST /admin/models/{model}/unpin`: follow the policy again.
//! - `POST /admin/models/{model}/sync`: look for new versions now.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::method_not_allowed as wrong_method;
use super::path::PathParams;
use crate::config::Secret;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::{Loader, ModelStatus};
use crate::pipeline::Pipeline;

/// The fewest characters an admin token may have: 16 random characters are out of reach of
/// guessing over the network, and an empty token must never mean "no authentication".
pub(crate) const MIN_TOKEN_LENGTH: usize = 16;

/// What the admin routes need: the loader (to bring versions in) and the token.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    loader: Loader,
    token: Secret,
}

impl AdminAccess {
    /// Access with `token` through `loader`; fails when the token is shorter than
    /// `MIN_TOKEN_LENGTH` (16) characters.
    pub fn new(loader: Loader, token: Secret) -> Result<Self> {
        let length = token.expose().chars().count();
        if length < MIN_TOKEN_LENGTH {
            let detail = format!(
                "admin.token has {length} characters, fewer than the {MIN_TOKEN_LENGTH} required \
                 (e.g. `openssl rand -hex 16`); leave it unset to turn the admin API off"
            );
            return Err(figment::Error::from(detail).into());
        }
        Ok(Self { loader, token })
    }
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
        .route("/admin/models/{model}/rollback", post(rollback::<P>).fallback(wrong_method))
        .route("/admin/models/{model}/pin", post(pin::<P>).fallback(wrong_method))
        .route("/admin/models/{model}/unpin", post(unpin::<P>).fallback(wrong_method))
        .route("/admin/models/{model}/sync", post(sync::<P>).fallback(wrong_method))
        // `layer`, not `route_layer`, and a method fallback of each route's own (the router's
        // would sit outside the layer): the token is checked before the method is, so that a
        // wrong method without a token is a 401 like any other request.
        .layer(middleware::from_fn_with_state(access.token, require_token))
        .with_state(AdminState { engine, loader: access.loader })
}

async fn rollback<P: Pipeline>(
    State(state): State<AdminState<P>>,
    PathParams(model, _): PathParams<String>,
) -> Result<Json<ModelStatus>, Error> {
    state.engine.rollback(&state.loader, &model).await.map(Json)
}

async fn pin<P: Pipeline>(
    State(state): State<AdminState<P>>,
    PathParams(model, _): PathParams<String>,
    body: Bytes,
) -> Result<Json<ModelStatus>, Error> {
    let version = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        crate::json::parse::<Pin>(&body)?.version
    };
    state.engine.pin(&model, version).map(Json)
}

async fn unpin<P: Pipeline>(
    State(state): State<AdminState<P>>,
    PathParams(model, _): PathParams<String>,
) -> Result<Json<ModelStatus>, Error> {
    state.engine.unpin(&model).map(Json)
}

async fn sync<P: Pipeline>(
    State(state): State<AdminState<P>>,
    PathParams(model, _): PathParams<String>,
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
        .and_then(bearer_token)
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), token.expose().as_bytes()) {
        Ok(next.run(request).await)
    } else {
        Err(Error::Unauthorized)
    }
}

/// The token of an `Authorization` value of the `Bearer` scheme, whose name is
/// case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start())
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
    use super::{bearer_token, constant_time_eq};

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for value in ["Bearer abc", "bearer abc", "BEARER  abc", " Bearer abc "] {
            assert_eq!(bearer_token(value), Some("abc"), "{value}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("abc"), None);
    }
}
