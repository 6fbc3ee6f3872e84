//! oxiserve: typed ML inference services on ONNX Runtime, behind production HTTP.
//!
//! A service implements [`Pipeline`] (typed input, preprocess, inference, postprocess, typed
//! output) and calls [`run`] from `main`; the framework does the rest. The guide is
//! `docs/writing-a-service.md`, included below.
//!
//! # Layout
//!
//! - [`pipeline`]: the [`Pipeline`] trait, and the [`Inference`] and [`Outputs`] it exchanges
//!   with the framework.
//! - [`context`]: what a pipeline knows of a request besides its body ([`Context`]): headers
//!   or gRPC metadata, request id, deadline, transport.
//! - [`endpoint`]: routes of a service's own ([`Endpoint`]), in request and response shapes of
//!   its choosing, answered by its pipeline.
//! - [`engine`]: runs a pipeline end to end, decides readiness, adopts new model versions and
//!   carries out the operator's rollback, pin and sync.
//! - [`model`]: a loaded, verified model version ([`Model`]), the set a service serves
//!   ([`Models`]), manifests, the ONNX Runtime session pool and library loading.
//! - [`manifest`]: the manifest of a published model version (files with their sha256,
//!   signature, metadata), read and checked; also `model::manifest`.
//! - [`store`]: model repositories: a local directory, S3 mirrored into a local cache, and
//!   publishing a version by the publication protocol.
//! - [`tensor`]: backend-neutral tensors and KServe datatypes.
//! - `text` (feature `text`): tokenising with a model version's `tokenizer.json`, the inputs
//!   and padding of Hugging Face-style sentence models, mean pooling.
//! - `vision` (feature `vision`): image files decoded with limits checked on the header, and
//!   the preprocessing of image classifiers read from a version's manifest.
//! - [`timings`]: where a request's time went ([`Timings`], `Server-Timing`) and the parts of
//!   `preprocess` a pipeline times itself ([`Laps`]).
//! - [`http`]: routes (predict, versions, status, admin, KServe v2), limits, problem+json errors, OpenAPI
//!   and the docs UI.
//! - [`kserve`]: the KServe v2 (Open Inference Protocol) view of the raw models: metadata,
//!   readiness and inference on named tensors, shared by its transports.
//! - [`protocol`]: the KServe v2 and pipeline wire formats both transports and the remote
//!   model runner share (generated gRPC types, tensor data as JSON, raw bytes or typed
//!   contents).
//! - [`grpc`]: KServe v2 over gRPC (tonic) on its own port, with `grpc.health.v1` and
//!   reflection.
//! - [`cache`]: the response cache, keyed on the input and the model versions, single flight,
//!   in process and optionally shared through Redis.
//! - [`telemetry`]: the metrics recorder behind `/metrics`, logs with request ids, and span
//!   export over OTLP.
//! - [`config`]: the one [`Config`], from defaults, TOML and `OXISERVE_*` variables.
//! - [`error`]: the one [`Error`] type.
//! - [`json`]: typed JSON parsing whose errors name the field, for every transport.
//! - [`server`]: start-up order, signals and shutdown.
//! - [`connections`]: the connection limit, connection deadlines and shutdown stages every
//!   listener shares.
//! - `shards`: values split by thread, for what every request writes to (metrics, run counts,
//!   a version's health, the lock of the model set it reads), so that cores do not contend for
//!   their cache lines.
//! - `testing` (feature `testing`): run any pipeline in-process and call it like a client.
//!   The real servers oxiserve's own tests start (moto, Redis, MLServer, Prometheus, an OTLP
//!   receiver) are in the `oxiserve-test-support` crate, which is not published.
//!
#![doc = include_str!("../../../docs/writing-a-service.md")]
#![warn(missing_docs)]

pub mod cache;
pub mod config;
pub mod connections;
pub mod context;
mod digits;
pub mod endpoint;
pub mod engine;
pub mod error;
#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(test)]
mod hostile;
pub mod http;
pub mod json;
pub mod kserve;
pub mod manifest;
pub mod model;
pub mod pipeline;
pub mod protocol;
pub mod server;
mod shards;
pub mod store;
pub mod telemetry;
pub mod tensor;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "text")]
pub mod text;
pub mod timings;
#[cfg(feature = "vision")]
pub mod vision;

// With the `mimalloc` feature, mimalloc is the process's `malloc` (its `override` feature):
// Rust's default allocator, which calls `malloc`, ONNX Runtime's C++ allocations and every C
// library run on it, with no `#[global_allocator]` line. Its thread-local free lists suit a
// server that allocates on one thread and frees on another (request tensors cross from tokio
// to the inference threads and back): at 64 and 256 connections it gave 4 to 47% more
// throughput than glibc's allocator, and replacing `malloc` under ONNX Runtime too took a
// request from 121,300 to 114,000 instructions (`docs/benchmarks.md`). Naming the crate here
// links it, and with it the override, into every binary built on oxiserve.
#[cfg(feature = "mimalloc")]
use mimalloc as _;

/// The allocator services used to install with `#[global_allocator]`: now the system
/// allocator, whose `malloc` the `mimalloc` feature makes mimalloc's for the whole process.
#[cfg(feature = "mimalloc")]
#[deprecated(
    since = "0.2.0",
    note = "remove the `#[global_allocator]` line: with the `mimalloc` feature (on by default) \
            mimalloc is the process's `malloc`, which Rust's default allocator calls"
)]
pub type Allocator = std::alloc::System;

/// [`type@Allocator`] as a value, for `static ALLOCATOR: oxiserve::Allocator = oxiserve::Allocator;`.
#[cfg(feature = "mimalloc")]
#[deprecated(
    since = "0.2.0",
    note = "remove the `#[global_allocator]` line: with the `mimalloc` feature (on by default) \
            mimalloc is the process's `malloc`, which Rust's default allocator calls"
)]
#[allow(non_upper_case_globals, reason = "the value of the unit struct `Allocator` once was")]
pub const Allocator: std::alloc::System = std::alloc::System;

pub use self::config::Config;
pub use self::context::{Context, Transport};
pub use self::endpoint::{Endpoint, Endpoints, ErrorReply, Failure};
pub use self::engine::{Answer, Engine, Served};
pub use self::error::{Error, Result};
pub use self::model::{Loader, Model, Models, Padding};
pub use self::pipeline::{Inference, ModelOutput, Outputs, Pipeline};
pub use self::server::run;
pub use self::tensor::{DataType, Tensor, Tensors};
pub use self::timings::{Laps, Timings};
