//! A test harness for service authors: run any [`Pipeline`] in-process and call it like a
//! client, through the real router, without a socket.
//!
//! ```no_run
//! # use oxiserve::testing::TestApp;
//! # async fn demo<P: oxiserve::Pipeline>(pipeline: P, input: P::Input) -> oxiserve::Result<()>
//! # where P::Output: serde::de::DeserializeOwned + std::fmt::Debug {
//! let app = TestApp::start(pipeline, "models").await?;
//! let output = app.predict(&input).await.expect("a typed 200");
//! let response = app.post_json("/v1/predict", "{}").await;
//! assert_eq!(response.status, 422);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::config::Config;
use crate::connections::{Connections, Shutdown, Stage};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::http::{self, PREDICT_PATH, PROBLEM_CONTENT_TYPE, Problem};
use crate::model::Loader;
use crate::pipeline::Pipeline;
use crate::server::App;

/// A pipeline served in-process, with its models loaded.
pub struct TestApp<P: Pipeline> {
    engine: Arc<Engine<P>>,
    /// The HTTP application, as the service serves it.
    http: http::Dispatch,
    config: Config,
    poller: Option<tokio::task::JoinHandle<()>>,
}

impl<P: Pipeline> Drop for TestApp<P> {
    fn drop(&mut self) {
        if let Some(poller) = &self.poller {
            poller.abort();
        }
    }
}

impl<P: Pipeline> TestApp<P> {
    /// Serves `pipeline` with the models under `models` and otherwise its default settings
    /// (the framework's, with the pipeline's own [`defaults`](Pipeline::defaults); two
    /// sessions per model, no polling), and waits until it is ready.
    pub async fn start(pipeline: P, models: impl Into<PathBuf>) -> Result<Self> {
        let mut config = Config::default();
        pipeline.defaults(&mut config);
        config.models.uri = models.into().to_string_lossy().into_owned();
        config.models.sessions = 2;
        config.models.poll_interval = std::time::Duration::ZERO;
        Self::with_config(pipeline, config).await
    }

    /// Serves `pipeline` with `config` and waits until it is ready. When
    /// `models.poll_interval` is not zero, new versions are picked up as in production until
    /// the app is dropped.
    pub async fn with_config(pipeline: P, config: Config) -> Result<Self> {
        let (mut app, loader) = Self::assemble(pipeline, config).await?;
        app.engine.load(&loader).await?;
        let interval = app.config.models.poll_interval;
        if !interval.is_zero() {
            let engine = Arc::clone(&app.engine);
            app.poller = Some(tokio::spawn(async move { engine.poll(&loader, interval).await }));
        }
        Ok(app)
    }

    /// Serves `pipeline` with `config` without loading any model: every model stays loading,
    /// as in the first moments of a real start.
    pub async fn unloaded(pipeline: P, config: Config) -> Result<Self> {
        Self::assemble(pipeline, config).await.map(|(app, _)| app)
    }

    /// The app as `server::serve` assembles it, and its loader.
    async fn assemble(pipeline: P, config: Config) -> Result<(Self, Loader)> {
        let App { engine, loader, http } = App::assemble(pipeline, &config).await?;
        Ok((Self { engine, http, config, poller: None }, loader))
    }

    /// The engine, for assertions on models and readiness.
    pub fn engine(&self) -> &Engine<P> {
        &self.engine
    }

    /// `POST /v1/predict` with `input`: the typed output on 200, else the problem returned.
    pub async fn predict(&self, input: &P::Input) -> Result<P::Output, Problem>
    where
        P::Output: DeserializeOwned,
    {
        let body = serde_json::to_vec(input).expect("a pipeline input serialises to JSON");
        let response = self.post_json(PREDICT_PATH, body).await;
        if response.status == StatusCode::OK {
            Ok(response.json())
        } else {
            Err(response.problem())
        }
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> TestResponse {
        self.request(Request::get(path).body(Body::empty()).expect("a GET request is valid")).await
    }

    /// `POST path` with `body` declared as `application/json`.
    pub async fn post_json(&self, path: &str, body: impl Into<Body>) -> TestResponse {
        self.post(path, "application/json", body).await
    }

    /// `POST path` with `body` declared as `content_type`.
    pub async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> TestResponse {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(body.into())
            .expect("a POST request with a valid content type is valid");
        self.request(request).await
    }

    /// Sends any request through the HTTP application, as the service would serve it.
    pub async fn request(&self, request: Request<Body>) -> TestResponse {
        let response =
            self.http.clone().oneshot(request).await.expect("the HTTP application is infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("an in-memory response body can be read").to_bytes();
        TestResponse { status: parts.status, headers: parts.headers, body }
    }

    /// Serves the app over HTTP on a real socket on 127.0.0.1 and a free port, until the
    /// returned [`TestServer`] is dropped.
    pub async fn serve(&self) -> Result<TestServer> {
        let dispatch = self.http.clone();
        TestServer::start(&self.config, move |listener, connections, shutdown| {
            http::serve_dispatch(listener, dispatch, connections, shutdown)
        })
        .await
    }

    /// Serves the gRPC services (KServe v2, health, reflection) on a real socket on 127.0.0.1
    /// and a free port, until the returned [`TestServer`] is dropped.
    #[cfg(feature = "grpc")]
    pub async fn serve_grpc(&self) -> Result<TestServer> {
        let (engine, limits) = (Arc::clone(&self.engine), self.config.limits.clone());
        TestServer::start(&self.config, move |listener, connections, shutdown| async move {
            if let Err(error) =
                crate::grpc::serve(listener, engine, &limits, connections, shutdown).await
            {
                tracing::error!(%error, "the test gRPC server failed");
            }
        })
        .await
    }
}

/// An app served on a socket; dropping it shuts the server down and drops its connections.
#[derive(Debug)]
pub struct TestServer {
    address: SocketAddr,
    stage: watch::Sender<Stage>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.stage.send(Stage::Abort);
    }
}

impl TestServer {
    /// Binds a free port on 127.0.0.1 and runs `server` on it in a task, under the limits of
    /// `config`, with a shutdown that aborts when the `TestServer` is dropped.
    async fn start<F>(
        config: &Config,
        server: impl FnOnce(TcpListener, Connections, Shutdown) -> F,
    ) -> Result<Self>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::io("binding a test listener", e))?;
        let address =
            listener.local_addr().map_err(|e| Error::io("reading the test address", e))?;
        let (stage, shutdown) = Shutdown::new();
        tokio::spawn(server(listener, Connections::new(&config.limits), shutdown));
        Ok(Self { address, stage })
    }

    /// `127.0.0.1:PORT`, as gRPC clients take it.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }
}

/// A response read whole.
#[derive(Debug, Clone)]
pub struct TestResponse {
    /// The status code.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body parsed as JSON; panics with the body text if it is not `T`.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not the expected JSON ({e}): {}", self.text()))
    }

    /// The body as problem details; panics unless the content type and fields are RFC 9457.
    pub fn problem(&self) -> Problem {
        assert_eq!(
            self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
            Some(PROBLEM_CONTENT_TYPE),
            "status {} with a body that is not problem+json: {}",
            self.status,
            self.text()
        );
        let problem: Problem = self.json();
        assert_eq!(problem.status, self.status.as_u16(), "the body's status matches the response");
        problem
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}
