//! Haven's wire contract: generated types and gRPC stubs for the agent and staff APIs.
//!
//! The `.proto` files beside this crate are the source of truth; this crate only compiles them.

// Generated code: its shape follows the .proto files, not our lint preferences.
#[allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
pub mod agent {
    pub mod v1 {
        tonic::include_proto!("haven.agent.v1");
    }
}

// `deprecated`: the generated code reads and writes the deprecated words fields beside their
// enums (proto/README.md): they are still filled for older clients.
#[allow(clippy::large_enum_variant, clippy::doc_lazy_continuation, deprecated)]
pub mod admin {
    pub mod v1 {
        tonic::include_proto!("haven.admin.v1");
        // Proto3 canonical JSON (pbjson): what `haven … --json` prints.
        include!(concat!(env!("OUT_DIR"), "/haven.admin.v1.serde.rs"));
    }
}

/// The well-known types the staff API uses (`google.protobuf.Timestamp`), with serde, so a
/// record holding one still prints as JSON.
pub use pbjson_types as well_known;

/// Encoded `FileDescriptorSet` of every Haven service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/haven_descriptor.bin"));

pub mod domain_list;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod outgoing;
pub mod trust;
