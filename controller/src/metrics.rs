//! Prometheus metrics (filled in below).
