//! Generates the gRPC messages and services of `proto/` (KServe v2, and the typed pipeline)
//! with protox, a protobuf compiler in Rust, so building needs no system `protoc`. The encoded
//! file descriptor set is written beside the code for the gRPC reflection service.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/kserve_v2.proto", "proto/pipeline.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let encoded = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out.join("descriptors.bin"), encoded)?;
    tonic_prost_build::configure()
        .build_client(true)
        .codec_path("crate::protocol::grpc_codec::ProtoCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
