//! RFC 9457 problem details: how every [`Error`] becomes an HTTP response, in one place.
//!
//! Client errors (4xx) say what was wrong and where; server errors (5xx) say only what kind of
//! failure happened, while the full error goes to the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::endpoint::{Failure, Route};
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
        let kind = error.kind();
        let status = StatusCode::from_u16(kind.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let field = match error {
            Error::InvalidInput { field, .. } => field.clone(),
            _ => None,
        };
        Problem { field, ..Problem::new(status, kind.slug, kind.title, error.public_detail()) }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        respond(&self)
    }
}

/// The problem response for `error`, logging server errors (see [`Error::log_answered`]):
/// for errors shared behind an `Arc` (one computation answering several requests).
pub(crate) fn respond(error: &Error) -> Response {
    error.log_answered();
    Problem::from(error).into_response()
}

/// [`respond`] for an error on `route`, in the route's own shape when it has one
/// ([`Endpoint::error`](crate::Endpoint::error)).
pub(crate) fn respond_on<I, O>(route: &dyn Route<I, O>, error: &Error) -> Response {
    let problem = Problem::from(error);
    let failure = Failure {
        status: problem.status,
        kind: problem.kind.rsplit(':').next().unwrap_or_default(),
        detail: &problem.detail,
        field: problem.field.as_deref(),
    };
    let Some(reply) = route.error(&failure) else { return respond(error) };
    error.log_answered();
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, Json(reply.body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
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
