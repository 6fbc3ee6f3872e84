//! The HTTP ceiling that `cargo xtask bench` measures services against: the same axum and
//! tokio as oxiserve, doing only what any JSON service must do with the same payloads. It
//! parses each `POST /v1/predict` body as JSON and answers a fixed body of a real response's
//! size; no model, no pipeline. A service's throughput over this one is the share of the
//! HTTP budget it keeps.
//!
//! Environment: `CEILING_PORT` (port on 127.0.0.1), `CEILING_RESPONSE` (a file holding the
//! response body to send).

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
    let answer = move |body: Bytes| {
        let response = response.clone();
        async move {
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
