//! The JSON shapes of both wire surfaces, as serde types shared by the
//! server's answers (`http/`) and the client (`client/`), so neither side
//! writes or reads a field by hand.
//!
//! `v0` holds the EDEN contract's bodies (`eden-v0-contract.md`), `v1` the
//! native API's (`docs/api.md`), `problem` the problem+json error body of
//! both. These are wire types only: converting stored records into them,
//! with the visibility rules that apply (invariant 4), is `http/`'s job.
//!
//! Compatibility: fields are declared in alphabetical order, which is the
//! order the server wrote them in before these types existed (`serde_json`
//! maps sort their keys), so answers stay byte for byte the same; optional
//! fields that were omitted when absent are still omitted, and those that
//! were `null` are still `null`. Decoding ignores unknown fields, so a
//! client stays able to read a newer server.

pub mod problem;
pub mod v0;
pub mod v1;

/// Scheme and path prefix of artifact URIs (`eden://artifacts/<32 hex>`),
/// on both surfaces.
pub const ARTIFACT_URI_PREFIX: &str = "eden://artifacts/";

/// The URI of artifact `id` (32 lowercase hex).
pub fn artifact_uri(id: &str) -> String {
    format!("{ARTIFACT_URI_PREFIX}{id}")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::{v0, v1};

    /// Before these types, answers were `serde_json::Value`s, whose keys
    /// serialise sorted. A type whose fields are declared in sorted order
    /// writes the same bytes; this checks every answer type, with its
    /// optional fields present.
    fn same_as_sorted(v: &impl Serialize) {
        let direct = serde_json::to_string(v).unwrap();
        let sorted = serde_json::to_value(v).unwrap().to_string();
        assert_eq!(direct, sorted);
    }

    #[test]
    fn answers_keep_the_bytes_of_sorted_maps() {
        let s = |x: &str| x.to_string();
        let chunker = v1::Chunker {
            algorithm: s("fastcdc-2020"),
            avg_bytes: 2,
            max_bytes: 3,
            min_bytes: 1,
            normalization: 1,
        };
        let artifact = v1::Artifact {
            chunks: 1,
            content_type: s("text/plain"),
            created_at: s("t"),
            created_by: s("admin"),
            dedup: v1::Dedup {
                chunks: 1,
                logical_bytes: 2,
                new_chunks: Some(1),
                new_raw_bytes: Some(2),
            },
            digest_verified: true,
            digests: v1::Digests {
                blake3: s("blake3:00"),
                sha256: s("sha256:00"),
            },
            expires_at: Some(s("t")),
            filename: Some(s("f")),
            grants: vec![s("wkr_x")],
            id: s("00"),
            labels: [(s("stage"), s("eval"))].into(),
            size_bytes: 2,
            uri: s("eden://artifacts/00"),
        };
        same_as_sorted(&artifact);
        same_as_sorted(&v1::ArtifactPage {
            artifacts: vec![artifact],
            next_cursor: None,
        });
        same_as_sorted(&v1::Session {
            chunker: chunker.clone(),
            created_at: s("t"),
            expires_at: s("t"),
            max_batch_bytes: 1,
            max_bytes: 2,
            session_id: s("00"),
            size: None,
        });
        same_as_sorted(&v1::SessionStatus {
            chunker,
            created_at: s("t"),
            expires_at: s("t"),
            max_batch_bytes: 1,
            max_bytes: 2,
            received: vec![s("ab")],
            received_bytes: 3,
            received_chunks: 1,
            received_next: Some(s("ab")),
            session_id: s("00"),
            size: Some(2),
        });
        same_as_sorted(&v1::Missing {
            missing: vec![s("ab")],
        });
        same_as_sorted(&v1::BatchReceipt {
            received: 1,
            stored_new: 1,
        });
        same_as_sorted(&v1::InFlight {
            open_packs: 1,
            operations: 2,
            pinned_chunks: 3,
            reserved_bytes: 4,
        });
        same_as_sorted(&v1::Quota {
            committed_bytes: 1,
            experiment: s("exp_x"),
            in_flight_bytes: 2,
            quota_bytes: Some(9),
            session_bytes: 3,
            used_bytes: 6,
        });
        same_as_sorted(&v1::Backup {
            bytes: 1,
            files: 2,
            name: s("n"),
        });
        same_as_sorted(&v0::Deposited {
            artifacts_uri: s("eden://artifacts/00"),
            content_type: s("text/plain"),
            size_bytes: 1,
        });
        let worker = v0::Worker {
            experiment_id: s("exp_x"),
            labels: BTreeMap::from([(s("k"), s("v"))]),
            name: s("n"),
            registered_at: s("t"),
            registered_by: s("admin"),
            registration_token: Some(s("tok")),
            worker_id: s("wkr_x"),
        };
        same_as_sorted(&worker);
        same_as_sorted(&v0::Workers {
            workers: vec![worker],
        });
        same_as_sorted(&v0::WhoAmI {
            name: s("n"),
            worker_id: s("wkr_x"),
        });
        let group = v0::Group {
            created_at: s("t"),
            created_by: s("admin"),
            experiment_id: s("exp_x"),
            group_id: s("grp_x"),
            members: vec![s("wkr_x")],
            name: s("n"),
        };
        same_as_sorted(&group);
        same_as_sorted(&v0::Groups {
            groups: vec![group],
        });
    }

    #[test]
    fn absent_optionals_are_omitted_or_null_as_before() {
        let w = v0::Worker {
            experiment_id: "e".into(),
            labels: BTreeMap::new(),
            name: String::new(),
            registered_at: "t".into(),
            registered_by: "admin".into(),
            registration_token: None,
            worker_id: "w".into(),
        };
        assert_eq!(
            serde_json::to_string(&w).unwrap(),
            r#"{"experiment_id":"e","registered_at":"t","registered_by":"admin","worker_id":"w"}"#
        );
        let page = v1::ArtifactPage {
            artifacts: vec![],
            next_cursor: None,
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"artifacts":[],"next_cursor":null}"#
        );
    }
}
