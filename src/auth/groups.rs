//! Group membership over one experiment's group graph (EDEN 07 §7): transitive
//! membership, the cycle check for membership changes, and the workers a group
//! reaches.
//!
//! Invariants: every traversal keeps a visited set, so it visits each group at
//! most once and terminates on any graph, including one that already holds a
//! cycle; a member id naming a group that does not exist contributes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasher;

use super::ids::{GroupId, WorkerId};

/// Read access to one experiment's groups.
pub trait GroupGraph {
    /// Direct members of `group` as raw id strings (`wkr_…` or `grp_…`), or
    /// `None` when the group does not exist (which then has no members).
    fn members(&self, group: &GroupId) -> Option<&[String]>;
}

impl<S: BuildHasher> GroupGraph for HashMap<GroupId, Vec<String>, S> {
    fn members(&self, group: &GroupId) -> Option<&[String]> {
        self.get(group).map(Vec::as_slice)
    }
}

impl GroupGraph for BTreeMap<GroupId, Vec<String>> {
    fn members(&self, group: &GroupId) -> Option<&[String]> {
        self.get(group).map(Vec::as_slice)
    }
}

/// A well-formed group member: a worker or a group (which need not exist).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Visits every member of every group reachable from `roots` (roots included),
/// each group once, calling `on_member` with each member id; stops and returns
/// `true` as soon as `on_member` does.
fn walk<'a, G>(
    graph: &G,
    roots: impl IntoIterator<Item = &'a GroupId>,
    mut on_member: impl FnMut(&str) -> bool,
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
            if !visited.contains(member.as_str())
                && let Some(child) = GroupId::parse(member)
            {
                visited.insert(child);
                pending.push(child);
            }
        }
    }
    false
}

/// Whether `principal` (a worker or group id) is a member of `group`, directly
/// or through nested groups. A group is a member of itself only through a cycle.
pub fn is_transitive_member<G: GroupGraph + ?Sized>(
    graph: &G,
    group: &GroupId,
    principal: &str,
) -> bool {
    is_member_of_any(graph, [group], principal)
}

/// Whether `principal` is a transitive member of at least one of `groups`,
/// in one traversal that visits each group once.
pub fn is_member_of_any<'a, G: GroupGraph + ?Sized>(
    graph: &G,
    groups: impl IntoIterator<Item = &'a GroupId>,
    principal: &str,
) -> bool {
    walk(graph, groups, |member| member == principal)
}

/// Whether adding `new_member` to `group` would close a cycle: `new_member` is
/// `group` itself, or `group` is already reachable from `new_member`.
pub fn would_create_cycle<G: GroupGraph + ?Sized>(
    graph: &G,
    group: &GroupId,
    new_member: &str,
) -> bool {
    if new_member == group.as_str() {
        return true;
    }
    GroupId::parse(new_member)
        .is_some_and(|child| is_transitive_member(graph, &child, group.as_str()))
}

/// Every worker that is a transitive member of `group`.
pub fn transitive_workers<G: GroupGraph + ?Sized>(
    graph: &G,
    group: &GroupId,
) -> BTreeSet<WorkerId> {
    let mut workers = BTreeSet::new();
    walk(graph, [group], |member| {
        if let Some(worker) = WorkerId::parse(member) {
            workers.insert(worker);
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

    fn wid(i: usize) -> String {
        format!("wkr_{i:0>26}")
    }

    fn graph(edges: &[(usize, &str)]) -> HashMap<GroupId, Vec<String>> {
        let mut g: HashMap<GroupId, Vec<String>> = HashMap::new();
        for (group, member) in edges {
            g.entry(gid(*group)).or_default().push((*member).to_owned());
        }
        g
    }

    #[test]
    fn direct_and_nested_membership() {
        let (g1, g2) = (gid(1).to_string(), gid(2).to_string());
        let g = graph(&[(0, &wid(0)), (0, &g1), (1, &g2), (2, &wid(2))]);
        assert!(is_transitive_member(&g, &gid(0), &wid(0)));
        assert!(is_transitive_member(&g, &gid(0), &wid(2)));
        assert!(is_transitive_member(&g, &gid(0), &g2));
        assert!(!is_transitive_member(&g, &gid(2), &wid(0)));
        assert!(!is_transitive_member(&g, &gid(0), gid(0).as_str()));
        assert!(
            !is_transitive_member(&g, &gid(9), &wid(0)),
            "missing group has no members"
        );
        let expected: BTreeSet<WorkerId> = [0, 2]
            .iter()
            .filter_map(|&i| WorkerId::parse(&wid(i)))
            .collect();
        assert_eq!(transitive_workers(&g, &gid(0)), expected);
    }

    #[test]
    fn cycle_through_three_groups_is_detected() {
        let (g1, g2) = (gid(1).to_string(), gid(2).to_string());
        let g = graph(&[(0, &g1), (1, &g2)]);
        assert!(would_create_cycle(&g, &gid(2), gid(0).as_str()));
        assert!(would_create_cycle(&g, &gid(1), &g1), "self-membership");
        assert!(would_create_cycle(
            &BTreeMap::new(),
            &gid(5),
            gid(5).as_str()
        ));
        assert!(
            !would_create_cycle(&g, &gid(0), &g2),
            "shortcut edge is no cycle"
        );
        assert!(!would_create_cycle(&g, &gid(2), &wid(0)));
        assert!(
            !would_create_cycle(&g, &gid(2), gid(7).as_str()),
            "unknown group"
        );
    }

    #[test]
    fn pre_existing_cycle_does_not_hang() {
        let (g0, g1, g2) = (gid(0).to_string(), gid(1).to_string(), gid(2).to_string());
        let g = graph(&[(0, &g1), (1, &g2), (2, &g0), (2, &g2), (1, &wid(1))]);
        assert!(!is_transitive_member(&g, &gid(0), &wid(9)));
        assert!(is_transitive_member(&g, &gid(2), &wid(1)));
        assert!(
            is_transitive_member(&g, &gid(0), &g0),
            "member of itself through the cycle"
        );
        assert_eq!(transitive_workers(&g, &gid(0)).len(), 1);
        assert!(would_create_cycle(&g, &gid(0), &g2));
    }

    #[test]
    fn member_id_parsing() {
        assert!(matches!(
            MemberId::parse(&wid(3)),
            Some(MemberId::Worker(_))
        ));
        assert!(matches!(
            MemberId::parse(gid(3).as_str()),
            Some(MemberId::Group(_))
        ));
        assert_eq!(
            MemberId::parse(&wid(3)).map(|m| m.to_string()),
            Some(wid(3))
        );
        assert_eq!(MemberId::parse("admin"), None);
        assert_eq!(MemberId::parse("exp_00000000000000000000000000"), None);
    }

    const GROUPS: usize = 5;
    const WORKERS: usize = 3;

    /// Every id that may appear as a member: existing groups, one missing group, workers.
    fn universe() -> Vec<String> {
        let mut ids: Vec<String> = (0..=GROUPS).map(|i| gid(i).to_string()).collect();
        ids.extend((0..WORKERS).map(wid));
        ids
    }

    fn build(edges: &[(usize, usize)]) -> HashMap<GroupId, Vec<String>> {
        let ids = universe();
        let mut g: HashMap<GroupId, Vec<String>> =
            (0..GROUPS).map(|i| (gid(i), Vec::new())).collect();
        for &(from, to) in edges {
            if let Some(members) = g.get_mut(&gid(from)) {
                members.push(ids[to].clone());
            }
        }
        g
    }

    /// Reference model: iterate closure[g] = direct(g) ∪ closure(member groups) to a fixpoint.
    fn naive_closure(g: &HashMap<GroupId, Vec<String>>) -> HashMap<GroupId, BTreeSet<String>> {
        let mut closure: HashMap<GroupId, BTreeSet<String>> = g
            .iter()
            .map(|(k, v)| (*k, v.iter().cloned().collect()))
            .collect();
        loop {
            let mut changed = false;
            for group in g.keys() {
                let mut next = closure[group].clone();
                for member in &closure[group] {
                    if let Some(sub) = GroupId::parse(member).and_then(|m| closure.get(&m)) {
                        next.extend(sub.iter().cloned());
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

    fn has_cycle(g: &HashMap<GroupId, Vec<String>>) -> bool {
        naive_closure(g)
            .iter()
            .any(|(k, reach)| reach.contains(k.as_str()))
    }

    proptest! {
        #[test]
        fn membership_matches_naive_closure(edges in prop::collection::vec((0..GROUPS, 0..GROUPS + 1 + WORKERS), 0..16)) {
            let g = build(&edges);
            let closure = naive_closure(&g);
            for i in 0..=GROUPS {
                let group = gid(i);
                let reach = closure.get(&group).cloned().unwrap_or_default();
                for id in universe() {
                    prop_assert_eq!(is_transitive_member(&g, &group, &id), reach.contains(&id), "{} in {}", id, group);
                }
                let workers: BTreeSet<String> = transitive_workers(&g, &group).into_iter().map(String::from).collect();
                let expected: BTreeSet<String> = reach.into_iter().filter(|m| WorkerId::is_valid(m)).collect();
                prop_assert_eq!(workers, expected);
            }
        }

        #[test]
        fn cycle_check_keeps_the_graph_acyclic(edges in prop::collection::vec((0..GROUPS, 0..GROUPS + 1 + WORKERS), 0..24)) {
            let ids = universe();
            let mut g = build(&[]);
            for (from, to) in edges {
                let predicted = would_create_cycle(&g, &gid(from), &ids[to]);
                let mut trial = g.clone();
                if let Some(members) = trial.get_mut(&gid(from)) {
                    members.push(ids[to].clone());
                }
                prop_assert_eq!(predicted, has_cycle(&trial));
                if !predicted {
                    g = trial;
                }
            }
            prop_assert!(!has_cycle(&g));
        }
    }
}
