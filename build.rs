//! Generates the entry types from `proto/` (prost) and their canonical
//! proto3 JSON mapping (pbjson). Needs `protoc` (Debian: protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/gatelog/v1/entry.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptors = out.join("descriptors.bin");
    prost_build::Config::new()
        .file_descriptor_set_path(&descriptors)
        // Our own Timestamp: pbjson-types writes "+00:00" where proto3
        // JSON wants RFC 3339 with "Z".
        .extern_path(".google.protobuf.Timestamp", "crate::entry::Timestamp")
        .compile_protos(&[proto], &["proto"])?;
    pbjson_build::Builder::new()
        .register_descriptors(&std::fs::read(&descriptors)?)?
        .build(&[".gatelog"])?;
    Ok(())
}
