//! Compiles `proto/*.proto` with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs no `protoc` to build device-lorawan: the gateway
//! bridge's and ChirpStack's integration messages with prost, the handover service with tonic's generator.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/gw.proto",
        "proto/integration.proto",
        "proto/handover.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    // Together: `integration` refers to `gw`'s types (as `super::gw`).
    let chirpstack = protox::compile(["proto/gw.proto", "proto/integration.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(chirpstack)?;
    let handover = protox::compile(["proto/handover.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Sessions carry keys: their Debug is written by hand, redacted.
        .skip_debug(["handover.DeviceSession"])
        .compile_fds(handover)?;
    Ok(())
}
