//! Parsing of the `Authorization: Bearer <principal>:<secret>` header
//! (EDEN v0 contract §1) into [`Credentials`]. Syntax only: checking the secret
//! is the engine's job, with [`crate::auth::token`].
//!
//! Invariants: the split is at the first `:`, so secrets may contain `:`; only
//! `admin` and well-formed `wkr_…` principals are accepted, anything else is
//! refused before any lookup; no error, `Debug` or `Display` output carries the
//! secret.

use super::ids::{Principal, WorkerId};
use super::token::Secret;

/// A principal and the secret it presented, not yet verified.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Who the bearer claims to be.
    pub principal: Principal,
    /// The presented secret (redacted in `Debug`).
    pub secret: Secret,
}

/// Why an `Authorization` header was refused; every variant is a 401 `unauthorized`.
///
/// Variants carry no data, so the header (and its secret) can never end up in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BearerError {
    /// No `Authorization` header.
    #[error("missing Authorization header")]
    Missing,
    /// Not `Bearer <principal>:<secret>` with both parts non-empty printable ASCII.
    #[error("malformed Authorization header")]
    Malformed,
    /// The principal is neither `admin` nor a worker id.
    #[error("unknown kind of principal")]
    UnknownPrincipalKind,
}

/// Whether `s` could travel as the secret of a bearer credential: non-empty,
/// visible ASCII only (`!` to `~`). Useful to vet a configured admin token.
pub fn is_wire_safe_secret(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic())
}

/// Parses the value of the `Authorization` header (`None` when absent).
///
/// The scheme `Bearer` matches case-insensitively; spaces or tabs around the
/// credential are tolerated. The credential is split at the first `:`: the
/// principal must be exactly `admin` or a `wkr_…` id, and the secret a
/// non-empty run of visible ASCII (it may itself contain `:`).
pub fn parse_authorization(header_value: Option<&str>) -> Result<Credentials, BearerError> {
    let value = header_value.ok_or(BearerError::Missing)?;
    let value = value.trim_matches(is_blank);
    let (scheme, credential) = value.split_once(is_blank).ok_or(BearerError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerError::Malformed);
    }
    let credential = credential.trim_start_matches(is_blank);
    let (principal, secret) = credential.split_once(':').ok_or(BearerError::Malformed)?;
    if principal.is_empty() || !is_wire_safe_secret(secret) {
        return Err(BearerError::Malformed);
    }
    let principal = if principal == Principal::ADMIN {
        Principal::Admin
    } else if let Some(worker) = WorkerId::parse(principal) {
        Principal::Worker(worker)
    } else if principal.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(BearerError::UnknownPrincipalKind);
    } else {
        return Err(BearerError::Malformed);
    };
    Ok(Credentials {
        principal,
        secret: Secret::new(secret),
    })
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: &str = "wkr_0123456789abcdefghjkmnpqrs";

    fn parse(v: &str) -> Result<Credentials, BearerError> {
        parse_authorization(Some(v))
    }

    #[test]
    fn admin_and_worker() {
        let c = parse("Bearer admin:tok").ok();
        assert_eq!(c.as_ref().map(|c| &c.principal), Some(&Principal::Admin));
        assert_eq!(c.as_ref().map(|c| c.secret.expose()), Some("tok"));

        let c = parse(&format!("Bearer {W}:abc")).ok();
        assert_eq!(
            c.as_ref().map(|c| c.principal.to_string()),
            Some(W.to_owned())
        );
        assert_eq!(c.as_ref().map(|c| c.secret.expose()), Some("abc"));
    }

    #[test]
    fn lenient_scheme_and_spacing() {
        for v in [
            "bearer admin:x",
            "BEARER admin:x",
            "Bearer   admin:x",
            "Bearer\tadmin:x",
            "  Bearer admin:x  ",
        ] {
            assert_eq!(
                parse(v).ok().map(|c| c.secret.expose().to_owned()),
                Some("x".to_owned()),
                "{v:?}"
            );
        }
    }

    #[test]
    fn secret_keeps_everything_after_the_first_colon() {
        let c = parse("Bearer admin:a:b::c").ok();
        assert_eq!(
            c.map(|c| c.secret.expose().to_owned()),
            Some("a:b::c".to_owned())
        );
    }

    #[test]
    fn malformed_inputs() {
        assert_eq!(parse_authorization(None).err(), Some(BearerError::Missing));
        for v in [
            "",
            "Bearer",
            "Bearer ",
            "Bearer admin:",
            "Bearer :secret",
            "Bearer admin",
            "Basic admin:x",
            "Bearerx admin:x",
            "Bearer admin:se cret",
            "Bearer admin:sé",
            "Bearer admin:a\u{0}",
            "Bearer adm\u{e9}n:x",
        ] {
            assert_eq!(parse(v).err(), Some(BearerError::Malformed), "{v:?}");
        }
    }

    #[test]
    fn unknown_principal_kinds() {
        for v in [
            "Bearer Admin:x",
            "Bearer grp_0123456789abcdefghjkmnpqrs:x",
            "Bearer wkr_short:x",
            "Bearer system:x",
        ] {
            assert_eq!(
                parse(v).err(),
                Some(BearerError::UnknownPrincipalKind),
                "{v:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = parse("Bearer admin:TOPSECRET").ok();
        assert!(c.is_some());
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }

    proptest! {
        #[test]
        fn any_visible_ascii_secret_round_trips(secret in "[!-~]{1,80}") {
            let c = parse_authorization(Some(&format!("Bearer {W}:{secret}")));
            prop_assert_eq!(c.as_ref().map(|c| c.secret.expose()).ok(), Some(secret.as_str()));
            let other = parse_authorization(Some(&format!("Bearer {W}:x")));
            prop_assert_eq!(format!("{c:?}"), format!("{other:?}"), "Debug must not depend on the secret");
        }

        #[test]
        fn errors_never_echo_input(value in any::<String>()) {
            if let Err(e) = parse_authorization(Some(&value)) {
                let text = e.to_string();
                prop_assert!(
                    ["missing Authorization header", "malformed Authorization header", "unknown kind of principal"]
                        .contains(&text.as_str())
                );
            }
        }
    }
}
