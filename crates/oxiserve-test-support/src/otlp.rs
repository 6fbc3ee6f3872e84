//! An OTLP/gRPC trace receiver in the test process: the protocol boundary a service exports
//! spans across (`telemetry.otlp_endpoint`), kept in memory so tests can read what arrived.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use anyhow::{Context as _, Result};
use oxiserve::manifest::hex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// One span as a collector received it, ids in lowercase hex as in `traceparent`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// The span's name (`request`, `preprocess`, `model`, `inference`, `postprocess`).
    pub name: String,
    /// The `service.name` of the process that sent it.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root span.
    pub parent_span_id: String,
    /// The span's attributes, every value written as text.
    pub attributes: BTreeMap<String, String>,
}

/// A trace collector on 127.0.0.1 and a free port, until dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    address: SocketAddr,
    /// Dropped with the receiver, which stops the server.
    _stop: oneshot::Sender<()>,
}

impl OtlpReceiver {
    /// Starts the receiver.
    pub async fn start() -> Result<Self> {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let service = TraceServiceServer::new(Collector(Arc::clone(&spans)));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.context("binding the receiver")?;
        let address = listener.local_addr().context("reading the receiver's address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stopping = async move { drop(stopped.await) };
            let served = Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), stopping)
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the OTLP receiver failed");
            }
        });
        Ok(Self { spans, address, _stop: stop })
    }

    /// The endpoint to export to, as `telemetry.otlp_endpoint` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().expect("no test panics while holding the span list").clone()
    }
}

/// The collector's trace service: keeps every span it is sent.
struct Collector(Arc<Mutex<Vec<ReceivedSpan>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let resource = resource_spans.resource.map(|r| attributes(&r.attributes));
            let service = resource.and_then(|mut r| r.remove("service.name")).unwrap_or_default();
            let spans = resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans);
            received.extend(spans.map(|span| ReceivedSpan {
                name: span.name,
                service: service.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                attributes: attributes(&span.attributes),
            }));
        }
        self.0.lock().expect("no test panics while holding the span list").extend(received);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Attributes as text.
fn attributes(list: &[KeyValue]) -> BTreeMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), kv.value.as_ref().map(text).unwrap_or_default()))
        .collect()
}

/// A scalar attribute value as text; other kinds as their debug form.
fn text(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
