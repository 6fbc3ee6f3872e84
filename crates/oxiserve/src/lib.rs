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
//! - [`engine`]: runs a pipeline end to end and decides readiness.
//! - [`model`]: a loaded, verified model version ([`Model`]), the set a service serves
//!   ([`Models`]), manifests, the ONNX Runtime session pool and library loading.
//! - [`store`]: the model repository on disk.
//! - [`tensor`]: backend-neutral tensors and KServe datatypes.
//! - [`http`]: routes, limits, problem+json errors, OpenAPI and the docs UI.
//! - [`config`]: the one [`Config`], from defaults, TOML and `OXISERVE_*` variables.
//! - [`error`]: the one [`Error`] type.
//! - [`server`]: start-up order, signals and shutdown.
//! - `testing` (feature `testing`): run any pipeline in-process and call it like a client.
//!
#![doc = include_str!("../../../docs/writing-a-service.md")]
#![warn(missing_docs)]

pub mod config;
pub mod engine;
pub mod error;
pub mod http;
pub mod model;
pub mod pipeline;
pub mod server;
pub mod store;
pub mod tensor;
#[cfg(feature = "testing")]
pub mod testing;

pub use self::config::Config;
pub use self::engine::{Answer, Engine};
pub use self::error::{Error, Result};
pub use self::model::{Loader, Model, Models};
pub use self::pipeline::{Inference, ModelOutput, Outputs, Pipeline};
pub use self::server::run;
pub use self::tensor::{DataType, Tensor, Tensors};
