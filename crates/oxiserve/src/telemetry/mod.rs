//! Telemetry: what operators see of a running service.
//!
//! - `recorder`: the Prometheus metrics recorder behind `GET /metrics`, with the process and
//!   build metrics, and the handles the crate records model runs and model store syncs into.
//!   Every name starts with `oxiserve_` and is listed in `docs/operations.md`.
//! - `sharded`: counters and bucket histograms that each thread adds to a shard of, so that
//!   the cores do not pass cache lines back and forth on every addition, rendered at a scrape.
//! - `requests`: request counters and latency histograms by route, method and status, kept
//!   per label set so that a request records without allocating.
//! - `traces`: the `tracing` subscriber (JSON or pretty lines), request ids, and span export
//!   over OTLP with the W3C trace context carried in from callers and out to remote models.

mod recorder;
mod requests;
mod sharded;
mod traces;

pub(crate) use self::recorder::{ModelMetrics, VersionInfo, store};
pub use self::recorder::{install, render};
pub(crate) use self::requests::RequestMetrics;
pub(crate) use self::traces::{REQUEST_ID, traces_stages};
pub use self::traces::{
    REQUEST_ID_HEADER, Telemetry, continue_trace, init, request_id, traceparent,
};
