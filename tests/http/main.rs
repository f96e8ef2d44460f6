//! HTTP integration tests: the real `eden-cas` binary on a loopback port
//! over a temporary data directory, driven only over HTTP (the `/v0/` EDEN
//! contract, `/cas/v1/`, admin and ops endpoints), including crashes,
//! corruption on disk, bounds and the blob-store lease. One binary;
//! `cargo test --test http v0_auth::` runs one file's tests.

#[allow(dead_code, unused_imports)]
#[path = "../support/mod.rs"]
mod support;

mod admin_listen;
mod audit;
mod bounds;
mod codec_http;
mod contract;
mod corruption;
mod crash;
mod dashboard;
mod lease;
mod lifecycle_http;
mod no_oracle_http;
mod observability;
mod ops;
mod otlp;
mod postgres_serve;
mod quota;
mod refs;
mod refs_cache;
mod server;
mod settings;
mod tls;
mod v0_artifacts;
mod v0_auth;
mod v0_groups;
mod v0_registry;
mod v1_artifacts;
mod v1_uploads;
