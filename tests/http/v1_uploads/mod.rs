//! `/cas/v1/` upload sessions over real HTTP against the real binary: the
//! full flow, the missing-chunk answer's isolation (invariant 4), frame
//! verification, commit checks (missing chunks, wrong lengths, wrong digest),
//! restarts, scoping and abandon.
//!
//! `flow.rs`: the happy path, isolation of the missing-chunk answer and
//! restarts; `checks.rs`: what a session refuses (bad frames, other
//! callers, sizes) and abandon.

mod checks;
mod flow;

use crate::support::v1;

use crate::support::server::*;
use reqwest::Method;
use serde_json::{Value, json};

fn ids(chunks: &[Vec<u8>]) -> Vec<String> {
    chunks.iter().map(|c| v1::b3(c)).collect()
}

fn refs(chunks: &[Vec<u8>]) -> Vec<&[u8]> {
    chunks.iter().map(Vec::as_slice).collect()
}

fn count_listed(server: &Server, exp: &str) -> usize {
    v1::listed(&expect_json(
        v1::get(server, exp, "/artifacts", &server.admin_bearer()),
        200,
    ))
    .len()
}
