//! `/cas/v1/` artifacts over real HTTP against the real binary: raw deposit
//! (shape, digests, dedup figures), fetch by id with ranges, HEAD, ETag and
//! Repr-Digest, metadata, both surfaces on one store, listing, grants and
//! delete.
//!
//! `deposit_fetch.rs`: deposits, reads and their headers; `access.rs`:
//! listing, grants, delete and request checks.

mod access;
mod deposit_fetch;

use crate::support::v1;

use crate::support::server::*;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest as _;

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}
