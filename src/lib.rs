//! eden-cas: a content-addressed, deduplicating artifact store for EDEN-style
//! experiment deployments.
//!
//! Layers, top to bottom (see `docs/design.md`): [`http`] → [`auth`] →
//! [`engine`] → [`chunking`] / [`pack`] ([`codec`]) → [`blobs`] / [`meta`].

pub mod api;
pub mod auth;
pub mod blobs;
pub mod chunking;
pub mod cli;
pub mod client;
pub mod clock;
pub mod codec;
pub mod config;
pub mod engine;
pub mod hash;
pub mod http;
pub mod ids;
pub mod logging;
pub mod maintenance;
pub mod meta;
pub mod naming;
pub mod pack;
pub mod server;
pub mod tls;
