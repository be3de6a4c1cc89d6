//! Haven's controller: holds each child's placement-plan permissions and keeps every enrolled
//! device in line with them; also the staff command line (`haven`).
//!
//! Layers, inner to outer: `domain` (pure rules) → `store` (narrow storage traits and their
//! backends) → `service` (gRPC adapters) → `server` and `cli` (processes and people).

pub mod audit_key;
pub mod backup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod domain;
pub mod files;
#[cfg(test)]
mod fuzzing;
pub mod ids;
pub mod incoming;
pub mod metrics;
pub mod pki;
pub mod registry;
pub mod server;
pub mod service;
pub mod store;
