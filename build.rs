//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs no `protoc` to build device-lorawan.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/gw.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
