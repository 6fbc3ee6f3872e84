//! gRPC (tonic), on its own port (`grpc.port`):
//!
//! - `inference.GRPCInferenceService`, KServe v2 for the raw models (`inference`);
//! - `oxiserve.v1.Pipeline`, the typed pipeline with its JSON contract (`pipeline`);
//! - the standard `grpc.health.v1` health service, which reports `SERVING` for the server
//!   (`""`) and each service while the service is ready, `NOT_SERVING` while models load and
//!   once shutdown starts;
//! - server reflection, so `grpcurl` works without the `.proto` files.
//!
//! Every call runs in a `request` span with its request id, and is counted (`observe`).
//!
//! The messages and service traits are generated from `proto/` by `build.rs` into
//! [`crate::protocol::proto`], re-exported here as [`proto`]. Errors become
//! statuses in one place, the `From<&Error> for Status` below.

mod inference;
mod observe;
mod pipeline;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::LimitsConfig;
use crate::connections::{Connections, Shutdown};
use crate::engine::{Engine, StatusState};
use crate::error::{Error, Result};
use crate::pipeline::Pipeline;
pub use crate::protocol::proto;
use crate::protocol::proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::protocol::proto::pipeline::pipeline_server::PipelineServer;

/// The services whose health follows readiness, by full name.
pub const SERVICES: [&str; 2] = ["inference.GRPCInferenceService", "oxiserve.v1.Pipeline"];

/// How often the health service looks at readiness.
const HEALTH_POLL: Duration = Duration::from_millis(100);

/// Serves the gRPC services for `engine` on `listener` with the deadline and message size
/// limit of `limits` (a client's shorter `grpc-timeout` wins), under the limit and deadlines
/// of `connections`, until `shutdown` stops it: then connections get a GOAWAY, finish their
/// calls and close; whatever is still open when `shutdown` aborts is dropped.
pub async fn serve<P: Pipeline>(
    listener: TcpListener,
    engine: Arc<Engine<P>>,
    limits: &LimitsConfig,
    connections: Connections,
    shutdown: Shutdown,
) -> Result<()> {
    let status: StatusState = engine.clone();
    let (reporter, health) = tonic_health::server::health_reporter();
    let watcher = tokio::spawn(report_health(reporter, Arc::clone(&status)));
    // Reflection in both versions: grpcurl asks v1 first, older clients only know v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let failed = |e| Error::internal(format!("cannot build gRPC reflection: {e}"));
    let reflection_v1 = reflection().build_v1().map_err(failed)?;
    let reflection_v1alpha = reflection().build_v1alpha().map_err(failed)?;
    let inference = GrpcInferenceServiceServer::new(inference::Inference::new(status))
        .max_decoding_message_size(limits.body_bytes);
    let pipeline = PipelineServer::new(pipeline::Predictor::new(engine))
        .max_decoding_message_size(limits.body_bytes);
    let incoming = futures_util::stream::unfold(listener, move |listener| {
        let connections = connections.clone();
        async move {
            let stream = connections.accept(&listener).await;
            Some((Ok::<_, std::io::Error>(stream), listener))
        }
    });
    let stopping = {
        let shutdown = shutdown.clone();
        async move { shutdown.stopping().await }
    };
    let served = Server::builder()
        .timeout(Duration::from_millis(limits.request_timeout_ms))
        .layer(observe::ObserveLayer { limit: Duration::from_millis(limits.request_timeout_ms) })
        // Inside `observe`, so that a panic is counted and logged as the `INTERNAL` it becomes.
        .layer(CatchPanicLayer::custom(panicked))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(inference)
        .add_service(pipeline)
        .serve_with_incoming_shutdown(incoming, stopping);
    let served = tokio::select! {
        served = served => served,
        () = shutdown.aborted() => Ok(()),
    };
    watcher.abort();
    served.map_err(|e| Error::internal(format!("the gRPC server failed: {e}")))
}

/// A handler that panicked answers `INTERNAL`, as over HTTP it answers 500; the connection and
/// the server go on. The panic's message stays in the log.
fn panicked(_: Box<dyn std::any::Any + Send>) -> axum::http::Response<tonic::body::Body> {
    tracing::error!("a gRPC handler panicked");
    Status::internal("the server failed to handle the call; the error is in its log").into_http()
}

/// Keeps the health service's answers in step with readiness, forever.
async fn report_health(reporter: HealthReporter, status: StatusState) {
    let mut reported = None;
    loop {
        let ready = status.is_ready();
        if reported != Some(ready) {
            let serving = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            for service in std::iter::once("").chain(SERVICES) {
                reporter.set_service_status(service, serving).await;
            }
            reported = Some(ready);
        }
        tokio::time::sleep(HEALTH_POLL).await;
    }
}

/// The crate's errors as gRPC statuses: the one place they are mapped, from each error's kind
/// (so a new error of a known kind needs nothing here). Server faults keep their detail in the
/// log.
impl From<&Error> for Status {
    fn from(error: &Error) -> Self {
        error.log_answered();
        let code = match (error, error.kind().status) {
            // gRPC's code for a limit: the other 503s are unavailability, retried elsewhere.
            (Error::Overloaded, _) | (_, 413) => Code::ResourceExhausted,
            (_, 400 | 415 | 422) => Code::InvalidArgument,
            (_, 401) => Code::Unauthenticated,
            (_, 404) => Code::NotFound,
            (_, 503) => Code::Unavailable,
            (_, 504) => Code::DeadlineExceeded,
            _ => Code::Internal,
        };
        // A client error says what was wrong and where; a server fault only that it happened.
        let message = match error {
            Error::InvalidInput { .. } => error.to_string(),
            _ => error.public_detail(),
        };
        Status::new(code, message)
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        Status::from(&error)
    }
}
