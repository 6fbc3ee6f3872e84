//! RFC 9457 problem details: how every [`Error`] becomes an HTTP response, in one place.
//!
//! Client errors (4xx) say what was wrong and where; server errors (5xx) say only what kind of
//! failure happened, while the full error goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::error::Error;

/// The media type of problem details.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem details object (RFC 9457), the body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem, e.g. `urn:oxiserve:problem:invalid-input`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    pub detail: String,
    /// JSON path of the offending request field, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    /// A problem of kind `urn:oxiserve:problem:<slug>`.
    pub fn new(status: StatusCode, slug: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:oxiserve:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<&Error> for Problem {
    fn from(error: &Error) -> Self {
        use StatusCode as S;
        let client = |status, slug, title| Problem::new(status, slug, title, error.to_string());
        match error {
            Error::MalformedBody(_) => {
                client(S::BAD_REQUEST, "malformed-body", "Malformed JSON body")
            }
            Error::MalformedPath(_) => {
                client(S::BAD_REQUEST, "malformed-path", "Malformed request path")
            }
            Error::PayloadTooLarge => {
                client(S::PAYLOAD_TOO_LARGE, "payload-too-large", "Request body too large")
            }
            Error::UnsupportedMediaType(_) => client(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            ),
            Error::InvalidInput { field, detail } => Problem {
                field: field.clone(),
                ..Problem::new(
                    S::UNPROCESSABLE_ENTITY,
                    "invalid-input",
                    "Invalid input",
                    detail.clone(),
                )
            },
            Error::BadHeader { .. } => client(S::BAD_REQUEST, "bad-header", "Malformed header"),
            Error::Unauthorized => client(S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Error::UnknownModel(_) => client(S::NOT_FOUND, "unknown-model", "Unknown model"),
            Error::VersionNotLoaded { .. } => {
                client(S::NOT_FOUND, "version-not-loaded", "Model version not loaded")
            }
            Error::NotReady => client(S::SERVICE_UNAVAILABLE, "not-ready", "Service not ready"),
            Error::Overloaded => client(S::SERVICE_UNAVAILABLE, "overloaded", "Service overloaded"),
            Error::Timeout(_) => client(S::GATEWAY_TIMEOUT, "timeout", "Request timed out"),
            Error::RemoteUnavailable { .. } => client(
                S::SERVICE_UNAVAILABLE,
                "remote-unavailable",
                "Remote model server unavailable",
            ),
            Error::ModelNotLoaded(_) => {
                client(S::SERVICE_UNAVAILABLE, "model-not-loaded", "Model not loaded")
            }
            _ => Problem::new(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal server error",
                "the server failed to handle the request; the error is in its log",
            ),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        respond(&self)
    }
}

/// The problem response for `error`, logging server errors: for errors shared behind an `Arc`
/// (one computation answering several requests). 503 and 504 are the service protecting
/// itself (overload, not ready, deadlines), which can happen thousands of times a second: they
/// are logged at debug level only, so an overload never floods the log.
pub(crate) fn respond(error: &Error) -> Response {
    let problem = Problem::from(error);
    log(error, problem.status);
    problem.into_response()
}

/// Logs `error`, answered with `status`, if it is the server's: refusals (503, 504) at debug
/// level, failures at error level.
pub(crate) fn log(error: &Error, status: u16) {
    match status {
        503 | 504 => tracing::debug!(%error, status, "request refused"),
        500.. => tracing::error!(%error, status, "request failed"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_and_not_ready_say_when_to_retry() {
        for error in [Error::Overloaded, Error::NotReady] {
            let response = error.into_response();
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        }
    }

    #[test]
    fn server_errors_hide_their_detail() {
        for error in [
            Error::pipeline("secret internals"),
            Error::internal("secret internals"),
            Error::UndeclaredModel("secret-model".into()),
        ] {
            let problem = Problem::from(&error);
            assert_eq!(problem.status, 500, "{error}");
            assert!(!problem.detail.contains("secret"), "{problem:?}");
        }
        // The log tells a framework fault from the service author's.
        assert!(Error::internal("x").to_string().starts_with("internal error"));
        assert!(Error::pipeline("x").to_string().starts_with("pipeline error"));
    }
}
