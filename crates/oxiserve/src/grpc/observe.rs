//! What every gRPC call gets around it, as the HTTP `observe` middleware gives requests: a
//! `request` span with its request id (the caller's `x-request-id` metadata or a new one,
//! echoed in the response metadata), the caller's trace context, an `answered` line at debug
//! level, and a count with its latency in `oxiserve_grpc_requests_total` and
//! `oxiserve_grpc_request_duration_seconds` by method (the full path, `unmatched` for an
//! unknown one) and status code.
//!
//! Each call runs in its [`Context`]: its metadata, its request id, and its deadline (the
//! service's limit, or the caller's shorter `grpc-timeout`).
//!
//! It also answers a message over `limits.body_bytes` with `RESOURCE_EXHAUSTED`, gRPC's code
//! for a limit, where tonic says `OUT_OF_RANGE` (which no service of ours answers otherwise).

use std::sync::LazyLock;
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::http::{Request, Response};
use futures_util::future::BoxFuture;
use tonic::Code;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::context::{Context, Transport};
use crate::telemetry::{self, RequestMetrics};

/// The counters and histograms of gRPC calls.
static METRICS: LazyLock<RequestMetrics> = LazyLock::new(|| {
    RequestMetrics::new(
        "oxiserve_grpc_requests_total",
        "oxiserve_grpc_request_duration_seconds",
        &["method", "code"],
    )
});

/// The `code` label of each status code, as tonic's `Code` names them.
const CODE_NAMES: [&str; 17] = [
    "Ok",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// Wraps each gRPC service in [`Observe`]; calls get `limit` as their deadline unless the
/// caller asks for less.
#[derive(Debug, Clone, Copy)]
pub(super) struct ObserveLayer {
    pub(super) limit: Duration,
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe { inner, limit: self.limit }
    }
}

/// A gRPC service, observed.
#[derive(Debug, Clone)]
pub(super) struct Observe<S> {
    inner: S,
    limit: Duration,
}

impl<S, B, R> Service<Request<B>> for Observe<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, waker: &mut std::task::Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(waker)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call; the fresh one waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let method = request.uri().path().to_string();
        let id = telemetry::request_id(request.headers());
        let request_id = id.to_str().unwrap_or_default();
        let span = tracing::info_span!("request", request_id, rpc = %method);
        telemetry::continue_trace(&span, request.headers());
        request.headers_mut().insert(&telemetry::REQUEST_ID, id.clone());
        let start = Instant::now();
        let timeout = grpc_timeout(request.headers()).map_or(self.limit, |t| t.min(self.limit));
        let headers = request.headers().clone();
        let context = Context::of_request(Transport::Grpc, headers, start + timeout, &span);
        Box::pin(async move {
            let answer = async {
                let mut answered = context.scope(inner.call(request)).await;
                let code = answered.as_mut().map_or(Code::Unknown, limit_as_exhausted);
                let ms = start.elapsed().as_secs_f64() * 1e3;
                tracing::debug!(code = ?code, ms, "answered");
                (answered, code)
            };
            let (mut answered, code) = answer.instrument(span).await;
            if let Ok(response) = &mut answered {
                // Unknown methods are the caller's text: keep them out of the label values.
                let method = if code == Code::Unimplemented { "unmatched" } else { &method };
                let code = CODE_NAMES.get(code as usize).unwrap_or(&"Unknown");
                METRICS.record(&[method, code], start.elapsed().as_secs_f64());
                response.headers_mut().insert(&telemetry::REQUEST_ID, id);
            }
            answered
        })
    }
}

/// The deadline a caller asks for in `grpc-timeout`: up to eight digits and a unit (`H`, `M`,
/// `S`, `m`, `u`, `n`). A malformed value is ignored here; tonic answers it.
fn grpc_timeout(headers: &axum::http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The call's status, with tonic's `OUT_OF_RANGE` for a message over the size limit rewritten
/// as `RESOURCE_EXHAUSTED` in the response itself.
fn limit_as_exhausted<R>(response: &mut Response<R>) -> Code {
    match status_code(response) {
        Code::OutOfRange => {
            let code = Code::ResourceExhausted;
            response.headers_mut().insert("grpc-status", (code as i32).into());
            code
        }
        code => code,
    }
}

/// The call's status: a failed call is answered with `grpc-status` in the headers (a
/// trailers-only response); a successful one sends it in the trailers, after the body.
fn status_code<R>(response: &Response<R>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_by_unit_and_bad_ones_are_ignored() {
        let parse = |value: &'static str| {
            let mut headers = axum::http::HeaderMap::new();
            headers.insert("grpc-timeout", axum::http::HeaderValue::from_static(value));
            grpc_timeout(&headers)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("10u"), Some(Duration::from_micros(10)));
        for bad in ["", "S", "123456789S", "5s", "-1S", "1.5S"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn code_names_are_tonics() {
        for (number, name) in CODE_NAMES.iter().enumerate() {
            let code = Code::from_i32(i32::try_from(number).unwrap());
            assert_eq!(format!("{code:?}"), *name);
        }
    }
}
