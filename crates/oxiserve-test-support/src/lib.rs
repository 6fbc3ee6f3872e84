//! Real servers and tools for oxiserve's own tests, each started on 127.0.0.1 and a free port
//! and stopped when dropped, even when the test fails: moto for S3 ([`S3Server`]),
//! `redis-server` ([`RedisServer`]), MLServer ([`MlServer`], a real KServe v2 server),
//! Prometheus with its rule checks ([`PrometheusServer`]), Alertmanager
//! ([`AlertmanagerServer`]), an OTLP trace receiver
//! ([`OtlpReceiver`]), the project's training service ([`TrainingService`]), a service's
//! FastAPI twin ([`fastapi_twin`]), a bare HTTP/1.1
//! client ([`http_request`]), Python scripts of checks with real clients ([`python_checks`])
//! and schemathesis ([`schemathesis`]). `cargo xtask test` installs what they run.
//!
//! Not framework API (`publish = false`): what a service author tests with is
//! `oxiserve::testing::TestApp`.

mod alertmanager;
mod http;
mod mlserver;
mod otlp;
mod process;
mod prometheus;
mod python;
mod redis;
mod s3;
mod trainer;
mod twin;

pub use self::alertmanager::AlertmanagerServer;
pub use self::http::http_request;
pub use self::mlserver::{MlServer, SklearnModel};
pub use self::otlp::{OtlpReceiver, ReceivedSpan};
pub use self::process::{ServerProcess, free_port};
pub use self::prometheus::PrometheusServer;
pub use self::python::{python_checks, schemathesis};
pub use self::redis::RedisServer;
pub use self::s3::S3Server;
pub use self::trainer::TrainingService;
pub use self::twin::fastapi_twin;
