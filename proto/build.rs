//! Compiles the `.proto` contract with protox, so building Haven never needs a system `protoc`.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "haven/agent/v1/agent.proto",
    "haven/admin/v1/admin.proto",
    "haven/admin/v1/plan.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // The descriptor set is also served by gRPC reflection, so grpcurl works unchanged.
    std::fs::write(
        out_dir.join("haven_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Keeps the message small in each device's outbox (a channel slot is the enum's size).
        .boxed(".haven.agent.v1.ControllerMessage.body.policy")
        // A list chunk is encoded once and the same bytes shared by every device's copy.
        .bytes(".haven.agent.v1.FilterListChunk.data")
        // Well-known types with serde (pbjson), so records holding a `Timestamp` print as JSON.
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_fds(fds.clone())?;

    // Staff-facing records print as proto3's canonical JSON (`haven … --json`), exactly as
    // another language's client prints them: enums by name, 64-bit integers as strings,
    // `Timestamp`s in RFC 3339, a `oneof` as its one field. Names stay as in the `.proto`
    // (snake_case, which the JSON mapping allows and every parser accepts), and fields at
    // their default are printed too, so a script finds `"in_force": false` rather than
    // nothing. Unknown fields are ignored when reading, as a newer peer may send them.
    pbjson_build::Builder::new()
        .register_descriptors(&prost::Message::encode_to_vec(&fds))?
        .out_dir(&out_dir)
        .preserve_proto_field_names()
        .emit_fields()
        .ignore_unknown_fields()
        .extern_path(".google.protobuf", "::pbjson_types")
        .build(&[".haven.admin.v1"])?;

    // `AgentService`'s server once more, with `Sync`'s replies as `outgoing::Outgoing` (a
    // message, or one already encoded and shared by every stream that sends it) and small
    // per-stream codec buffers (`outgoing::SyncCodec`). Every message type is the one above.
    let shared = out_dir.join("shared");
    std::fs::create_dir_all(&shared)?;
    let mut agent_only = fds;
    agent_only
        .file
        .retain(|f| f.name() == "haven/agent/v1/agent.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        .out_dir(&shared)
        .codec_path("crate::outgoing::SyncCodec")
        .extern_path(".haven.agent.v1", "crate::agent::v1")
        .extern_path(
            ".haven.agent.v1.ControllerMessage",
            "crate::outgoing::Outgoing",
        )
        .compile_fds(agent_only)?;
    Ok(())
}
