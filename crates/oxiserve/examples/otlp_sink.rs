//! An OTLP/gRPC trace collector that counts the spans it receives and keeps none: what
//! `cargo xtask bench --telemetry` exports to, so that the bench measures the service's side
//! of span export and not a collector's. On SIGTERM or Ctrl-C it prints how many spans
//! arrived, to stderr.
//!
//! Environment: `SINK_PORT` (port on 127.0.0.1).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::{Request, Response, Status};

/// Counts the spans of every export.
struct Sink(Arc<AtomicU64>);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let resources = request.into_inner().resource_spans;
        let scopes = resources.iter().flat_map(|resource| &resource.scope_spans);
        let spans: usize = scopes.map(|scope| scope.spans.len()).sum();
        self.0.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = std::env::var("SINK_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4317);
    let received = Arc::new(AtomicU64::new(0));
    let stop = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler can be installed");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Sink(Arc::clone(&received))))
        .serve_with_shutdown(([127, 0, 0, 1], port).into(), stop)
        .await?;
    eprintln!("otlp-sink: {} spans received", received.load(Ordering::Relaxed));
    Ok(())
}
