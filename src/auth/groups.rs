//! Group membership over one experiment's group graph (EDEN 07 §7): the
//! typed [`MemberId`] a group or a grant holds, transitive membership, the
//! cycle check for membership changes, and the workers a group reaches.
//!
//! Invariants: every traversal keeps a visited set, so it visits each group at
//! most once and terminates on any graph, including one that already holds a
//! cycle; a member id naming a group that does not exist contributes nothing.
//! A [`MemberId`] is always a well-formed worker or group id; its text form
//! (serde, `Display`) is the id itself, so stored records and wire answers
//! hold the same strings they held before the type.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ids::{GroupId, InvalidId, WorkerId};

/// Read access to one experiment's groups.
pub trait GroupGraph {
    /// Direct members of `group`, or `None` when the group does not exist
    /// (which then has no members).
    fn members(&self, group: &GroupId) -> Option<&[MemberId]>;
}

impl<S: BuildHasher> GroupGraph for HashMap<GroupId, Vec<MemberId>, S> {
    fn members(&self, group: &GroupId) -> Option<&[MemberId]> {
        self.get(group).map(Vec::as_slice)
    }
}

impl GroupGraph for BTreeMap<GroupId, Vec<MemberId>> {
    fn members(&self, group: &GroupId) -> Option<&[MemberId]> {
        self.get(group).map(Vec::as_slice)
    }
}

/// A well-formed group member or grantee: a worker or a group (which need
/// not exist).
///
/// Serde and `Display` use the id's text (`wkr_…`, `grp_…`): a CBOR or JSON
/// text string byte for byte like the `String` it replaces; anything else
/// fails to deserialize.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MemberId {
    /// A `wkr_…` member.
    Worker(WorkerId),
    /// A `grp_…` member; membership through it is transitive.
    Group(GroupId),
}

impl MemberId {
    /// Parses a worker or group id; anything else (including `admin`) is `None`.
    pub fn parse(s: &str) -> Option<Self> {
        WorkerId::parse(s)
            .map(Self::Worker)
            .or_else(|| GroupId::parse(s).map(Self::Group))
    }

    /// The id as it appears on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Worker(id) => id.as_str(),
            Self::Group(id) => id.as_str(),
        }
    }

    /// The group id, if this member is a group.
    pub fn group_id(&self) -> Option<&GroupId> {
        match self {
            Self::Group(id) => Some(id),
            Self::Worker(_) => None,
        }
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemberId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, InvalidId> {
        Self::parse(s).ok_or(InvalidId { kind: "member" })
    }
}

impl TryFrom<String> for MemberId {
    type Error = InvalidId;
    fn try_from(s: String) -> Result<Self, InvalidId> {
        s.parse()
    }
}

impl From<MemberId> for String {
    fn from(m: MemberId) -> String {
        m.as_str().to_owned()
    }
}

impl From<WorkerId> for MemberId {
    fn from(id: WorkerId) -> Self {
        Self::Worker(id)
    }
}

impl From<GroupId> for MemberId {
    fn from(id: GroupId) -> Self {
        Self::Group(id)
    }
}

/// Visits every member of every group reachable from `roots` (roots included),
/// each group once, calling `on_member` with each member; stops and returns
/// `true` as soon as `on_member` does.
fn walk<'a, G>(
    graph: &G,
    roots: impl IntoIterator<Item = &'a GroupId>,
    mut on_member: impl FnMut(&MemberId) -> bool,
) -> bool
where
    G: GroupGraph + ?Sized,
{
    let mut visited: HashSet<GroupId> = HashSet::new();
    let mut pending: Vec<GroupId> = Vec::new();
    for root in roots {
        if visited.insert(*root) {
            pending.push(*root);
        }
    }
    while let Some(group) = pending.pop() {
        let Some(members) = graph.members(&group) else {
            continue;
        };
        for member in members {
            if on_member(member) {
                return true;
            }
            if let MemberId::Group(child) = member
                && visited.insert(*child)
            {
                pending.push(*child);
            }
        }
    }
    false
}

/// Whether `principal` (a worker or a group) is a member of `group`, directly
/// or through nested groups. A group is a member of itself only through a cycle.
pub fn is_transitive_member<G: GroupGraph + ?Sized>(
    graph: &G,
    group: &GroupId,
    principal: &MemberId,
) -> bool {
    is_member_of_any(graph, [group], principal)
}

/// Whether `principal` is a transitive member of at least one of `groups`,
/// in one traversal that visits each group once.
pub fn is_member_of_any<'a, G: GroupGraph + ?Sized>(
    graph: &G,
    groups: impl IntoIterator<Item = &'a GroupId>,
    principal: &MemberId,
) -> bool {
    walk(graph, groups, |member| member == principal)
}

/// Whether adding `new_member` to `group` would close a cycle: `new_member` is
/// `group` itself, or `group` is already reachable from `new_member`.
pub fn would_create_cycle<G: GroupGraph + ?Sized>(
    graph: &G,
    group: &GroupId,
    new_member: &MemberId,
) -> bool {
    match new_member {
        MemberId::Worker(_) => false,
        MemberId::Group(child) => {
            child == group || is_transitive_member(graph, child, &MemberId::Group(*group))
        }
    }
}

/// Every worker that is a transitive member of `group`.
pub fn transitive_workers<G: GroupGraph + ?Sized>(
    graph: &G,
    group: &GroupId,
) -> BTreeSet<WorkerId> {
    let mut workers = BTreeSet::new();
    walk(graph, [group], |member| {
        if let MemberId::Worker(worker) = member {
            workers.insert(*worker);
        }
        false
    });
    workers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn gid(i: usize) -> GroupId {
        GroupId::parse(&format!("grp_{i:0>26}")).unwrap_or_else(|| panic!("bad test group id {i}"))
    }

    fn wkr(i: usize) -> WorkerId {
        WorkerId::parse(&format!("wkr_{i:0>26}"))
            .unwrap_or_else(|| panic!("bad test worker id {i}"))
    }

    /// Group `i` as a member.
    fn g(i: usize) -> MemberId {
        MemberId::Group(gid(i))
    }

    /// Worker `i` as a member.
    fn w(i: usize) -> MemberId {
        MemberId::Worker(wkr(i))
    }

    fn graph(edges: &[(usize, MemberId)]) -> HashMap<GroupId, Vec<MemberId>> {
        let mut graph: HashMap<GroupId, Vec<MemberId>> = HashMap::new();
        for (group, member) in edges {
            graph.entry(gid(*group)).or_default().push(*member);
        }
        graph
    }

    #[test]
    fn direct_and_nested_membership() {
        let graph = graph(&[(0, w(0)), (0, g(1)), (1, g(2)), (2, w(2))]);
        assert!(is_transitive_member(&graph, &gid(0), &w(0)));
        assert!(is_transitive_member(&graph, &gid(0), &w(2)));
        assert!(is_transitive_member(&graph, &gid(0), &g(2)));
        assert!(!is_transitive_member(&graph, &gid(2), &w(0)));
        assert!(!is_transitive_member(&graph, &gid(0), &g(0)));
        assert!(
            !is_transitive_member(&graph, &gid(9), &w(0)),
            "missing group has no members"
        );
        let expected: BTreeSet<WorkerId> = [wkr(0), wkr(2)].into();
        assert_eq!(transitive_workers(&graph, &gid(0)), expected);
    }

    #[test]
    fn cycle_through_three_groups_is_detected() {
        let graph = graph(&[(0, g(1)), (1, g(2))]);
        assert!(would_create_cycle(&graph, &gid(2), &g(0)));
        assert!(
            would_create_cycle(&graph, &gid(1), &g(1)),
            "self-membership"
        );
        assert!(would_create_cycle(&BTreeMap::new(), &gid(5), &g(5)));
        assert!(
            !would_create_cycle(&graph, &gid(0), &g(2)),
            "shortcut edge is no cycle"
        );
        assert!(!would_create_cycle(&graph, &gid(2), &w(0)));
        assert!(!would_create_cycle(&graph, &gid(2), &g(7)), "unknown group");
    }

    #[test]
    fn pre_existing_cycle_does_not_hang() {
        let graph = graph(&[(0, g(1)), (1, g(2)), (2, g(0)), (2, g(2)), (1, w(1))]);
        assert!(!is_transitive_member(&graph, &gid(0), &w(9)));
        assert!(is_transitive_member(&graph, &gid(2), &w(1)));
        assert!(
            is_transitive_member(&graph, &gid(0), &g(0)),
            "member of itself through the cycle"
        );
        assert_eq!(transitive_workers(&graph, &gid(0)).len(), 1);
        assert!(would_create_cycle(&graph, &gid(0), &g(2)));
    }

    #[test]
    fn member_id_parsing() {
        let text = wkr(3).to_string();
        assert_eq!(MemberId::parse(&text), Some(w(3)));
        assert_eq!(MemberId::parse(gid(3).as_str()), Some(g(3)));
        assert_eq!(MemberId::parse(&text).map(|m| m.to_string()), Some(text));
        assert_eq!(g(3).group_id(), Some(&gid(3)));
        assert_eq!(w(3).group_id(), None);
        for bad in [
            "admin",
            "",
            "exp_00000000000000000000000000",
            "WKR_00000000000000000000000003",
            "wkr_0000000000000000000000000i",
        ] {
            assert_eq!(MemberId::parse(bad), None, "{bad:?}");
            assert_eq!(
                bad.parse::<MemberId>(),
                Err(InvalidId { kind: "member" }),
                "{bad:?}"
            );
        }
    }

    /// Serde is the plain id text, in JSON and in CBOR, byte for byte what a
    /// `String` holding the id encodes to; malformed text is refused.
    #[test]
    fn member_id_serde_is_the_id_text() {
        for m in [w(7), g(8)] {
            let text = m.to_string();
            assert_eq!(
                serde_json::to_string(&m).ok(),
                serde_json::to_string(&text).ok()
            );
            let (mut typed, mut plain) = (Vec::new(), Vec::new());
            assert!(ciborium::into_writer(&m, &mut typed).is_ok());
            assert!(ciborium::into_writer(&text, &mut plain).is_ok());
            assert_eq!(typed, plain);
            let back: Result<MemberId, _> = ciborium::from_reader(&plain[..]);
            assert_eq!(back.ok(), Some(m));
            let back: Result<MemberId, _> = serde_json::from_str(&format!("\"{text}\""));
            assert_eq!(back.ok(), Some(m));
        }
        assert!(serde_json::from_str::<MemberId>("\"admin\"").is_err());
        let mut junk = Vec::new();
        assert!(ciborium::into_writer(&"grp_nope", &mut junk).is_ok());
        assert!(ciborium::from_reader::<MemberId, _>(&junk[..]).is_err());
    }

    const GROUPS: usize = 5;
    const WORKERS: usize = 3;

    /// Every id that may appear as a member: existing groups, one missing group, workers.
    fn universe() -> Vec<MemberId> {
        let mut ids: Vec<MemberId> = (0..=GROUPS).map(g).collect();
        ids.extend((0..WORKERS).map(w));
        ids
    }

    fn build(edges: &[(usize, usize)]) -> HashMap<GroupId, Vec<MemberId>> {
        let ids = universe();
        let mut graph: HashMap<GroupId, Vec<MemberId>> =
            (0..GROUPS).map(|i| (gid(i), Vec::new())).collect();
        for &(from, to) in edges {
            if let Some(members) = graph.get_mut(&gid(from)) {
                members.push(ids[to]);
            }
        }
        graph
    }

    /// Reference model: iterate closure[g] = direct(g) ∪ closure(member groups) to a fixpoint.
    fn naive_closure(
        graph: &HashMap<GroupId, Vec<MemberId>>,
    ) -> HashMap<GroupId, BTreeSet<MemberId>> {
        let mut closure: HashMap<GroupId, BTreeSet<MemberId>> = graph
            .iter()
            .map(|(k, v)| (*k, v.iter().copied().collect()))
            .collect();
        loop {
            let mut changed = false;
            for group in graph.keys() {
                let mut next = closure[group].clone();
                for member in &closure[group] {
                    if let Some(sub) = member.group_id().and_then(|m| closure.get(m)) {
                        next.extend(sub.iter().copied());
                    }
                }
                changed |= next.len() != closure[group].len();
                closure.insert(*group, next);
            }
            if !changed {
                return closure;
            }
        }
    }

    fn has_cycle(graph: &HashMap<GroupId, Vec<MemberId>>) -> bool {
        naive_closure(graph)
            .iter()
            .any(|(k, reach)| reach.contains(&MemberId::Group(*k)))
    }

    proptest! {
        #[test]
        fn membership_matches_naive_closure(edges in prop::collection::vec((0..GROUPS, 0..GROUPS + 1 + WORKERS), 0..16)) {
            let graph = build(&edges);
            let closure = naive_closure(&graph);
            for i in 0..=GROUPS {
                let group = gid(i);
                let reach = closure.get(&group).cloned().unwrap_or_default();
                for id in universe() {
                    prop_assert_eq!(is_transitive_member(&graph, &group, &id), reach.contains(&id), "{} in {}", id, group);
                }
                let workers: BTreeSet<MemberId> = transitive_workers(&graph, &group).into_iter().map(MemberId::Worker).collect();
                let expected: BTreeSet<MemberId> = reach.into_iter().filter(|m| matches!(m, MemberId::Worker(_))).collect();
                prop_assert_eq!(workers, expected);
            }
        }

        #[test]
        fn cycle_check_keeps_the_graph_acyclic(edges in prop::collection::vec((0..GROUPS, 0..GROUPS + 1 + WORKERS), 0..24)) {
            let ids = universe();
            let mut graph = build(&[]);
            for (from, to) in edges {
                let predicted = would_create_cycle(&graph, &gid(from), &ids[to]);
                let mut trial = graph.clone();
                if let Some(members) = trial.get_mut(&gid(from)) {
                    members.push(ids[to]);
                }
                prop_assert_eq!(predicted, has_cycle(&trial));
                if !predicted {
                    graph = trial;
                }
            }
            prop_assert!(!has_cycle(&graph));
        }
    }
}
