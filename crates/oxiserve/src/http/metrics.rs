//! `GET /metrics`: every metric of the process, in the Prometheus text format.

use axum::http::header;
use axum::response::IntoResponse;

use crate::telemetry;

/// The Prometheus text exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where metrics are served.
pub const PATH: &str = "/metrics";

/// Renders every metric recorded so far.
pub(super) async fn render() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], telemetry::render())
}
