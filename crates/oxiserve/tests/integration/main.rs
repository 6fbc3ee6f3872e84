//! The core's integration tests, one module each, in one test binary: they share its
//! dependencies' code, compiled and linked once rather than once a file. The tests that read
//! process-wide state stay binaries of their own: `prometheus.rs`, `redis.rs` and `versions.rs`
//! read the metrics registry, and `traces.rs` installs the tracing subscriber.

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod harness;
mod inference_threads;
mod kserve_datatypes;
mod layers;
mod padding;
mod remote;
mod s3;
mod service_api;
