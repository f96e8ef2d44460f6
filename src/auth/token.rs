//! Secrets and their verification: the redacting [`Secret`] wrapper, worker
//! registration tokens (minting, keyed hashing, constant-time checks) and the
//! admin token comparison.
//!
//! Invariants: a secret never reaches `Debug`/`Display`; tokens are stored only
//! as BLAKE3 keyed hashes under a server key (a keyed fast hash suffices for
//! 256-bit random tokens); every comparison is constant time, and checking a
//! token for an unknown worker costs the same as for a known one.

use std::fmt;

use subtle::ConstantTimeEq;

/// Random bytes in a registration token (256 bits; 64 hex characters on the wire).
pub const TOKEN_BYTES: usize = 32;

/// Stands in for a stored hash when the worker is unknown; no real token hashes to it
/// except with probability 2^-256, and [`TokenHasher::verify_unknown`] returns false anyway.
const DUMMY_STORED_HASH: [u8; 32] = [0xa5; 32];

/// A secret string (token, admin token) whose `Debug` and `Display` print `***`.
///
/// It has no `PartialEq` (use the constant-time functions here) and no serde
/// impls, so it cannot be logged or serialised by accident; call
/// [`Secret::expose`] where the plain text is really needed. The buffer is
/// zeroed, best effort, when the value is dropped.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The plain secret; only for comparing, hashing or sending it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.fill(0);
        std::hint::black_box(&bytes);
    }
}

/// A fresh registration token: 32 bytes from the OS CSPRNG as 64 lowercase hex characters.
pub fn mint_token() -> Secret {
    let mut bytes = [0u8; TOKEN_BYTES];
    super::fill_random(&mut bytes);
    let token = Secret(hex::encode(bytes));
    bytes.fill(0);
    std::hint::black_box(&bytes);
    token
}

/// Hashes and verifies registration tokens under one server-wide 32-byte key.
///
/// The key must be kept with the metadata (losing it invalidates every stored
/// token hash); `Debug` does not print it.
#[derive(Clone)]
pub struct TokenHasher {
    key: [u8; 32],
}

impl TokenHasher {
    /// A hasher for the given server key.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// A fresh random server key from the OS CSPRNG, for first start.
    pub fn generate_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        super::fill_random(&mut key);
        key
    }

    /// The value to store for `secret`: BLAKE3 keyed hash under the server key.
    pub fn hash(&self, secret: &str) -> [u8; 32] {
        blake3::keyed_hash(&self.key, secret.as_bytes()).into()
    }

    /// Whether `secret` hashes to `stored`, compared in constant time.
    pub fn verify(&self, secret: &str, stored: &[u8; 32]) -> bool {
        self.hash(secret).ct_eq(stored).into()
    }

    /// The unknown-worker path: the same work as [`TokenHasher::verify`] against a
    /// dummy hash, always `false`, so timing does not reveal whether a worker exists.
    pub fn verify_unknown(&self, secret: &str) -> bool {
        std::hint::black_box(self.verify(secret, &DUMMY_STORED_HASH));
        false
    }
}

impl fmt::Debug for TokenHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHasher { key: *** }")
    }
}

/// Whether `presented` equals the deployment admin token `expected`.
///
/// Both sides are hashed with BLAKE3 first and the digests compared in constant
/// time, so neither the content nor the length of `expected` leaks through an
/// early return. An empty `expected` never matches.
pub fn admin_token_matches(expected: &Secret, presented: &str) -> bool {
    let want = blake3::hash(expected.expose().as_bytes());
    let got = blake3::hash(presented.as_bytes());
    let equal: bool = want.as_bytes().ct_eq(got.as_bytes()).into();
    equal & !expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn secret_is_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
        let h = TokenHasher::new([7; 32]);
        assert_eq!(format!("{h:?}"), "TokenHasher { key: *** }");
    }

    #[test]
    fn minted_tokens_are_64_lowercase_hex_and_distinct() {
        let a = mint_token();
        let b = mint_token();
        assert_eq!(a.expose().len(), 64);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
        );
        assert_ne!(a.expose(), b.expose());
    }

    #[test]
    fn verify_accepts_only_the_right_token() {
        let hasher = TokenHasher::new(TokenHasher::generate_key());
        let token = mint_token();
        let stored = hasher.hash(token.expose());
        assert!(hasher.verify(token.expose(), &stored));
        assert!(!hasher.verify(mint_token().expose(), &stored));
        assert!(!hasher.verify("", &stored));
        let mut flipped = stored;
        flipped[31] ^= 1;
        assert!(!hasher.verify(token.expose(), &flipped));
        assert!(!hasher.verify_unknown(token.expose()));
    }

    #[test]
    fn hash_depends_on_the_server_key() {
        let a = TokenHasher::new([1; 32]);
        let b = TokenHasher::new([2; 32]);
        assert_ne!(a.hash("t"), b.hash("t"));
        assert!(!b.verify("t", &a.hash("t")));
        assert_eq!(a.hash("t"), *blake3::keyed_hash(&[1; 32], b"t").as_bytes());
        assert_ne!(TokenHasher::generate_key(), TokenHasher::generate_key());
    }

    #[test]
    fn admin_token_comparison() {
        let expected = Secret::new("s3cret-admin");
        assert!(admin_token_matches(&expected, "s3cret-admin"));
        assert!(!admin_token_matches(&expected, "s3cret-admi"));
        assert!(!admin_token_matches(&expected, "s3cret-admin2"));
        assert!(!admin_token_matches(&expected, ""));
        assert!(!admin_token_matches(&Secret::new(""), ""));
    }

    proptest! {
        #[test]
        fn verify_is_hash_equality(a in any::<String>(), b in any::<String>()) {
            let hasher = TokenHasher::new([9; 32]);
            let stored = hasher.hash(&a);
            prop_assert!(hasher.verify(&a, &stored));
            prop_assert_eq!(hasher.verify(&b, &stored), a == b);
            prop_assert!(!hasher.verify_unknown(&a));
            prop_assert_eq!(admin_token_matches(&Secret::new(a.clone()), &b), !a.is_empty() && a == b);
        }
    }
}
