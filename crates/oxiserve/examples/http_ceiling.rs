//! The HTTP ceiling that `cargo xtask bench` measures services against: the same axum and
//! tokio as oxiserve, doing only what any JSON service must do with the same payloads. It
//! parses each `POST /v1/predict` body as JSON and answers a fixed body of a real response's
//! size; no model, no pipeline. A service's throughput over this one is the share of the
//! HTTP budget it keeps.
//!
//! Environment: `CEILING_PORT` (port on 127.0.0.1), `CEILING_RESPONSE` (a file holding the
//! response body to send), and `CEILING_WORK_NS` (optional: nanoseconds each request spends
//! spinning on its core before it answers, standing for a service's own work; 0 by default).
//! With it, the ceiling shows what a given amount of work a request costs the throughput on
//! the machine at hand, load generator included (`docs/benchmarks.md`, "Where the time goes:
//! the ceiling with work added"); `cargo xtask bench` runs it so with the service's own work
//! as `http-ceiling-work`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

// Linked for the services' allocator alone (with the `mimalloc` feature, mimalloc is the
// process's `malloc`), so that the ceiling measures HTTP alone.
use oxiserve as _;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("CEILING_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(8080);
    let path = std::env::var("CEILING_RESPONSE").unwrap_or_else(|_| "response.json".into());
    let response = Bytes::from(std::fs::read(&path)?);
    let work = std::env::var("CEILING_WORK_NS").ok().and_then(|ns| ns.parse().ok());
    let work = Duration::from_nanos(work.unwrap_or(0));
    let answer = move |body: Bytes| {
        let response = response.clone();
        async move {
            if !work.is_zero() {
                let start = Instant::now();
                while start.elapsed() < work {
                    std::hint::spin_loop();
                }
            }
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(_) => ([(header::CONTENT_TYPE, "application/json")], response).into_response(),
                Err(_) => StatusCode::BAD_REQUEST.into_response(),
            }
        }
    };
    let app = Router::new()
        .route("/v1/predict", post(answer))
        .route("/health/ready", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
