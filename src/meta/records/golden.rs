//! Records with grants and group members, as bytes written by the code
//! before [`MemberId`]: they must decode to the typed fields and encode back
//! byte for byte (a store written before the type reads and rewrites the
//! same records).

use super::*;
use crate::auth::{GroupId, WorkerId};

const GRANTED_WORKER: &str = "wkr_00000000000000000000000002";
const GRANTED_GROUP: &str = "grp_rstvwxyz0123456789abcdefgh";

/// An `artifacts-v1` value with a worker and a group grant, as encoded
/// before the grants were typed (hex of the CBOR).
const ARTIFACT_CBOR: &[&str] = &[
    "ad686d616e6966657374582083d9dab06011479163c7c4d5fa735f911bac86729f56aaa115b7eed2",
    "eb66e0226473697a65036c636f6e74656e745f747970656a746578742f706c61696e6866696c656e",
    "616d6565662e7478746a637265617465645f6279781e776b725f3031323334353637383961626364",
    "656667686a6b6d6e707172736d637265617465645f61745f6e731b17979cfe3d85cd1566626c616b",
    "653358206437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d8566736861",
    "32353698200505050505050505050505050505050505050505050505050505050505050505666772",
    "616e747382781e776b725f3030303030303030303030303030303030303030303030303032781e67",
    "72705f727374767778797a3031323334353637383961626364656667686d657870697265735f6174",
    "5f6e731b18fae27693b40000656465647570a56d6c6f676963616c5f6279746573036d6e65775f72",
    "61775f627974657303706e65775f73746f7265645f627974657303666368756e6b73016a6e65775f",
    "6368756e6b73016f6469676573745f7665726966696564f56d76697369626c655f6465647570a46d",
    "6c6f676963616c5f627974657303666368756e6b73016a6e65775f6368756e6b73016d6e65775f72",
    "61775f627974657303",
];

/// A `groups-v1` value with a group and a worker member, as encoded before
/// the members were typed.
const GROUP_CBOR: &[&str] = &[
    "a4646e616d656772656164657273676d656d6265727382781e6772705f727374767778797a303132",
    "333435363738396162636465666768781e776b725f30303030303030303030303030303030303030",
    "303030303030326a637265617465645f61741b17979cfe3d7ed4c06a637265617465645f62796561",
    "646d696e",
];

fn bytes(hex_lines: &[&str]) -> Vec<u8> {
    hex::decode(hex_lines.concat()).expect("golden hex")
}

fn members() -> [MemberId; 2] {
    [
        MemberId::Worker(WorkerId::from_static(GRANTED_WORKER)),
        MemberId::Group(GroupId::from_static(GRANTED_GROUP)),
    ]
}

#[test]
fn artifact_grants_decode_typed_and_encode_identically() {
    let old = bytes(ARTIFACT_CBOR);
    let rec: ArtifactRecord = ciborium::from_reader(&old[..]).expect("old record decodes");
    assert_eq!(rec.grants, members());
    assert_eq!(
        rec.created_by,
        Principal::parse("wkr_0123456789abcdefghjkmnpqrs").expect("principal")
    );
    assert_eq!(
        rec.expires_at,
        Some(Timestamp::from_unix_secs(1_800_000_000))
    );
    assert_eq!(crate::meta::encode(&rec).expect("encode"), old);
}

#[test]
fn group_members_decode_typed_and_encode_identically() {
    let old = bytes(GROUP_CBOR);
    let rec: GroupRecord = ciborium::from_reader(&old[..]).expect("old record decodes");
    let [worker, group] = members();
    assert_eq!(rec.members, vec![group, worker]);
    assert_eq!(rec.name, "readers");
    assert_eq!(rec.created_by, Principal::Admin);
    assert_eq!(crate::meta::encode(&rec).expect("encode"), old);
}

/// A grant that is no worker or group id was never written by any version
/// (every write path validated it); a record holding one is corrupt and
/// fails to decode rather than being read as granting nothing.
#[test]
fn malformed_stored_member_is_refused() {
    #[derive(Serialize)]
    struct Stringly {
        name: String,
        members: Vec<String>,
        created_at: i64,
        created_by: String,
    }
    let junk = Stringly {
        name: "g".into(),
        members: vec![GRANTED_WORKER.into(), "admin".into()],
        created_at: 1,
        created_by: "admin".into(),
    };
    let encoded = crate::meta::encode(&junk).expect("encode");
    assert!(ciborium::from_reader::<GroupRecord, _>(&encoded[..]).is_err());
}
