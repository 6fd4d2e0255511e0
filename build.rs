//! Generates the entry types from `proto/` (prost) and their canonical
//! proto3 JSON mapping (pbjson). The .proto files are compiled by `protox`,
//! a protobuf compiler written in Rust that carries the well-known types
//! (`google/protobuf/timestamp.proto`), so the build needs neither `protoc`
//! nor `libprotobuf-dev`.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/gatelog/v1/entry.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    let descriptor_bytes = descriptors.encode_to_vec();
    prost_build::Config::new()
        // Our own Timestamp: pbjson-types writes "+00:00" where proto3
        // JSON wants RFC 3339 with "Z".
        .extern_path(
            ".google.protobuf.Timestamp",
            "crate::access::entry::Timestamp",
        )
        .compile_fds(descriptors)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_bytes)?
        .build(&[".gatelog"])?;
    Ok(())
}
