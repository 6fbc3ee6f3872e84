//! [`EndpointBody`]: the body of a request to one of the pipeline's own endpoints, which reads
//! JSON and may read other media types too ([`Endpoint::media_types`](crate::Endpoint)): an
//! image, a CSV file. Such a body comes as it is (`Content-Type: image/png`), or as the file
//! of a `multipart/form-data` upload (a browser form, `curl -F file=@page.png`), whose part
//! declares its own type. Every rejection is a problem+json [`Error`]: a type the route does
//! not read is a 415 naming the ones it does, a body past `limits.body_bytes` a 413, a
//! broken form a 400.

use axum::body::Bytes;
use axum::extract::multipart::{Field, MultipartError};
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};

use crate::error::Error;
use crate::http::buffered::BufferedBody;
use crate::http::json::{self, JsonBytes};

/// A request body an endpoint can read.
#[derive(Debug)]
pub(crate) enum EndpointBody {
    /// JSON, not parsed yet.
    Json(Bytes),
    /// A body of one of the route's own media types, with the type it was declared as.
    Media {
        /// The bytes as sent.
        bytes: Bytes,
        /// Its media type, lowercase and without parameters (`image/png`).
        media_type: String,
    },
}

impl EndpointBody {
    /// Reads `request`'s body for a route that reads JSON and `media_types`.
    pub(crate) async fn read(request: Request, media_types: &[&str]) -> Result<Self, Error> {
        let declared = request.headers().get(header::CONTENT_TYPE).map(json::essence);
        let declared = declared.unwrap_or_default();
        if json::is_json(&declared) || media_types.is_empty() {
            let JsonBytes(bytes) = JsonBytes::from_request(request, &()).await?;
            return Ok(Self::Json(bytes));
        }
        if media_types.contains(&declared.as_str()) {
            let BufferedBody(bytes) = BufferedBody::from_request(request, &()).await?;
            return Ok(Self::Media { bytes, media_type: declared });
        }
        if declared == "multipart/form-data" {
            return uploaded_file(request, media_types).await;
        }
        let what =
            if declared.is_empty() { "no Content-Type".into() } else { format!("`{declared}`") };
        Err(unsupported(&what, media_types))
    }
}

/// The first file of a `multipart/form-data` body (a part with a file name, or else the
/// first part), which must be declared as one of `media_types`.
async fn uploaded_file(request: Request, media_types: &[&str]) -> Result<EndpointBody, Error> {
    let mut form = Multipart::from_request(request, &())
        .await
        .map_err(|rejection| Error::MalformedBody(rejection.body_text()))?;
    let mut first: Option<(String, Bytes)> = None;
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        let has_file_name = field.file_name().is_some();
        let part = read_part(field).await?;
        if has_file_name {
            first = Some(part);
            break;
        }
        first.get_or_insert(part);
    }
    let Some((media_type, bytes)) = first else {
        return Err(Error::MalformedBody("the multipart form holds no file".into()));
    };
    if !media_types.contains(&media_type.as_str()) {
        let what = format!("the uploaded file's `{media_type}`");
        return Err(unsupported(&what, media_types));
    }
    Ok(EndpointBody::Media { bytes, media_type })
}

/// A form part's media type (lowercase, no parameters; empty when it declares none) and bytes.
async fn read_part(field: Field<'_>) -> Result<(String, Bytes), Error> {
    let media_type = field.content_type().unwrap_or_default();
    let media_type = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let bytes = field.bytes().await.map_err(form_error)?;
    Ok((media_type, bytes))
}

/// A multipart form that cannot be read: too large (413) or malformed (400).
fn form_error(error: MultipartError) -> Error {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Error::PayloadTooLarge
    } else {
        Error::MalformedBody(format!("the multipart form cannot be read: {}", error.body_text()))
    }
}

/// A 415 for `what`, naming the media types the route reads.
fn unsupported(what: &str, media_types: &[&str]) -> Error {
    let accepted: Vec<String> = ["application/json"]
        .iter()
        .chain(media_types)
        .chain(&["multipart/form-data"])
        .map(|media_type| format!("`{media_type}`"))
        .collect();
    Error::UnsupportedMediaType(format!("{what}; this route reads {}", accepted.join(", ")))
}
