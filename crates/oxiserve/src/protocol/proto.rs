//! The messages and services of `proto/`, generated at build time.
//!
//! A file of its own, below the transports and the remote model runner that share it.

/// KServe v2: `proto/kserve_v2.proto`.
pub mod inference {
    tonic::include_proto!("inference");
}

/// The typed pipeline: `proto/pipeline.proto`.
pub mod pipeline {
    tonic::include_proto!("oxiserve.v1");
}

/// The encoded file descriptor set of both, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
