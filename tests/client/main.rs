//! End-to-end tests of the `eden-cas` client commands (put, get, bundles,
//! resume after a kill, limits, an untrusted server) against a real server
//! on loopback. One binary; `cargo test --test client client_resume::` runs
//! one file's tests.

#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod client_bundle;
mod client_limits;
mod client_refs;
mod client_resume;
mod client_roundtrip;
mod client_untrusted;
