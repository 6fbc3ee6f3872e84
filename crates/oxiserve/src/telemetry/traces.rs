//! Logs and traces: the `tracing` subscriber a service runs with, request ids, and OTLP
//! export with the W3C trace context in and out.
//!
//! Every request runs inside a `request` span that carries its `request_id` (the caller's
//! `x-request-id`, or a new one), so every log line written while serving it names it. Lines
//! are JSON by default, one object a line with the fields of every open span (`log.format =
//! "json"`), or pretty for people (`"pretty"`). When `telemetry.otlp_endpoint` is set, spans
//! also go to that OTLP/gRPC collector in batches: the request span continues the caller's
//! `traceparent` ([`continue_trace`]) and a remote model server gets the `traceparent` of the
//! span that calls it ([`traceparent`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::IsTerminal;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
#[cfg(feature = "otlp")]
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat, TelemetryConfig};
use crate::digits;
use crate::error::{Error, Result};

/// The header that carries a request's id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// [`REQUEST_ID_HEADER`] as a header name: inserting by `&str` parses and copies the name on
/// every request.
pub(crate) static REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// The longest caller-given request id kept; a longer or non-printable one is replaced.
const MAX_REQUEST_ID: usize = 128;

/// Whether spans are exported, so that trace context is worth reading and writing.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The installed logging and tracing. Dropping it sends the spans still buffered to the
/// collector.
#[derive(Debug)]
#[must_use = "dropping it stops the span export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans buffered so far to the collector and waits for it to take them.
    pub fn flush(&self) -> Result<()> {
        match &self.provider {
            Some(provider) => provider
                .force_flush()
                .map_err(|e| Error::internal(format!("exporting spans failed: {e}"))),
            None => Ok(()),
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            EXPORTING.store(false, Ordering::Release);
            if let Err(error) = provider.shutdown() {
                eprintln!("span export did not shut down cleanly: {error}");
            }
        }
    }
}

/// Installs the process's `tracing` subscriber: lines to stderr in `log.format`, filtered by
/// `log.filter` (or `RUST_LOG`), and spans exported over OTLP/gRPC as `service` when
/// `telemetry.otlp_endpoint` is set, filtered by `telemetry.trace_filter`. Each output has its
/// own filter, so the stage spans (at debug level) exist only while something wants them.
/// Call it inside the tokio runtime, once: a second call in the same process (several
/// services in one test binary) keeps the first subscriber.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig, service: &str) -> Result<Telemetry> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    let lines = match log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed(),
    };
    let provider = telemetry
        .otlp_endpoint
        .as_deref()
        .map(|endpoint| {
            let service = telemetry.service_name.as_deref().unwrap_or(service);
            exporting_provider(endpoint, service, telemetry.trace_sample_ratio)
        })
        .transpose()?;
    let export = provider.as_ref().map(|provider| {
        // Only what a trace viewer needs: no busy/idle timing at every poll, no source
        // location or thread attributes, no OpenTelemetry context activated at every enter
        // (trace context leaves through `traceparent`, which reads the span itself).
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("oxiserve"))
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_threads(false)
            .with_context_activation(false)
            .with_filter(EnvFilter::new(&telemetry.trace_filter))
            .boxed()
    });
    let layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> =
        [Some(lines), export].into_iter().flatten().collect();
    if tracing_subscriber::registry().with(layers).try_init().is_ok() && provider.is_some() {
        EXPORTING.store(true, Ordering::Release);
    }
    Ok(Telemetry { provider })
}

/// A tracer provider that batches spans to the OTLP/gRPC collector at `endpoint`, keeping
/// `ratio` of the traces that start here and following the caller's decision for the others.
#[cfg(feature = "otlp")]
fn exporting_provider(endpoint: &str, service: &str, ratio: f64) -> Result<SdkTracerProvider> {
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::trace::Sampler;

    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| {
            let detail = format!("telemetry.otlp_endpoint `{endpoint}`: {e}");
            Error::from(figment::Error::from(detail))
        })?;
    let resource = Resource::builder().with_service_name(service.to_string()).build();
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)));
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .with_sampler(sampler)
        .build())
}

/// A build without the `otlp` feature refuses `telemetry.otlp_endpoint`.
#[cfg(not(feature = "otlp"))]
fn exporting_provider(_: &str, _: &str, _: f64) -> Result<SdkTracerProvider> {
    Err(crate::config::missing_feature("telemetry.otlp_endpoint", "otlp"))
}

/// The id of a request: the caller's `x-request-id` when it is short printable text, else a
/// new one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(&REQUEST_ID)
        .filter(|id| {
            let bytes = id.as_bytes();
            !bytes.is_empty()
                && bytes.len() <= MAX_REQUEST_ID
                && bytes.iter().all(u8::is_ascii_graphic)
        })
        .cloned()
        .unwrap_or_else(new_request_id)
}

/// Request id numbers a thread takes at a time.
const ID_BLOCK: u64 = 1024;

/// A request id unique across processes and time: 16 hex digits drawn at random once per
/// process, then 16 of a number no other id of the process has (no system call per request).
/// Threads take numbers [`ID_BLOCK`] at a time from one count, so that requests on different
/// cores do not pass its cache line back and forth.
fn new_request_id() -> HeaderValue {
    static PROCESS: LazyLock<String> = LazyLock::new(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let random =
            RandomState::new().hash_one((std::process::id(), now.map(|d| d.as_nanos()).ok()));
        let mut digits = String::with_capacity(16);
        digits::push_hex16(&mut digits, random);
        digits
    });
    static BLOCKS: AtomicU64 = AtomicU64::new(0);
    thread_local! {
        /// The next number of this thread's block, and the end of the block.
        static NUMBERS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }
    let number = NUMBERS.with(|numbers| {
        let (mut next, mut end) = numbers.get();
        if next == end {
            next = BLOCKS.fetch_add(ID_BLOCK, Ordering::Relaxed);
            end = next + ID_BLOCK;
        }
        numbers.set((next + 1, end));
        next
    });
    // Written into a string of the exact length, which the value then keeps without a copy.
    let mut id = String::with_capacity(32);
    id.push_str(&PROCESS);
    digits::push_hex16(&mut id, number);
    HeaderValue::from_maybe_shared(Bytes::from(id)).expect("hex digits are a valid header value")
}

/// Makes `span` a child of the caller's span named by the W3C `traceparent` in `headers`, when
/// spans are exported and the header is valid.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if !EXPORTING.load(Ordering::Acquire) || !headers.contains_key("traceparent") {
        return;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only when the span is disabled or already started; either way it stays a root.
    let _ = span.set_parent(parent);
}

/// Whether the stages of the request served in `request_span` get spans of their own: always
/// when spans are not exported (logs at `debug` show them), and when they are, only for a
/// sampled trace.
pub(crate) fn traces_stages(request_span: &Span) -> bool {
    !EXPORTING.load(Ordering::Acquire) || request_span.context().span().span_context().is_sampled()
}

/// The W3C `traceparent` naming `span`, for a call it makes to another server; `None` when
/// spans are not exported.
pub fn traceparent(span: &Span) -> Option<String> {
    if !EXPORTING.load(Ordering::Acquire) {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// HTTP headers (gRPC metadata among them) as an OpenTelemetry carrier.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(feature = "otlp"))]
    #[test]
    fn a_build_without_otlp_refuses_an_endpoint() {
        let error = exporting_provider("http://127.0.0.1:4317", "svc", 1.0).unwrap_err();
        assert!(error.to_string().contains("`otlp` feature"), "{error}");
    }

    #[test]
    fn a_usable_caller_request_id_is_kept_and_others_are_replaced() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(REQUEST_ID_HEADER, HeaderValue::from_str(value).unwrap());
            request_id(&headers)
        };
        assert_eq!(with("order-42"), "order-42");
        for unusable in ["", "has space", &"x".repeat(MAX_REQUEST_ID + 1)] {
            let replaced = with(unusable);
            assert_eq!(replaced.len(), 32, "{unusable:?} gives a new id");
            assert!(replaced.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn ids_made_on_many_threads_at_once_are_all_different() {
        let per_thread = 3 * ID_BLOCK as usize;
        let ids: Vec<Vec<HeaderValue>> = std::thread::scope(|scope| {
            let made: Vec<_> = (0..4)
                .map(|_| scope.spawn(move || (0..per_thread).map(|_| new_request_id()).collect()))
                .collect();
            made.into_iter().map(|thread| thread.join().expect("no thread panics")).collect()
        });
        let distinct: std::collections::HashSet<&HeaderValue> = ids.iter().flatten().collect();
        assert_eq!(distinct.len(), 4 * per_thread);
    }
}
