//! The pure ACL planner: the declared set against the broker's, no I/O. Every declared ACL the
//! broker lacks is created; every ACL it has on a resource the specs speak of that no spec
//! declares is deleted. ACLs on other resources are left alone but listed, so that a grant no
//! spec explains is seen: the specs need not be the whole cluster (several spec folders, or a
//! test's, may share one), just as topics without a spec are left alone.

use std::collections::BTreeSet;
use std::fmt;

use super::{Acl, PatternType, ResourceType};

/// What `apply` does to the broker's ACLs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AclChanges {
    pub create: Vec<Acl>,
    pub delete: Vec<Acl>,
    pub unchanged: usize,
    /// ACLs on resources no spec speaks of, and prefixed ones: left alone.
    pub left_alone: Vec<Acl>,
    /// ACLs of kinds librdkafka cannot name (on users, delegation tokens): left alone.
    pub unmanaged: usize,
}

impl AclChanges {
    /// True when applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.delete.is_empty()
    }
}

/// The changes that make the ACLs of `current` on the `managed` resources (literal names)
/// equal to `desired`.
pub fn diff(
    desired: &BTreeSet<Acl>,
    current: &BTreeSet<Acl>,
    managed: &BTreeSet<(ResourceType, String)>,
    unmanaged: usize,
) -> AclChanges {
    let is_managed = |acl: &Acl| {
        acl.pattern == PatternType::Literal && managed.contains(&(acl.resource, acl.name.clone()))
    };
    let (delete, left_alone) = current
        .difference(desired)
        .cloned()
        .partition(|acl| is_managed(acl));
    AclChanges {
        create: desired.difference(current).cloned().collect(),
        delete,
        unchanged: desired.intersection(current).count(),
        left_alone,
        unmanaged,
    }
}

impl fmt::Display for AclChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for acl in &self.create {
            writeln!(f, "  + acl {acl}")?;
        }
        for acl in &self.delete {
            writeln!(f, "  - acl {acl}")?;
        }
        for acl in &self.left_alone {
            writeln!(f, "  ? acl {acl} (no spec names this resource; left alone)")?;
        }
        if self.unmanaged > 0 {
            writeln!(
                f,
                "  ! {} ACL(s) on users or delegation tokens are left alone",
                self.unmanaged
            )?;
        }
        write!(
            f,
            "ACLs: {} to create, {} to delete, {} up to date",
            self.create.len(),
            self.delete.len(),
            self.unchanged
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::Operation;
    use super::*;

    fn acl(who: &str, name: &str) -> Acl {
        Acl::allow(who, Operation::Write, ResourceType::Topic, name)
    }

    fn topics(names: &[&str]) -> BTreeSet<(ResourceType, String)> {
        names
            .iter()
            .map(|n| (ResourceType::Topic, (*n).to_owned()))
            .collect()
    }

    #[test]
    fn missing_acls_are_created_and_undeclared_ones_deleted() {
        let desired = BTreeSet::from([acl("User:a", "t"), acl("User:b", "t")]);
        let current = BTreeSet::from([acl("User:b", "t"), acl("User:c", "t")]);
        let changes = diff(&desired, &current, &topics(&["t"]), 0);
        assert_eq!(changes.create, [acl("User:a", "t")]);
        assert_eq!(changes.delete, [acl("User:c", "t")]);
        assert_eq!(changes.unchanged, 1);
        assert_eq!(
            changes.to_string(),
            "  + acl allow User:a Write topic t\n  - acl allow User:c Write topic t\n\
             ACLs: 1 to create, 1 to delete, 1 up to date"
        );
    }

    #[test]
    fn the_same_acl_with_another_host_is_another_acl() {
        let declared = acl("User:a", "t");
        let from_host = Acl {
            host: "10.0.0.1".into(),
            ..declared.clone()
        };
        let changes = diff(
            &BTreeSet::from([declared]),
            &BTreeSet::from([from_host]),
            &topics(&["t"]),
            0,
        );
        assert_eq!((changes.create.len(), changes.delete.len()), (1, 1));
    }

    #[test]
    fn acls_on_resources_no_spec_names_are_listed_and_left_alone() {
        let other = acl("User:x", "someone.elses.topic");
        let prefixed = Acl {
            pattern: PatternType::Prefixed,
            ..acl("User:x", "t")
        };
        let current = BTreeSet::from([other.clone(), prefixed.clone()]);
        let changes = diff(&BTreeSet::new(), &current, &topics(&["t"]), 0);
        assert!(changes.is_empty());
        assert_eq!(changes.left_alone, [other, prefixed]);
        assert!(changes
            .to_string()
            .contains("? acl allow User:x Write topic someone.elses.topic (no spec names"));
    }

    proptest! {
        /// Applying the changes to `current` gives exactly `desired`, and a second diff is empty.
        #[test]
        fn applying_the_changes_converges(
            desired in prop::collection::btree_set(("[a-c]", "[x-z]"), 0..8),
            current in prop::collection::btree_set(("[a-c]", "[x-z]"), 0..8),
        ) {
            let to_set = |s: &BTreeSet<(String, String)>| -> BTreeSet<Acl> {
                s.iter().map(|(w, n)| acl(&format!("User:{w}"), n)).collect()
            };
            let (desired, mut current) = (to_set(&desired), to_set(&current));
            let managed = topics(&["x", "y", "z"]);
            let changes = diff(&desired, &current, &managed, 0);
            current.extend(changes.create.iter().cloned());
            for gone in &changes.delete {
                current.remove(gone);
            }
            prop_assert_eq!(&current, &desired);
            prop_assert!(diff(&desired, &current, &managed, 0).is_empty());
        }
    }
}
