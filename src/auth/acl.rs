//! Per-artifact access rules within one experiment: who may read an artifact
//! and who may manage it (delete, grant).
//!
//! Invariant 4 (Isolation) within an experiment: an artifact is readable only by
//! the admin bearer, its depositor, transitive members of the experiment's
//! `admins` group, and grantees (workers listed directly, or transitive members
//! of a listed group). Every other caller is [`ReadDecision::Forbidden`].
//! Cross-experiment access never reaches these rules: the engine answers 404
//! first.

use super::groups::{GroupGraph, MemberId, is_member_of_any};
use super::ids::{GroupId, Principal};

/// The outcome of a read check; `Forbidden` becomes 403 `forbidden`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadDecision {
    /// The caller may read the artifact.
    Allow,
    /// The caller is authenticated but may not read the artifact.
    Forbidden,
}

impl ReadDecision {
    /// Whether this is [`ReadDecision::Allow`].
    pub fn is_allowed(self) -> bool {
        self == Self::Allow
    }
}

/// Decides whether `caller` may read an artifact deposited by `created_by`.
///
/// `grants` are the artifact's grantees (workers, and groups whose transitive
/// members read); `graph` holds the experiment's groups; `admins_group` is the
/// experiment's group named `admins`, if one exists.
pub fn can_read<G: GroupGraph + ?Sized>(
    caller: &Principal,
    created_by: &Principal,
    grants: &[MemberId],
    graph: &G,
    admins_group: Option<&GroupId>,
) -> ReadDecision {
    if can_manage(caller, created_by) {
        return ReadDecision::Allow;
    }
    let Some(worker) = caller.worker_id() else {
        return ReadDecision::Forbidden;
    };
    let member = MemberId::Worker(*worker);
    if grants.contains(&member) {
        return ReadDecision::Allow;
    }
    let granted_groups = grants.iter().filter_map(MemberId::group_id);
    let roots = admins_group.into_iter().chain(granted_groups);
    if is_member_of_any(graph, roots, &member) {
        ReadDecision::Allow
    } else {
        ReadDecision::Forbidden
    }
}

/// Whether `caller` may manage (delete, grant on) an artifact deposited by
/// `created_by`: the admin bearer or the depositor.
pub fn can_manage(caller: &Principal, created_by: &Principal) -> bool {
    caller.is_admin() || caller == created_by
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ids::WorkerId;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn gid(i: usize) -> GroupId {
        GroupId::parse(&format!("grp_{i:0>26}")).unwrap_or_else(|| panic!("bad test group id {i}"))
    }

    fn wkr(i: usize) -> WorkerId {
        WorkerId::parse(&format!("wkr_{i:0>26}"))
            .unwrap_or_else(|| panic!("bad test worker id {i}"))
    }

    fn worker(i: usize) -> Principal {
        Principal::Worker(wkr(i))
    }

    /// Group `i` as a member or grantee.
    fn g(i: usize) -> MemberId {
        MemberId::Group(gid(i))
    }

    /// Worker `i` as a member or grantee.
    fn w(i: usize) -> MemberId {
        MemberId::Worker(wkr(i))
    }

    type Graph = HashMap<GroupId, Vec<MemberId>>;

    fn graph(edges: &[(usize, MemberId)]) -> Graph {
        let mut graph = Graph::new();
        for (group, member) in edges {
            graph.entry(gid(*group)).or_default().push(*member);
        }
        graph
    }

    const ALLOW: ReadDecision = ReadDecision::Allow;
    const FORBIDDEN: ReadDecision = ReadDecision::Forbidden;

    #[test]
    fn admin_and_depositor_may_read_and_manage() {
        let graph = Graph::new();
        let depositor = worker(1);
        assert_eq!(
            can_read(&Principal::Admin, &depositor, &[], &graph, None),
            ALLOW
        );
        assert_eq!(can_read(&depositor, &depositor, &[], &graph, None), ALLOW);
        assert_eq!(
            can_read(&worker(2), &depositor, &[], &graph, None),
            FORBIDDEN
        );
        assert_eq!(
            can_read(&worker(2), &Principal::Admin, &[], &graph, None),
            FORBIDDEN
        );
        assert!(can_manage(&Principal::Admin, &depositor));
        assert!(can_manage(&depositor, &depositor));
        assert!(can_manage(&Principal::Admin, &Principal::Admin));
        assert!(!can_manage(&worker(2), &depositor));
        assert!(!can_manage(&depositor, &Principal::Admin));
    }

    #[test]
    fn admins_group_members_read_transitively() {
        let graph = graph(&[(0, g(1)), (1, w(5))]);
        let admins = gid(0);
        assert_eq!(
            can_read(&worker(5), &worker(1), &[], &graph, Some(&admins)),
            ALLOW
        );
        assert_eq!(
            can_read(&worker(6), &worker(1), &[], &graph, Some(&admins)),
            FORBIDDEN
        );
        assert_eq!(
            can_read(&worker(5), &worker(1), &[], &graph, None),
            FORBIDDEN
        );
        // Membership in admins does not let a worker manage.
        assert!(!can_manage(&worker(5), &worker(1)));
    }

    #[test]
    fn direct_and_group_grants() {
        let graph = graph(&[(3, g(4)), (4, w(7))]);
        let direct = [w(2)];
        assert_eq!(
            can_read(&worker(2), &worker(1), &direct, &graph, None),
            ALLOW
        );
        assert_eq!(
            can_read(&worker(7), &worker(1), &direct, &graph, None),
            FORBIDDEN
        );

        let nested = [g(3)];
        assert_eq!(
            can_read(&worker(7), &worker(1), &nested, &graph, None),
            ALLOW
        );
        assert_eq!(
            can_read(&worker(2), &worker(1), &nested, &graph, None),
            FORBIDDEN
        );

        // A grant to a group that does not exist reaches nobody.
        let dangling = [g(9)];
        assert_eq!(
            can_read(&worker(7), &worker(1), &dangling, &graph, None),
            FORBIDDEN
        );
    }

    #[test]
    fn cyclic_graph_terminates() {
        let graph = graph(&[(0, g(1)), (1, g(0)), (1, w(3))]);
        let grants = [g(0), g(1), g(9)];
        assert_eq!(
            can_read(&worker(4), &worker(1), &grants, &graph, Some(&gid(1))),
            FORBIDDEN
        );
        assert_eq!(
            can_read(&worker(3), &worker(1), &grants, &graph, Some(&gid(0))),
            ALLOW
        );
    }

    proptest! {
        /// Reading is monotone: adding a grant or a group edge never revokes access,
        /// and any allowed worker is explained by one of the documented rules.
        #[test]
        fn grants_only_add_readers(
            edges in prop::collection::vec((0usize..4, 0usize..8), 0..10),
            grants in prop::collection::vec(0usize..8, 0..4),
            extra in 0usize..8,
            caller in 0usize..4,
            admins in prop::option::of(0usize..4),
        ) {
            // Member ids 0..4 are groups, 4..8 workers 0..4.
            let id = |i: usize| if i < 4 { g(i) } else { w(i - 4) };
            let graph = graph(&edges.iter().map(|&(a, b)| (a, id(b))).collect::<Vec<_>>());
            let grant_ids: Vec<MemberId> = grants.iter().map(|&i| id(i)).collect();
            let admins = admins.map(gid);
            let member = w(caller);
            let caller = worker(caller);
            let depositor = worker(9);
            let before = can_read(&caller, &depositor, &grant_ids, &graph, admins.as_ref());

            let mut more = grant_ids.clone();
            more.push(id(extra));
            prop_assert!(!before.is_allowed() || can_read(&caller, &depositor, &more, &graph, admins.as_ref()).is_allowed());

            let explained = grant_ids.iter().any(|gr| {
                *gr == member
                    || gr.group_id().is_some_and(|grp| crate::auth::groups::is_transitive_member(&graph, grp, &member))
            }) || admins.as_ref().is_some_and(|a| crate::auth::groups::is_transitive_member(&graph, a, &member));
            prop_assert_eq!(before.is_allowed(), explained);
        }
    }
}
