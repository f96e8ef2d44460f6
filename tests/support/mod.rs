//! Support shared by the integration-test binaries (`tests/engine`,
//! `tests/http`, `tests/client`, `tests/blobs`), each of which declares it
//! with `#[path = "../support/mod.rs"] mod support;`. Every binary compiles
//! all of it and uses a part, hence `allow(dead_code, unused_imports)` where
//! it is declared (re-exports count as imports).
//!
//! - this module: test data (deterministic noise, chunks as the engine cuts
//!   them, upload-session frames) and a test runtime;
//! - [`server`]: the real `eden-cas` binary on a loopback port, and the
//!   requests and answer checks of the `/v0/` surface;
//! - [`v1`]: request builders for `/cas/v1/`;
//! - [`raw`]: raw HTTP/1.1 over a socket, for clients no library imitates;
//! - [`client`]: the `eden-cas` binary as a client against a [`server`];
//! - [`engine`]: an engine over real RocksDB and an fs blob store in a temp
//!   dir, with deposit, fetch and storage-inspection helpers;
//! - [`packs`]: pack objects as stored — files of an fs blob store, their
//!   footer index, a flipped bit;
//! - [`blobs`]: SeaweedFS, Azurite and a GCS emulator on loopback, the
//!   child-process runner that hands tests their credentials, and proxies.

pub mod blobs;
pub mod client;
pub mod engine;
pub mod packs;
pub mod pg;
pub mod raw;
pub mod server;
pub mod v1;

use bytes::Bytes;
use eden_cas::chunking::{ChunkerParams, StreamChunker};

/// `n` deterministic pseudo-random bytes (xorshift64, seeded by `seed`):
/// incompressible, and different for every seed.
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 29) as u8
        })
        .collect()
}

/// `data` cut into chunks as the engine cuts it by default, in order.
pub fn chunks_of(data: &[u8]) -> Vec<Vec<u8>> {
    chunks_with(data, ChunkerParams::default())
}

/// `data` cut into chunks as the engine cuts it with `params`, in order.
pub fn chunks_with(data: &[u8], params: ChunkerParams) -> Vec<Vec<u8>> {
    let mut c = StreamChunker::new(params).expect("chunker parameters");
    let mut out = Vec::new();
    c.push(data, |x: &[u8]| out.push(x.to_vec()));
    c.finish(|x: &[u8]| out.push(x.to_vec()));
    out
}

/// The upload-session frames of `chunks`, in order: for each one its
/// BLAKE3 id (32 bytes), its length (u32 little-endian), then its bytes.
pub fn frames<C: AsRef<[u8]>>(chunks: &[C]) -> Bytes {
    let mut out = Vec::new();
    for c in chunks {
        let c = c.as_ref();
        out.extend_from_slice(blake3::hash(c).as_bytes());
        out.extend_from_slice(&(c.len() as u32).to_le_bytes());
        out.extend_from_slice(c);
    }
    Bytes::from(out)
}

/// A multi-threaded tokio runtime (two workers, I/O and time drivers) for a
/// test that drives the engine from synchronous code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
