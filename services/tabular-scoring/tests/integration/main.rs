//! The service's integration tests, one module each, in one test binary: they share its
//! dependencies' code, compiled and linked once rather than once a file. `metrics.rs`, which
//! reads the process-wide metrics registry, stays a binary of its own.

#[path = "../common/mod.rs"]
mod common;

mod baseline;
mod docs_ui;
mod grpc_pipeline;
mod hardening;
mod http;
mod kserve;
mod parity;
mod retraining;
mod startup;
