//! Support shared by the integration-test binaries (`tests/engine`,
//! `tests/http`, `tests/client`, `tests/blobs`), each of which declares it
//! with `#[path = "../support/mod.rs"] mod support;`. Every binary compiles
//! all of it and uses a part, hence `allow(dead_code)` where it is declared.
//!
//! - [`server`]: the real `eden-cas` binary on a loopback port, and the
//!   requests and answer checks of the `/v0/` surface;
//! - [`v1`]: request builders and frame encoding for `/cas/v1/`;
//! - [`raw`]: raw HTTP/1.1 over a socket, for clients no library imitates;
//! - [`client`]: the `eden-cas` binary as a client against a [`server`];
//! - [`engine`]: an engine over real RocksDB and an fs blob store in a temp
//!   dir, with deposit, fetch and storage-inspection helpers;
//! - [`blobs`]: SeaweedFS, Azurite and a GCS emulator on loopback, the
//!   child-process runner that hands tests their credentials, and proxies.

pub mod blobs;
pub mod client;
pub mod engine;
pub mod raw;
pub mod server;
pub mod v1;
