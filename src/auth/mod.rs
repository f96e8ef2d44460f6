//! The auth layer: principals, bearer parsing, token hashing, group membership
//! and per-artifact read rules.
//!
//! Everything here is a pure decision over values handed in by the engine: no
//! I/O, no storage, no HTTP. The engine loads workers, groups and artifact
//! records, then asks these functions; only `http/` turns the resulting errors
//! into statuses (every [`BearerError`] is a 401, [`NameError::Invalid`] a 422,
//! [`NameError::Reserved`] a 409).
//!
//! Invariants kept here: secrets never appear in `Debug`/`Display` output or in
//! error messages; secrets and token hashes are compared in constant time; group
//! traversals terminate on any graph, cycles included (design invariant 4,
//! Isolation, rests on [`acl::can_read`]).

pub mod acl;
pub mod bearer;
pub mod groups;
pub mod ids;
pub mod names;
pub mod token;

pub use acl::{ReadDecision, can_manage, can_read};
pub use bearer::{BearerError, Credentials, parse_authorization};
pub use groups::{
    GroupGraph, MemberId, is_member_of_any, is_transitive_member, transitive_workers,
    would_create_cycle,
};
pub use ids::{ExperimentId, GroupId, InvalidId, Principal, WorkerId};
pub use names::{NameError, is_reserved_group_name, validate_name};
pub use token::{Secret, TokenHasher, admin_token_matches, mint_token};

/// Any failure the auth layer reports, for callers that want one error type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The `Authorization` header is missing, malformed or names no known kind of principal.
    #[error(transparent)]
    Bearer(#[from] BearerError),
    /// A display name failed validation or is reserved.
    #[error(transparent)]
    Name(#[from] NameError),
    /// A string is not a well-formed identifier of the expected kind.
    #[error(transparent)]
    Id(#[from] InvalidId),
}

/// Fills `buf` from the operating system's CSPRNG.
///
/// Should the OS call fail (it practically never does on supported platforms),
/// the thread-local CSPRNG (ChaCha12, itself seeded from the OS) fills in
/// instead, so minting never fails and never yields predictable bytes.
pub(crate) fn fill_random(buf: &mut [u8]) {
    use rand::{RngCore, TryRngCore};
    if rand::rngs::OsRng.try_fill_bytes(buf).is_err() {
        rand::rng().fill_bytes(buf);
    }
}
