//! Generates the KServe v2 gRPC messages and service from `proto/kserve_v2.proto`, with protox
//! (a protobuf compiler in Rust), so building needs no system `protoc`. The encoded file
//! descriptor set is written beside the code for the gRPC reflection service.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/kserve_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("kserve_v2_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure().build_client(true).compile_fds(descriptors)?;
    Ok(())
}
