//! Compiles the `.proto` contract with `protox` (no system `protoc` needed).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "ekyc/v1/verification.proto",
        "ekyc/v1/tenant_admin.proto",
        "ekyc/v1/billing.proto",
        "ekyc/v1/registry.proto",
        "ekyc/v1/audit_log.proto",
    ];
    for f in files.iter().chain(&["google/rpc/status.proto"]) {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("ekyc_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        // VerifyBatchResult carries a google.rpc.Status: the one tonic-types
        // builds and reads, so statuses pass between the two unconverted.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .build_client(true)
        .build_server(true)
        // No `connect` helpers: they need tonic's transport, which this
        // crate does not build (clients pass their own channel).
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
