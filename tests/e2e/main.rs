//! Haven's end-to-end tests: one test binary, real processes, real TLS, a real database file.
//!
//! Each test starts its own controller on a free loopback port with a temporary data
//! directory. Clause IDs from `../shared/spec/clauses.md` are named in test names or in a
//! `// clause …` comment above the test; `tests/TRACEABILITY.md` maps them.

mod agent;
mod audit;
mod backup;
mod certs;
mod children;
mod contacts;
mod device_limits;
mod emergency;
mod enrollment;
mod errors;
mod filter;
mod guards;
mod metrics;
mod pages;
mod plans;
mod postgres;
mod protected;
mod python_client;
mod records;
mod replicas;
mod requests;
mod robustness;
mod security;
mod sync;
mod telephony;
mod violations;
mod web;
