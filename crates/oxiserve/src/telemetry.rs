//! Telemetry: the process-wide metrics recorder, exposed in the Prometheus text format at
//! `GET /metrics`.
//!
//! Code anywhere in the crate records with the `metrics` macros; [`install`] makes the
//! Prometheus recorder the global one. Names start with `oxiserve_` and are listed in
//! `docs/operations.md`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the Prometheus recorder as the global `metrics` recorder, once per process, and
/// returns its handle. Call it before anything records: what is recorded earlier is lost. If
/// the host program installed another recorder first, that one keeps the metrics and
/// `/metrics` stays empty.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        handle
    })
}
