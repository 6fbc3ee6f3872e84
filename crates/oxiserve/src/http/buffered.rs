//! [`BufferedBody`]: a request body read whole, within the route's `DefaultBodyLimit`
//! (`limits.body_bytes`) or a limit the caller gives, its every failure a problem+json
//! [`Error`]: past the limit a 413, a body that breaks off a 400.
//!
//! axum's `Bytes` extractor reads the same, through a list of chunks that it allocates for
//! every body. Nearly every body comes in one chunk, which is kept here as it came; only a body
//! in several chunks is copied into one.

use axum::body::{Bytes, HttpBody};
use axum::extract::{FromRequest, Request};
use axum::{BoxError, RequestExt};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::Error;

/// A request body, read whole.
#[derive(Debug, Clone, Default)]
pub(crate) struct BufferedBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for BufferedBody {
    type Rejection = Error;

    async fn from_request(request: Request, _: &S) -> Result<Self, Error> {
        Self::read(request.into_limited_body()).await
    }
}

impl BufferedBody {
    /// `request`'s body read whole within `limit` bytes, for a service that knows its limit:
    /// `DefaultBodyLimit` hands a route its limit in the request's extensions, a map made for
    /// every request, and axum boxes the limited body once more.
    pub(crate) async fn within(request: Request, limit: usize) -> Result<Self, Error> {
        Self::read(Limited::new(request.into_body(), limit)).await
    }

    /// `body` read whole.
    async fn read<B>(mut body: B) -> Result<Self, Error>
    where
        B: HttpBody<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut first: Option<Bytes> = None;
        let mut joined = Vec::new();
        while let Some(frame) = body.frame().await {
            // Trailers are not part of the body.
            let Ok(data) = frame.map_err(unreadable)?.into_data() else { continue };
            match &first {
                None => first = Some(data),
                Some(head) => {
                    if joined.is_empty() {
                        joined.extend_from_slice(head);
                    }
                    joined.extend_from_slice(&data);
                }
            }
        }
        Ok(Self(if joined.is_empty() { first.unwrap_or_default() } else { joined.into() }))
    }
}

/// A body that could not be read: past its limit (413), or broken off (400). The texts are
/// axum's.
fn unreadable(error: impl Into<BoxError>) -> Error {
    let error = error.into();
    let mut causes =
        std::iter::successors(Some(&*error as &(dyn std::error::Error + 'static)), |cause| {
            cause.source()
        });
    if causes.any(|cause| cause.is::<LengthLimitError>()) {
        Error::PayloadTooLarge
    } else {
        Error::MalformedBody(format!("Failed to buffer the request body: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use futures_util::stream;
    use tower::{Layer, Service, service_fn};

    use super::*;

    /// `body()` read under a limit of `limit` bytes both ways: as a route's layer sets it, and
    /// as a service that knows its limit reads it. Both must read the same.
    async fn buffered(body: impl Fn() -> Body, limit: usize) -> Result<Bytes, Error> {
        let read = |request: Request| async move {
            Ok::<_, std::convert::Infallible>(BufferedBody::from_request(request, &()).await)
        };
        let mut service = DefaultBodyLimit::max(limit).layer(service_fn(read));
        let layered = service.call(Request::new(body())).await.unwrap();
        let within = BufferedBody::within(Request::new(body()), limit).await;
        assert_eq!(
            format!("{:?}", layered.as_ref().map(|read| &read.0)),
            format!("{:?}", within.as_ref().map(|read| &read.0)),
            "the layer's limit and the service's own read differently"
        );
        layered.map(|BufferedBody(bytes)| bytes)
    }

    /// A body in chunks, the way a client that streams its upload sends it.
    fn chunked(chunks: &'static [&'static str]) -> impl Fn() -> Body {
        move || {
            let chunks: Vec<Result<Bytes, std::io::Error>> =
                chunks.iter().map(|chunk| Ok(Bytes::from_static(chunk.as_bytes()))).collect();
            Body::from_stream(stream::iter(chunks))
        }
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_is_kept_as_it_came() {
        let sent = Bytes::from_static(b"{\"a\": 1}");
        let read = buffered(|| Body::from(sent.clone()), 64).await.unwrap();
        assert_eq!(read, sent);
        assert_eq!(read.as_ptr(), sent.as_ptr(), "the chunk itself, not a copy");
        let within = BufferedBody::within(Request::new(Body::from(sent.clone())), 64).await;
        assert_eq!(within.unwrap().0.as_ptr(), sent.as_ptr(), "read within a limit too");
    }

    #[tokio::test]
    async fn a_body_in_chunks_is_joined_in_order() {
        let read = buffered(chunked(&["{\"a\"", "", ": 1", "}"]), 64).await.unwrap();
        assert_eq!(read, Bytes::from_static(b"{\"a\": 1}"));
        assert_eq!(buffered(Body::empty, 64).await.unwrap(), Bytes::new());
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large_however_it_comes() {
        let whole = buffered(|| Body::from("0123456789"), 9).await;
        assert!(matches!(whole, Err(Error::PayloadTooLarge)), "{whole:?}");
        let chunks = buffered(chunked(&["01234", "56789"]), 9).await;
        assert!(matches!(chunks, Err(Error::PayloadTooLarge)), "{chunks:?}");
        assert_eq!(buffered(|| Body::from("0123456789"), 10).await.unwrap().len(), 10);
    }

    #[tokio::test]
    async fn a_body_that_breaks_off_is_malformed() {
        let broken = || {
            let broken: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(Bytes::from_static(b"{")), Err(std::io::Error::other("connection reset"))];
            Body::from_stream(stream::iter(broken))
        };
        let read = buffered(broken, 64).await;
        match read {
            Err(Error::MalformedBody(detail)) => assert!(detail.contains("reset"), "{detail}"),
            other => panic!("{other:?}"),
        }
    }
}
