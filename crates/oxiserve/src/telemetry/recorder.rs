//! The process-wide metrics recorder, rendered in the Prometheus text format at
//! `GET /metrics`, and the metric handles the crate records into.
//!
//! Code anywhere in the crate records with the `metrics` macros; [`install`] makes this
//! module's recorder the global one. Counters and histograms with buckets (from 100 µs to 10 s
//! for every `_seconds` metric, powers of two for batch rows) are kept in per-thread shards
//! (`sharded`), gauges and any histogram without buckets in `metrics-exporter-prometheus`'s
//! registry; [`render`] writes both. Names start with `oxiserve_` and are listed in
//! `docs/operations.md`. Until [`install`] runs (`telemetry.metrics = false`) the macros
//! record nothing, at the cost of a check.

use std::sync::{Arc, OnceLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use metrics_process::Collector;

use super::sharded::Sharded;
use crate::error::Error;
use crate::manifest::{MODEL_FILE, Manifest};

/// Latency buckets, in seconds: sub-millisecond inference up to multi-second requests.
const SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Rows-per-run buckets.
const ROWS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// How often the exporter's histogram samples are folded into their summaries.
const UPKEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The histogram of rows per model run.
const BATCH_ROWS: &str = "oxiserve_model_batch_rows";

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process, and
/// returns its handle. Call it before anything records: what is recorded earlier is lost. If
/// the host program installed another recorder first, that one keeps the metrics and
/// `/metrics` stays empty.
///
/// The handle renders gauges and the summaries of histograms without buckets; [`render`]
/// renders them, the counters and the bucket histograms (every `_seconds` metric and
/// `oxiserve_model_batch_rows`), which are kept apart so that threads add to them without
/// sharing cache lines.
pub fn install() -> &'static PrometheusHandle {
    &installed().handle
}

/// What [`install`] set up: the exporter's handle, and the counters and bucket histograms
/// beside it.
struct Installed {
    handle: PrometheusHandle,
    sharded: Arc<Sharded>,
}

/// The process's recorder, installed on first use.
fn installed() -> &'static Installed {
    static INSTALLED: OnceLock<Installed> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let sharded = Arc::new(Sharded::default());
        let recorder = Recorder { prometheus, sharded: Arc::clone(&sharded) };
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        // The exporter's histogram samples wait in a list until folded into summaries; fold
        // them every few seconds, so that memory stays flat when nobody scrapes.
        let upkeep = handle.clone();
        let folding = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        });
        if let Err(error) = folding {
            tracing::warn!(%error, "no metrics upkeep thread; histograms fold at each scrape only");
        }
        process().describe();
        metrics::gauge!("oxiserve_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        Installed { handle, sharded }
    })
}

/// Every metric recorded so far, in the Prometheus text format, with the process's resident
/// memory, CPU seconds and open file descriptors read now.
pub fn render() -> String {
    let installed = installed();
    process().collect();
    let mut text = installed.handle.render();
    installed.sharded.render(&mut text);
    text
}

/// The bounds of the histogram `name`: [`SECONDS`] for every `_seconds` metric, [`ROWS`] for
/// batch rows, none (a summary) for any other.
fn bounds(name: &str) -> Option<&'static [f64]> {
    if name == BATCH_ROWS {
        Some(&ROWS)
    } else if name.ends_with("_seconds") {
        Some(&SECONDS)
    } else {
        None
    }
}

/// The global recorder: counters and histograms with [`bounds`] in [`Sharded`], gauges and
/// other histograms in the Prometheus exporter's registry.
struct Recorder {
    prometheus: PrometheusRecorder,
    sharded: Arc<Sharded>,
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, name: KeyName, _: Option<Unit>, description: SharedString) {
        self.sharded.describe(&name, description);
    }

    fn describe_gauge(&self, name: KeyName, unit: Option<Unit>, description: SharedString) {
        self.prometheus.describe_gauge(name, unit, description);
    }

    fn describe_histogram(&self, name: KeyName, unit: Option<Unit>, description: SharedString) {
        match bounds(name.as_str()) {
            Some(_) => self.sharded.describe(&name, description),
            None => self.prometheus.describe_histogram(name, unit, description),
        }
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.sharded.counter(key)
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.prometheus.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        match bounds(key.name()) {
            Some(bounds) => self.sharded.histogram(key, bounds),
            None => self.prometheus.register_histogram(key, metadata),
        }
    }
}

/// The collector of `oxiserve_process_*`: memory, CPU, file descriptors, threads, start time.
fn process() -> &'static Collector {
    static COLLECTOR: OnceLock<Collector> = OnceLock::new();
    COLLECTOR.get_or_init(|| Collector::new("oxiserve_"))
}

/// Why a model run failed, as the `reason` label of `oxiserve_model_failures_total`.
const FAILURE_REASONS: [&str; 4] = ["overloaded", "timeout", "remote_unavailable", "inference"];

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
    /// Failed runs, one counter per entry of [`FAILURE_REASONS`], all exported from the start
    /// so that rates over them exist before the first failure.
    failures: [Counter; FAILURE_REASONS.len()],
}

impl ModelMetrics {
    /// The handles of `model` at `version`.
    pub(crate) fn new(model: &str, version: u64) -> Self {
        let (model, version) = (model.to_string(), version.to_string());
        let stage = |stage: &'static str| {
            metrics::histogram!("oxiserve_model_stage_seconds",
                "model" => model.clone(), "version" => version.clone(), "stage" => stage)
        };
        let failures = FAILURE_REASONS.map(|reason| {
            let counter = metrics::counter!("oxiserve_model_failures_total",
                "model" => model.clone(), "version" => version.clone(), "reason" => reason);
            counter.increment(0);
            counter
        });
        Self {
            queue: stage("queue"),
            inference: stage("inference"),
            batch_rows: metrics::histogram!(BATCH_ROWS,
                "model" => model.clone(), "version" => version.clone()),
            queue_depth: metrics::gauge!("oxiserve_model_queue_depth",
                "model" => model, "version" => version),
            failures,
        }
    }

    /// Counts a failed run under the reason `error` stands for.
    pub(crate) fn failed(&self, error: &Error) {
        let reason = match error {
            Error::Overloaded => "overloaded",
            Error::Timeout(_) => "timeout",
            Error::RemoteUnavailable { .. } => "remote_unavailable",
            _ => "inference",
        };
        let index = FAILURE_REASONS.iter().position(|known| *known == reason);
        self.failures[index.expect("every reason is in FAILURE_REASONS")].increment(1);
    }
}

/// `oxiserve_model_version_info{model, version, sha256}`: 1 while a version is loaded, 0 once
/// it is dropped. `sha256` is the first 12 hex digits of `model.onnx`'s checksum (`remote`
/// for a model served by a remote server).
#[derive(Debug)]
pub(crate) struct VersionInfo(Gauge);

impl VersionInfo {
    /// Marks `manifest`'s version loaded.
    pub(crate) fn loaded(manifest: &Manifest) -> Self {
        let sha256 = manifest
            .files
            .get(MODEL_FILE)
            .map_or_else(|| "remote".to_string(), |file| file.sha256.chars().take(12).collect());
        let gauge = metrics::gauge!("oxiserve_model_version_info",
            "model" => manifest.name.clone(), "version" => manifest.version.to_string(),
            "sha256" => sha256);
        gauge.set(1.0);
        Self(gauge)
    }
}

impl Drop for VersionInfo {
    fn drop(&mut self) {
        self.0.set(0.0);
    }
}

/// The model store's record of each model: sync attempts, failures by reason, the time of the
/// last success, bytes downloaded, versions refused for their golden outputs, and automatic
/// rollbacks.
pub(crate) mod store {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// Why a sync failed: the store did not answer, or a published version failed its checks.
    const REASONS: [&str; 2] = ["unreachable", "rejected"];

    /// Counts one attempt to bring `model` up to date with the store. The failure and
    /// download counters are exported from the first attempt on, at 0, so that rates over
    /// them exist.
    pub(crate) fn attempted(model: &str) {
        metrics::counter!("oxiserve_model_sync_attempts_total", "model" => model.to_string())
            .increment(1);
        for reason in REASONS {
            failures(model, reason).increment(0);
        }
        downloaded(model, 0);
        golden_failures(model).increment(0);
        rollbacks(model).increment(0);
    }

    /// Counts an automatic rollback of `model`: a new version served worse than the one before.
    pub(crate) fn rolled_back(model: &str) {
        rollbacks(model).increment(1);
    }

    fn rollbacks(model: &str) -> metrics::Counter {
        metrics::counter!("oxiserve_model_rollbacks_total", "model" => model.to_string())
    }

    /// Counts a version of `model` refused because it did not reproduce its golden outputs.
    pub(crate) fn golden_failed(model: &str) {
        golden_failures(model).increment(1);
    }

    fn golden_failures(model: &str) -> metrics::Counter {
        metrics::counter!("oxiserve_model_golden_failures_total", "model" => model.to_string())
    }

    /// Counts a failed sync of `model` for `reason`, one of `unreachable` and `rejected`.
    pub(crate) fn failed(model: &str, reason: &'static str) {
        debug_assert!(REASONS.contains(&reason), "an unknown sync failure reason");
        failures(model, reason).increment(1);
    }

    fn failures(model: &str, reason: &'static str) -> metrics::Counter {
        metrics::counter!("oxiserve_model_sync_failures_total",
            "model" => model.to_string(), "reason" => reason)
    }

    /// Records a successful sync of `model` now, as `oxiserve_model_last_sync_timestamp_seconds`
    /// (Unix time; `time() - ` it is the age of the last success).
    pub(crate) fn succeeded(model: &str) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        metrics::gauge!("oxiserve_model_last_sync_timestamp_seconds", "model" => model.to_string())
            .set(now);
    }

    /// Counts `bytes` downloaded for `model`.
    pub(crate) fn downloaded(model: &str, bytes: u64) {
        metrics::counter!("oxiserve_model_download_bytes_total", "model" => model.to_string())
            .increment(bytes);
    }
}
