//! Rust bindings for SIPs (filled in below).
