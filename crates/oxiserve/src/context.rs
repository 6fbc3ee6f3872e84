//! The request context: what a pipeline, and the model runners behind it, know of a request
//! beyond its body: its headers (REST headers or gRPC metadata alike), its id, its deadline and
//! the transport it came by.
//!
//! The transports build a [`Context`] for every request and run the request inside it; the
//! engine hands it to [`Pipeline`](crate::Pipeline)'s stages, and each model run carries it to
//! its worker thread (a remote model passes the caller's `traceparent` on). It is read-only:
//! what a pipeline decides from it goes into the `Inference` it returns.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};

use crate::telemetry::{self, REQUEST_ID_HEADER};

/// How a request reached the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP (REST): `/v1/predict`, KServe v2 over HTTP, or a service's own route.
    Http,
    /// gRPC: `oxiserve.v1.Pipeline` or KServe v2 over gRPC.
    Grpc,
    /// From inside the service: the warm-up request that checks every new model version.
    Internal,
}

/// What a pipeline knows of the request it serves, besides the body.
///
/// Header names are case-insensitive, as in HTTP; over gRPC the headers are the call's
/// metadata (text values; `-bin` keys hold base64). The request id is the caller's
/// `x-request-id` when it sent a usable one, else one the service made up; it is echoed in the
/// answer and in every log line of the request.
#[derive(Debug, Clone)]
pub struct Context {
    transport: Transport,
    headers: HeaderMap,
    deadline: Option<Instant>,
    /// Whether the request's stages get spans (see `telemetry::traces_stages`).
    pub(crate) traced: bool,
}

/// The context of requests made inside the service (warm-up), and of code that runs outside
/// any request.
static INTERNAL: LazyLock<Arc<Context>> = LazyLock::new(|| {
    let mut headers = HeaderMap::new();
    headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("internal"));
    Arc::new(Context::new(Transport::Internal, headers))
});

tokio::task_local! {
    /// The context of the request this task serves, set by the transports.
    static CURRENT: Arc<Context>;
}

impl Context {
    /// A context for a request that came by `transport` with `headers`, and no deadline. The
    /// transports build it; tests of a pipeline's stages build their own.
    pub fn new(transport: Transport, headers: HeaderMap) -> Self {
        Self { transport, headers, deadline: None, traced: false }
    }

    /// The same context with the request's deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The transport the request came by.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The value of header (or gRPC metadata key) `name` when it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Every header of the request.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The request id, as logged and echoed in `x-request-id`.
    pub fn request_id(&self) -> &str {
        self.header(REQUEST_ID_HEADER).unwrap_or_default()
    }

    /// When the request fails with 504 (`DEADLINE_EXCEEDED`): the service's limit, or the
    /// client's shorter one. `None` for requests without one (warm-up).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time left before the deadline (zero once it has passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// The context of a request with `headers` (its id already among them) that came by
    /// `transport`, must be answered by `deadline`, and is served in `span`.
    pub(crate) fn of_request(
        transport: Transport,
        headers: HeaderMap,
        deadline: Instant,
        span: &tracing::Span,
    ) -> Arc<Self> {
        let traced = telemetry::traces_stages(span);
        Arc::new(Self { transport, headers, deadline: Some(deadline), traced })
    }

    /// The caller's W3C `traceparent`, passed on to remote servers when spans are not exported.
    pub(crate) fn traceparent(&self) -> Option<&str> {
        self.header("traceparent")
    }

    /// Runs `request` inside this context. (Not an `async fn`: its future would hold `request`
    /// twice, before and while it runs, and every request's future would grow by that much.)
    pub(crate) fn scope<F: Future>(self: Arc<Self>, request: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, request)
    }

    /// The context of the request this task serves; the internal one outside any request.
    pub(crate) fn current() -> Arc<Context> {
        CURRENT.try_with(Arc::clone).unwrap_or_else(|_| Arc::clone(&INTERNAL))
    }

    /// The context of requests made inside the service.
    pub(crate) fn internal() -> Arc<Context> {
        Arc::clone(&INTERNAL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_sees_its_own_context_and_other_code_the_internal_one() {
        let mut headers = HeaderMap::new();
        headers.insert("X-Tenant", HeaderValue::from_static("acme"));
        headers.insert(REQUEST_ID_HEADER, HeaderValue::from_static("r-1"));
        let deadline = Instant::now() + Duration::from_secs(5);
        let context = Arc::new(Context::new(Transport::Grpc, headers).with_deadline(deadline));
        let seen = context.scope(async { Context::current() }).await;
        assert_eq!(seen.header("x-tenant"), Some("acme"));
        assert_eq!(seen.request_id(), "r-1");
        assert_eq!(seen.transport(), Transport::Grpc);
        assert!(seen.remaining().is_some_and(|left| left <= Duration::from_secs(5)));
        let outside = Context::current();
        assert_eq!(outside.transport(), Transport::Internal);
        assert_eq!(outside.request_id(), "internal");
        assert_eq!(outside.remaining(), None);
    }
}
