//! [`JsonBody`]: the JSON request extractor whose every rejection is a problem+json [`Error`].
//!
//! axum's own `Json` answers with plain text; this one distinguishes a wrong media type (415),
//! an oversized body (413), broken JSON (400) and JSON of the wrong shape (422, naming the
//! field by its JSON path, see [`crate::json`]). [`JsonBytes`] checks the first two and leaves
//! the parsing to the caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use crate::error::Error;
use crate::http::buffered::BufferedBody;
use crate::json;

/// A request body parsed as JSON into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let JsonBytes(bytes) = JsonBytes::from_request(request, state).await?;
        json::parse(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned> JsonBody<T> {
    /// `request`'s body, sent with `headers`, parsed as JSON, read within `limit` bytes rather
    /// than within the route's `DefaultBodyLimit` (see [`BufferedBody::within`]). The headers
    /// are apart: a route may read them from the request's context (see `http::Headers`).
    pub(crate) async fn within(
        headers: &HeaderMap,
        request: Request,
        limit: usize,
    ) -> Result<Self, Error> {
        check_content_type(headers.get(header::CONTENT_TYPE))?;
        let BufferedBody(bytes) = BufferedBody::within(request, limit).await?;
        json::parse(&bytes).map(JsonBody)
    }
}

/// A request body declared as JSON and within the size limit, not parsed yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct JsonBytes(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBytes {
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        check_content_type(request.headers().get(header::CONTENT_TYPE))?;
        let BufferedBody(bytes) = BufferedBody::from_request(request, state).await?;
        Ok(JsonBytes(bytes))
    }
}

/// Accepts `application/json` and `application/<anything>+json`, with any parameters.
fn check_content_type(value: Option<&header::HeaderValue>) -> Result<(), Error> {
    let Some(value) = value else {
        return Err(Error::UnsupportedMediaType(
            "no Content-Type; send `Content-Type: application/json`".into(),
        ));
    };
    // `application/json` as sent by nearly every client, without lower-casing a copy.
    if value.as_bytes() == b"application/json" || is_json(&essence(value)) {
        Ok(())
    } else {
        let sent = value.to_str().unwrap_or_default();
        Err(Error::UnsupportedMediaType(format!("`{sent}`; send `Content-Type: application/json`")))
    }
}

/// A `Content-Type` value's media type without its parameters, lowercase.
pub(crate) fn essence(value: &header::HeaderValue) -> String {
    let text = value.to_str().unwrap_or_default();
    text.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Whether the media type `essence` (lowercase, no parameters) is JSON.
pub(crate) fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let ok = |v: &'static str| check_content_type(Some(&header::HeaderValue::from_static(v)));
        assert!(ok("application/json").is_ok());
        assert!(ok("Application/JSON; charset=utf-8").is_ok());
        assert!(ok("application/merge-patch+json").is_ok());
        assert!(ok("text/plain").is_err());
        assert!(check_content_type(None).is_err());
    }
}
