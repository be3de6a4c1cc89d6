//! Haven's wire contract: generated types and gRPC stubs for the agent and staff APIs.
//!
//! The `.proto` files beside this crate are the source of truth; this crate only compiles them.

pub mod agent {
    pub mod v1 {
        tonic::include_proto!("haven.agent.v1");
    }
}

pub mod admin {
    pub mod v1 {
        tonic::include_proto!("haven.admin.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Haven service, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/haven_descriptor.bin"));

pub mod trust;
