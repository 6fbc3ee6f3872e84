//! The HTTP surface: routes, limits, error mapping, OpenAPI and the docs UI.
//!
//! [`router`] builds the whole application as an axum `Router`, so tests can drive it with
//! `oneshot` and no socket; [`serve`] runs it on a listener, under the connection limits and
//! deadlines of `crate::connections`, until the shutdown stops it. The service itself serves
//! a `Dispatch`: the router, with `POST /v1/predict` taken before it.

mod admin;
mod body;
mod buffered;
pub(crate) mod json;
mod kserve;
mod metrics;
mod path;
mod predict;
pub(crate) mod problem;
pub(crate) mod status;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::routing::get;
use axum::{BoxError, Router};
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Either};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::layer::util::{Identity, Stack};
use tower::{Layer, Service, ServiceBuilder};
use tracing::Instrument;
use utoipa::openapi::InfoBuilder;
use utoipa_axum::router::OpenApiRouter;
#[cfg(feature = "swagger-ui")]
use utoipa_swagger_ui::SwaggerUi;

pub use self::admin::AdminAccess;
pub use self::json::JsonBody;
pub use self::kserve::{
    ErrorBody as KServeError, HEADER_LENGTH as KSERVE_HEADER_LENGTH, ServerMetadata,
};
pub use self::metrics::PATH as METRICS_PATH;
pub use self::predict::{MODEL_VERSION_HEADER, PATH as PREDICT_PATH};
pub use self::problem::{CONTENT_TYPE as PROBLEM_CONTENT_TYPE, Problem};
pub use self::status::{Health, ModelList};
use crate::config::{Config, LimitsConfig};
use crate::connections::{Connections, InFlight, Requests, Shutdown};
use crate::context::{Context, Transport};
use crate::engine::Engine;
use crate::engine::StatusState;
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
use crate::telemetry::{self, RequestMetrics};

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// Where the API docs UI is served (with the `swagger-ui` feature); its assets are inside the
/// binary.
pub const DOCS_PATH: &str = "/docs";

/// The complete application for `engine`, with the limits of `config.limits`, `GET /metrics`
/// unless `config.telemetry` turns metrics off or gives them a port of their own, and the admin
/// API when `admin` is given.
pub fn router<P: Pipeline>(
    engine: Arc<Engine<P>>,
    config: &Config,
    admin: Option<AdminAccess>,
) -> Router {
    let admin = admin.map(|access| admin::routes(Arc::clone(&engine), access)).unwrap_or_default();
    let status: StatusState = engine.clone();
    let (routes, mut api) = OpenApiRouter::new()
        .merge(status::routes(Arc::clone(&status)))
        .merge(kserve::routes(Arc::clone(&status)))
        .merge(predict::routes(Arc::clone(&engine), config.limits.body_bytes))
        .split_for_parts();
    api.info = InfoBuilder::new()
        .title(engine.pipeline().name())
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some("Served by oxiserve. Errors are RFC 9457 problem+json."))
        .build();
    let telemetry = &config.telemetry;
    let metrics = if telemetry.metrics && telemetry.metrics_port.is_none() {
        metrics_router()
    } else {
        Router::new()
    };
    routes
        .merge(docs(api))
        .merge(admin)
        .merge(metrics)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // One stack applied once, not a `.layer` each: each wraps every route in a box of its
        // own, through which a request clones and boxes again at every level (four layers
        // applied one by one cost some 30 allocations a request).
        .layer(layers(status, &config.limits))
}

/// The layers every route of the router runs under, outermost first: [`Observe`] (labelled
/// with the path the router matched) and the body limit.
fn layers(
    status: StatusState,
    limits: &LimitsConfig,
) -> ServiceBuilder<Stack<DefaultBodyLimit, Stack<Observe, Identity>>> {
    ServiceBuilder::new()
        .layer(Observe::new(status, None, limits))
        .layer(DefaultBodyLimit::max(limits.body_bytes))
}

/// What [`serve`] hands a connection's requests to: `POST /v1/predict` straight to its
/// service, under [`Observe`] as every route, and every other request to the router.
///
/// The router serves `POST /v1/predict` too, with the same service, and answers it the same
/// way (through [`router`] alone, as [`serve`] and `oneshot` on the router do). Taking the
/// route before the router saves its matching and the boxes it puts around each route and its
/// future: 3,700 of a small model's 61,200 instructions a request (`docs/benchmarks.md`). The
/// predict service reads its body within `limits.body_bytes` itself, so it needs no
/// `DefaultBodyLimit` here (which makes a map of extensions for every request).
#[derive(Clone)]
pub(crate) struct Dispatch {
    router: Router,
    predict: Option<Predict>,
}

/// `POST /v1/predict` under the routes' layers, whatever the pipeline.
type Predict =
    Arc<dyn Fn(Request) -> BoxFuture<'static, Result<Response, Infallible>> + Send + Sync>;

impl Dispatch {
    /// The [`router`] for `engine`, with `POST /v1/predict` taken before it.
    pub(crate) fn new<P: Pipeline>(
        engine: Arc<Engine<P>>,
        config: &Config,
        admin: Option<AdminAccess>,
    ) -> Self {
        let router = router(Arc::clone(&engine), config, admin);
        let status: StatusState = engine.clone();
        let limits = &config.limits;
        let predict = Observe::new(status, Some(PREDICT_PATH), limits)
            .headers_in_context()
            .layer(predict::service(engine, limits.body_bytes));
        // The predict service, a `service_fn`, is always ready: no `poll_ready` before the call.
        let predict: Predict =
            Arc::new(move |request| predict.answer(predict.inner.clone(), request));
        Self { router, predict: Some(predict) }
    }
}

/// `router` alone, every request through it.
impl From<Router> for Dispatch {
    fn from(router: Router) -> Self {
        Self { router, predict: None }
    }
}

impl<B> Service<axum::http::Request<B>> for Dispatch
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<BoxFuture<'static, Result<Response, Infallible>>, RouteFuture<Infallible>>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request>::poll_ready(&mut self.router, context)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let request = request.map(Body::new);
        match &self.predict {
            Some(predict)
                if request.method() == Method::POST && request.uri().path() == PREDICT_PATH =>
            {
                Either::Left(predict(request))
            }
            _ => Either::Right(self.router.call(request)),
        }
    }
}

/// One connection's [`Dispatch`], which tells the connection's header deadline
/// ([`Requests`]) when a request's head arrived and when its answer is done.
#[derive(Clone)]
struct Counted {
    dispatch: Dispatch,
    requests: Arc<Requests>,
}

impl<B> Service<axum::http::Request<B>> for Counted
where
    Dispatch: Service<axum::http::Request<B>, Future: Unpin>,
{
    type Response = <Dispatch as Service<axum::http::Request<B>>>::Response;
    type Error = <Dispatch as Service<axum::http::Request<B>>>::Error;
    type Future = Answering<<Dispatch as Service<axum::http::Request<B>>>::Future>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.dispatch.poll_ready(context)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        Answering { _in_flight: self.requests.begin(), future: self.dispatch.call(request) }
    }
}

/// A request's answer on its way: the request is in flight until it is done (or dropped).
struct Answering<F> {
    future: F,
    _in_flight: InFlight,
}

impl<F: Future + Unpin> Future for Answering<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, context: &mut TaskContext<'_>) -> Poll<F::Output> {
        Pin::new(&mut self.future).poll(context)
    }
}

/// `GET /openapi.json`, and the docs UI on [`DOCS_PATH`] with the `swagger-ui` feature.
#[cfg(feature = "swagger-ui")]
fn docs(api: utoipa::openapi::OpenApi) -> Router {
    SwaggerUi::new(DOCS_PATH).url(OPENAPI_PATH, api).into()
}

/// `GET /openapi.json` alone: a build without the `swagger-ui` feature has no docs UI.
#[cfg(not(feature = "swagger-ui"))]
fn docs(api: utoipa::openapi::OpenApi) -> Router {
    let body = axum::body::Bytes::from(api.to_json().unwrap_or_default());
    let document = move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    };
    Router::new().route(OPENAPI_PATH, get(document))
}

/// `GET /metrics` alone: what the metrics port (`telemetry.metrics_port`) serves.
pub fn metrics_router() -> Router {
    Router::new().route(METRICS_PATH, get(metrics::render))
}

/// Serves `router` on `listener` (HTTP/1 and HTTP/2) under the limit and deadlines of
/// `connections`, until `shutdown` stops it. Then no connection is accepted any more, open
/// ones finish the requests they were sent and close (idle ones at once), and whatever is
/// still open when `shutdown` aborts is dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Connections,
    shutdown: Shutdown,
) {
    serve_dispatch(listener, Dispatch::from(router), connections, shutdown).await;
}

/// [`serve`] with a [`Dispatch`]: how the service and the test harness serve a pipeline.
pub(crate) async fn serve_dispatch(
    listener: TcpListener,
    dispatch: Dispatch,
    connections: Connections,
    shutdown: Shutdown,
) {
    let graceful = GracefulShutdown::new();
    let mut open = JoinSet::new();
    let stopping = shutdown.stopping();
    tokio::pin!(stopping);
    loop {
        let stream = tokio::select! {
            stream = connections.accept(&listener) => stream,
            () = &mut stopping => break,
        };
        // HTTP/1's header deadline is the connection's, not hyper's: hyper arms a timer for
        // every request's head.
        let (stream, requests) = stream.with_header_deadline(connections.header_read_timeout());
        let service = TowerToHyperService::new(Counted { dispatch: dispatch.clone(), requests });
        let watcher = graceful.watcher();
        open.spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(error, "a connection ended with an error");
            }
        });
        // Reap the tasks of closed connections as we go.
        while open.try_join_next().is_some() {}
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = shutdown.aborted() => open.abort_all(),
    }
}

/// The layer every route runs under: [`observe`], with a 500 problem for a handler that
/// panics. Written out rather than made of axum's `from_fn` and tower-http's `CatchPanicLayer`:
/// through those a request boxes the rest of the stack into a route of its own, clones it and
/// boxes its future again at each level.
#[derive(Clone)]
struct Observe {
    status: StatusState,
    /// The route's label when the layer wraps one route, not the router's every route.
    route: Option<&'static str>,
    limit_ms: u64,
    headers: Headers,
}

/// Where the routes under an [`Observe`] layer read the request's headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Headers {
    /// In the request, as axum's extractors do: the request's [`Context`] gets a copy.
    Request,
    /// In the request's [`Context`] alone: they move there, and the route gets the request
    /// without them. `POST /v1/predict` reads them so (its `Content-Type` and
    /// `x-model-version`), and saves the copy: about 1.5% of a small model's request.
    Context,
}

impl Observe {
    /// Requests observed with the `route` label (else the path the router matched) and the
    /// deadline of `limits`, their headers left in the request.
    fn new(status: StatusState, route: Option<&'static str>, limits: &LimitsConfig) -> Self {
        let limit_ms = limits.request_timeout_ms;
        Self { status, route, limit_ms, headers: Headers::Request }
    }

    /// The same layer for a route that reads the request's headers from its [`Context`]
    /// alone: they move there (see [`Headers::Context`]).
    fn headers_in_context(self) -> Self {
        Self { headers: Headers::Context, ..self }
    }
}

impl<S> Layer<S> for Observe {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        let (status, route, limit_ms) = (Arc::clone(&self.status), self.route, self.limit_ms);
        Observed { inner, status, route, limit_ms, headers: self.headers }
    }
}

/// A route under [`Observe`].
#[derive(Clone)]
struct Observed<S> {
    inner: S,
    status: StatusState,
    route: Option<&'static str>,
    limit_ms: u64,
    headers: Headers,
}

impl<S> Service<Request> for Observed<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, context: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service polled ready answers; a clone of it takes its place for the next call.
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        self.answer(ready, request)
    }
}

impl<S> Observed<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Send + 'static,
    S::Future: Send,
{
    /// `request` observed and answered by `ready`, a copy of the inner service that is ready
    /// for it. (A service that is always ready, as a handler is, can be answered through
    /// `&self` this way, with one clone of the inner service instead of the two of
    /// `clone().call()`.)
    fn answer(
        &self,
        ready: S,
        request: Request,
    ) -> BoxFuture<'static, Result<Response, Infallible>> {
        let (status, route, limit_ms) = (Arc::clone(&self.status), self.route, self.limit_ms);
        let run = move |request| caught(ready, request);
        // `observe`'s own future, boxed once: an `async` block around it would hold its
        // arguments beside it, and be copied into the box at that size.
        Box::pin(observe(status, route, limit_ms, self.headers, request, run).map(Ok))
    }
}

/// `service`'s answer to `request`, or a 500 problem when it panics (in `call` or after).
///
/// Not an `async fn`, nor are [`observe`] and [`deadline`]: an `async fn` holds its arguments
/// for its whole life, so that the request was held by each of the three and by the block
/// below, four times in every request's future. Each now does what it can at once and returns
/// a future that holds only what it still needs; the request is held by the block that calls
/// the service, and by `observe`'s until [`deadline`] takes it.
fn caught<S>(mut service: S, request: Request) -> impl Future<Output = Response>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    // The service is called when the block is first polled: inside the request's context.
    AssertUnwindSafe(async move { service.call(request).await }).catch_unwind().map(|answer| {
        match answer {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => panicked(),
        }
    })
}

/// Runs every request inside its `request` span and its [`deadline`] (`limit_ms` at most),
/// with its id (set in the request's `x-request-id`, where the [`Context`] reads it, and
/// echoed in the answer's), logs it at debug level (`answered`, with status and
/// milliseconds), and counts it with its latency by route (`route`, else the path the router
/// matched, `unmatched` for none), method and status class, in `oxiserve_http_requests_total`
/// and `oxiserve_http_request_duration_seconds`.
///
/// While the service drains for shutdown, HTTP/1 answers carry `Connection: close`: clients
/// then open new connections (to other replicas) rather than reuse this one, which closes at
/// the end of the grace period and could otherwise meet a request already on its way.
/// HTTP/2 clients learn it from the GOAWAY that ends the grace period. (The draining header
/// and the deadline are here rather than in middleware of their own: each middleware level
/// clones and boxes on every request.)
fn observe<F: Future<Output = Response>>(
    status: StatusState,
    route: Option<&'static str>,
    limit_ms: u64,
    headers: Headers,
    mut request: Request,
    run: impl FnOnce(Request) -> F,
) -> impl Future<Output = Response> {
    static METRICS: LazyLock<RequestMetrics> = LazyLock::new(|| {
        RequestMetrics::new(
            "oxiserve_http_requests_total",
            "oxiserve_http_request_duration_seconds",
            &["route", "method", "status"],
        )
    });
    const CLASSES: [&str; 6] = ["0xx", "1xx", "2xx", "3xx", "4xx", "5xx"];
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let http1 = request.version() < Version::HTTP_2;
    let id = telemetry::request_id(request.headers());
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        %method,
        route = route_label(route, matched.as_ref())
    );
    telemetry::continue_trace(&span, request.headers());
    request.headers_mut().insert(&telemetry::REQUEST_ID, id.clone());
    let start = std::time::Instant::now();
    // The deadline, and the request's context, are made in the span. The answer is finished
    // by maps rather than `async` blocks: a block holds what it captures for its whole life,
    // so that one awaiting the deadline's future held the request (and the runner) beside it,
    // and one awaiting the span's held that future twice, every request's future 2,400 bytes.
    let answer =
        span.in_scope(|| deadline(start, limit_ms, headers, request, run)).map(move |response| {
            let elapsed = start.elapsed().as_secs_f64();
            tracing::debug!(status = response.status().as_u16(), ms = elapsed * 1e3, "answered");
            (response, elapsed)
        });
    answer.instrument(span).map(move |(mut response, elapsed)| {
        let class = CLASSES.get(usize::from(response.status().as_u16() / 100)).unwrap_or(&"0xx");
        let labels = [route_label(route, matched.as_ref()), method_label(&method), class];
        METRICS.record(&labels, elapsed);
        let headers = response.headers_mut();
        headers.insert(&telemetry::REQUEST_ID, id);
        if http1 && status.is_draining() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    })
}

/// The `route` label: `route` when the layer wraps one route, else the path the router
/// matched, `unmatched` for none.
fn route_label<'a>(route: Option<&'static str>, matched: Option<&'a MatchedPath>) -> &'a str {
    route.or(matched.map(MatchedPath::as_str)).unwrap_or("unmatched")
}

/// The `method` label: the standard methods by name, any other as `other`, since a client may
/// send any token as a method and labels must come from a bounded set.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    const NAMES: [&str; 9] =
        ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE"];
    STANDARD.iter().position(|m| m == method).map_or("other", |i| NAMES[i])
}

/// The request header with which a client lowers its deadline, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-request-timeout-ms";

/// [`TIMEOUT_HEADER`] as a header name: looking a header up by `&str` parses the name first.
static TIMEOUT: HeaderName = HeaderName::from_static(TIMEOUT_HEADER);

/// Runs every request in its [`Context`] (headers, copied or moved there as `headers` says, id,
/// deadline), and fails requests that run past their deadline with 504: the configured one, or
/// the client's `x-request-timeout-ms` when that is shorter, counted from `start`, when
/// [`observe`] took the request (which reads the clock once for both). Work still queued for a
/// request that timed out is skipped by the inference workers. [`observe`] calls it for every
/// request, with `run` answering it.
fn deadline<F: Future<Output = Response>>(
    start: std::time::Instant,
    limit_ms: u64,
    headers: Headers,
    mut request: Request,
    run: impl FnOnce(Request) -> F,
) -> Either<Ready<Response>, impl Future<Output = Response>> {
    let timeout_ms = match client_deadline(request.headers()) {
        Ok(asked) => asked.map_or(limit_ms, |ms| ms.min(limit_ms)),
        Err(error) => return Either::Left(ready(error.into_response())),
    };
    let deadline = start + Duration::from_millis(timeout_ms);
    let headers = match headers {
        Headers::Request => request.headers().clone(),
        Headers::Context => std::mem::take(request.headers_mut()),
    };
    let context =
        Context::of_request(Transport::Http, headers, deadline, &tracing::Span::current());
    let answer = context.scope(run(request));
    Either::Right(Deadline { answer, timer: None, deadline, timeout_ms })
}

pin_project_lite::pin_project! {
    /// A request's answer that fails with 504 once `deadline` passes. A named future rather
    /// than an `async` block: a block holds what it captures for its whole life, and pinning
    /// the answer inside it would have held the answer twice.
    struct Deadline<F> {
        #[pin]
        answer: F,
        // Set once the answer waits: a small model's is most often ready at its first poll,
        // and needs no timer (an entry in the runtime's timer wheel, and a lock of the wheel to
        // take it out again).
        #[pin]
        timer: Option<Sleep>,
        deadline: std::time::Instant,
        timeout_ms: u64,
    }
}

impl<F: Future<Output = Response>> Future for Deadline<F> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, task: &mut TaskContext<'_>) -> Poll<Response> {
        let mut this = self.project();
        if let Poll::Ready(response) = this.answer.poll(task) {
            return Poll::Ready(response);
        }
        if this.timer.is_none() {
            this.timer.set(Some(tokio::time::sleep_until((*this.deadline).into())));
        }
        match this.timer.as_pin_mut().map(|timer| timer.poll(task)) {
            Some(Poll::Ready(())) => Poll::Ready(Error::Timeout(*this.timeout_ms).into_response()),
            _ => Poll::Pending,
        }
    }
}

/// The deadline a client asks for in [`TIMEOUT_HEADER`], if any.
fn client_deadline(headers: &axum::http::HeaderMap) -> Result<Option<u64>> {
    let Some(value) = headers.get(&TIMEOUT) else { return Ok(None) };
    let parsed = value.to_str().ok().and_then(|text| text.trim().parse().ok());
    parsed.map(Some).ok_or_else(|| Error::BadHeader {
        header: TIMEOUT_HEADER,
        detail: "expected a whole number of milliseconds".into(),
    })
}

async fn not_found(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        format!("no route for {}", uri.path()),
    )
}

/// The 405 of a path that exists, for a method it does not support.
async fn method_not_allowed(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} does not support this method", uri.path()),
    )
}

/// The answer to a request whose handler panicked.
fn panicked() -> Response {
    tracing::error!("a request handler panicked");
    Error::pipeline("a request handler panicked").into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::engine::ServiceStatus;
    use crate::model::{ModelStatus, Models};

    /// A service with no models, serving and not draining.
    struct Serving(Models);

    impl ServiceStatus for Serving {
        fn is_ready(&self) -> bool {
            true
        }

        fn is_draining(&self) -> bool {
            false
        }

        fn models(&self) -> Vec<ModelStatus> {
            Vec::new()
        }

        fn registry(&self) -> &Models {
            &self.0
        }
    }

    /// `routes` under [`Observe`] with a deadline of `limit_ms`, as [`router`] serves them.
    fn observed(routes: Router, limit_ms: u64) -> Router {
        let status: StatusState = Arc::new(Serving(Models::new(Vec::new())));
        routes.layer(Observe { status, route: None, limit_ms, headers: Headers::Request })
    }

    /// A route that answers after 200 ms, behind a deadline of `limit_ms`.
    fn slow_app(limit_ms: u64) -> Router {
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            "late"
        };
        observed(Router::new().route("/slow", get(slow)), limit_ms)
    }

    async fn call(app: Router, timeout_header: Option<&str>) -> Response {
        let mut request = Request::get("/slow");
        if let Some(value) = timeout_header {
            request = request.header(TIMEOUT_HEADER, value);
        }
        app.oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_a_500_problem_and_the_next_request_is_served() {
        async fn fails() -> &'static str {
            panic!("asked to panic")
        }
        let routes =
            Router::new().route("/fails", get(fails)).route("/works", get(|| async { "ok" }));
        let app = observed(routes, 5_000);
        let get = |path| Request::get(path).body(Body::empty()).unwrap();
        let failed = app.clone().oneshot(get("/fails")).await.unwrap();
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(failed.headers()[header::CONTENT_TYPE], problem::CONTENT_TYPE);
        assert!(failed.headers().contains_key(&telemetry::REQUEST_ID), "observed all the same");
        let body = axum::body::to_bytes(failed.into_body(), usize::MAX).await.unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("asked to panic"),
            "the panic stays in the log"
        );
        let served = app.oneshot(get("/works")).await.unwrap();
        assert_eq!(served.status(), StatusCode::OK);
    }

    /// `routes` served on a free port with HTTP/1's header deadline at 200 ms and the other
    /// deadlines far away, until the test's runtime ends.
    async fn served(routes: Router) -> std::net::SocketAddr {
        let limits = LimitsConfig {
            header_read_timeout_ms: 200,
            handshake_timeout_ms: 60_000,
            idle_timeout_ms: 60_000,
            ..LimitsConfig::default()
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stages, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            serve(listener, observed(routes, 60_000), Connections::new(&limits), shutdown).await;
            drop(stages);
        });
        address
    }

    /// Reads until the server closes `stream`; how long that took.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> Duration {
        use tokio::io::AsyncReadExt;
        let start = std::time::Instant::now();
        let mut buffer = [0; 1024];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            while stream.read(&mut buffer).await.is_ok_and(|n| n > 0) {}
        });
        read.await.expect("the server closes the connection");
        start.elapsed()
    }

    #[tokio::test]
    async fn headers_that_never_end_close_the_connection_after_the_header_deadline() {
        use tokio::io::AsyncWriteExt;
        let address = served(Router::new().route("/", get(|| async { "ok" }))).await;
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET / HTTP/1.1\r\nHost: test\r\nAccept: ").await.unwrap();
        let waited = until_closed(&mut client).await;
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn a_slow_answer_is_not_cut_by_the_header_deadline_and_idle_keep_alive_closes_after() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            "late"
        };
        let address = served(Router::new().route("/slow", get(slow))).await;
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"late") {
            let mut buffer = [0; 1024];
            let n = client.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed before the answer: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buffer[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        // Kept alive, and idle: closed between one and two periods after the answer.
        let waited = until_closed(&mut client).await;
        assert!(waited >= Duration::from_millis(190), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn an_idle_http2_connection_outlives_the_header_deadline() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = served(Router::new().route("/", get(|| async { "ok" }))).await;
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        // The preface and an empty SETTINGS frame, then, past the deadline, a PING.
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0").await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        client.write_all(b"\0\0\x08\x06\0\0\0\0\0pingping").await.unwrap();
        let acknowledged = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let mut head = [0u8; 9];
                client.read_exact(&mut head).await.expect("the connection stays open");
                let length =
                    usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
                let mut payload = vec![0; length];
                client.read_exact(&mut payload).await.unwrap();
                // PING (type 6) with ACK (flag 1).
                if head[3] == 6 && head[4] & 1 == 1 {
                    return payload;
                }
            }
        });
        assert_eq!(acknowledged.await.unwrap(), b"pingping");
    }

    #[test]
    fn methods_outside_the_standard_ones_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"X-RANDOM-42").unwrap()), "other");
    }

    #[tokio::test]
    async fn a_request_past_its_deadline_is_504_problem_json() {
        let response = call(slow_app(20), None).await;
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.headers()[axum::http::header::CONTENT_TYPE], problem::CONTENT_TYPE);
    }

    #[tokio::test]
    async fn clients_may_shorten_but_not_extend_the_deadline() {
        assert_eq!(call(slow_app(5_000), None).await.status(), StatusCode::OK);
        assert_eq!(call(slow_app(5_000), Some("20")).await.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(call(slow_app(20), Some("5000")).await.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(call(slow_app(5_000), Some("soon")).await.status(), StatusCode::BAD_REQUEST);
    }
}
