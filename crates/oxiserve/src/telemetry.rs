//! Telemetry: the process-wide metrics recorder, exposed in the Prometheus text format at
//! `GET /metrics`, and the metric handles the crate records into.
//!
//! Code anywhere in the crate records with the `metrics` macros; [`install`] makes the
//! Prometheus recorder the global one, with histogram buckets from 100 µs to 10 s for every
//! `_seconds` metric and powers of two for batch rows. Names start with `oxiserve_` and are
//! listed in `docs/operations.md`.

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: sub-millisecond inference up to multi-second requests.
const SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Rows-per-run buckets.
const ROWS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The histogram of rows per model run.
const BATCH_ROWS: &str = "oxiserve_model_batch_rows";

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process, and
/// returns its handle. Call it before anything records: what is recorded earlier is lost. If
/// the host program installed another recorder first, that one keeps the metrics and
/// `/metrics` stays empty.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(Matcher::Full(BATCH_ROWS.into()), &ROWS)
            })
            .expect("the bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        handle
    })
}

/// The metrics of one model version, registered once at load so that requests record without
/// building label sets.
#[derive(Debug, Clone)]
pub(crate) struct ModelMetrics {
    /// Time a job waited for a worker.
    pub(crate) queue: Histogram,
    /// Time the run took (the whole batch's when batched).
    pub(crate) inference: Histogram,
    /// Rows per run: batching at work when above one.
    pub(crate) batch_rows: Histogram,
    /// Jobs waiting, as a worker last saw the queue.
    pub(crate) queue_depth: Gauge,
    model: String,
    version: String,
}

impl ModelMetrics {
    /// The handles of `model` at `version`.
    pub(crate) fn new(model: &str, version: u64) -> Self {
        let (model, version) = (model.to_string(), version.to_string());
        let stage = |stage: &'static str| {
            metrics::histogram!("oxiserve_model_stage_seconds",
                "model" => model.clone(), "version" => version.clone(), "stage" => stage)
        };
        Self {
            queue: stage("queue"),
            inference: stage("inference"),
            batch_rows: metrics::histogram!(BATCH_ROWS,
                "model" => model.clone(), "version" => version.clone()),
            queue_depth: metrics::gauge!("oxiserve_model_queue_depth",
                "model" => model.clone(), "version" => version.clone()),
            model,
            version,
        }
    }

    /// The failure counter for `reason` (`overloaded`, `timeout`, `remote_unavailable`,
    /// `inference`).
    pub(crate) fn failures(&self, reason: &'static str) -> Counter {
        metrics::counter!("oxiserve_model_failures_total",
            "model" => self.model.clone(), "version" => self.version.clone(), "reason" => reason)
    }
}
