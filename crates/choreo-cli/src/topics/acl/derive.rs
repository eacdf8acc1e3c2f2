//! The pure derivation of the ACLs a set of topic specs implies. No I/O.
//!
//! For a topic `T` produced by `p` and consumed by `c1, c2, ...`:
//!
//! - `User:p` may Write `T` (its relay's producer; Write implies Describe and, for an idempotent
//!   producer, stands in for the cluster's IdempotentWrite);
//! - `User:p` may Write the transactional id `choreo-relay-p` (the relay's transactions);
//! - each `User:c` may Read `T` and Read its group `c` (join, fetch, commit offsets);
//! - each `User:c` may Create and Write its dead-letter topic `T.c.dlq` (the consumer creates it
//!   when it starts and writes messages it can never apply to it).
//!
//! Nothing else: the gateway has no Kafka client, and the operator (`User:admin`) is a super user.
//!
//! The specs decide every literal ACL on the resources they speak of ([`managed_resources`]);
//! ACLs on other resources (other topics, prefixed or cluster ACLs) are left alone and listed.

use std::collections::BTreeSet;

use super::{Acl, Operation, ResourceType};
use crate::topics::TopicSpec;

/// The principal a service authenticates as.
pub fn principal(service: &str) -> String {
    format!("User:{service}")
}

/// Every ACL the specs declare.
pub fn desired_acls(specs: &[TopicSpec]) -> BTreeSet<Acl> {
    let mut acls = BTreeSet::new();
    for spec in specs {
        let producer = principal(&spec.producer);
        acls.insert(Acl::allow(
            &producer,
            Operation::Write,
            ResourceType::Topic,
            &spec.name,
        ));
        acls.insert(Acl::allow(
            &producer,
            Operation::Write,
            ResourceType::TransactionalId,
            choreo::relay::transactional_id(&spec.producer),
        ));
        for group in &spec.consumers {
            let consumer = principal(group);
            let dlq = choreo::consumer::dlq::topic(&spec.name, group);
            acls.extend([
                Acl::allow(&consumer, Operation::Read, ResourceType::Topic, &spec.name),
                Acl::allow(&consumer, Operation::Read, ResourceType::Group, group),
                Acl::allow(&consumer, Operation::Create, ResourceType::Topic, &dlq),
                Acl::allow(&consumer, Operation::Write, ResourceType::Topic, &dlq),
            ]);
        }
    }
    acls
}

/// The resources the specs speak of: their topics and dead-letter topics, the consumers' groups
/// and the producers' transactional ids. ACLs on these (literal names) are the specs' to decide;
/// ACLs on anything else are left alone, as topics without a spec are.
pub fn managed_resources(specs: &[TopicSpec]) -> BTreeSet<(ResourceType, String)> {
    let mut resources = BTreeSet::new();
    for spec in specs {
        resources.insert((ResourceType::Topic, spec.name.clone()));
        resources.insert((
            ResourceType::TransactionalId,
            choreo::relay::transactional_id(&spec.producer),
        ));
        for group in &spec.consumers {
            resources.insert((
                ResourceType::Topic,
                choreo::consumer::dlq::topic(&spec.name, group),
            ));
            resources.insert((ResourceType::Group, group.clone()));
        }
    }
    resources
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::topics::KeyFormat;

    fn spec(name: &str, producer: &str, consumers: &[&str]) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            description: "d".into(),
            partitions: 1,
            replication_factor: 1,
            configs: BTreeMap::new(),
            key_format: KeyFormat::String,
            key_description: "k".into(),
            events: vec!["a.B".into()],
            producer: producer.into(),
            consumers: consumers.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn lines(acls: &BTreeSet<Acl>) -> Vec<String> {
        acls.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_topic_gives_its_producer_write_and_each_consumer_read_its_group_and_dead_letters() {
        let acls = desired_acls(&[spec("shop.orders.v1", "order", &["inventory"])]);
        assert_eq!(
            lines(&acls),
            [
                "allow User:inventory Read topic shop.orders.v1",
                "allow User:inventory Write topic shop.orders.v1.inventory.dlq",
                "allow User:inventory Create topic shop.orders.v1.inventory.dlq",
                "allow User:inventory Read group inventory",
                "allow User:order Write topic shop.orders.v1",
                "allow User:order Write transactional-id choreo-relay-order",
            ]
        );
    }

    #[test]
    fn a_service_that_produces_two_topics_has_one_transactional_id_acl() {
        let acls = desired_acls(&[spec("a.v1", "order", &[]), spec("b.v1", "order", &[])]);
        let txn: Vec<_> = acls
            .iter()
            .filter(|a| a.resource == ResourceType::TransactionalId)
            .collect();
        assert_eq!(txn.len(), 1);
    }

    #[test]
    fn a_consumer_of_its_own_topic_gets_both_sides() {
        let acls = desired_acls(&[spec("a.v1", "order", &["order"])]);
        let order = |op, name: &str| {
            acls.contains(&Acl::allow("User:order", op, ResourceType::Topic, name))
        };
        assert!(order(Operation::Write, "a.v1") && order(Operation::Read, "a.v1"));
    }

    #[test]
    fn every_declared_acl_is_on_a_managed_resource() {
        let specs = [spec("a.v1", "order", &["inventory", "payment"])];
        let managed = managed_resources(&specs);
        for acl in desired_acls(&specs) {
            assert!(managed.contains(&(acl.resource, acl.name.clone())), "{acl}");
        }
    }

    #[test]
    fn no_specs_declare_no_acls() {
        assert!(desired_acls(&[]).is_empty());
    }

    fn arb_spec() -> impl Strategy<Value = TopicSpec> {
        let service = prop::sample::select(vec!["order", "inventory", "payment", "shipping"]);
        (
            "[a-z]{1,5}\\.v[0-9]",
            service.clone(),
            prop::collection::vec(service, 0..4),
        )
            .prop_map(|(name, producer, consumers)| spec(&name, producer, &consumers))
    }

    proptest! {
        /// Least privilege: a principal may write a topic only if it produces it or it is the
        /// principal's own dead-letter topic, and read only what it consumes.
        #[test]
        fn every_acl_is_justified_by_a_spec(specs in prop::collection::vec(arb_spec(), 0..5)) {
            for acl in desired_acls(&specs) {
                let service = acl.principal.strip_prefix("User:").unwrap();
                let justified = specs.iter().any(|s| match (acl.resource, acl.operation) {
                    (ResourceType::Topic, Operation::Write) => {
                        (s.producer == service && acl.name == s.name)
                            || (s.consumers.iter().any(|c| c == service)
                                && acl.name == format!("{}.{service}.dlq", s.name))
                    }
                    (ResourceType::Topic, Operation::Create) => {
                        s.consumers.iter().any(|c| c == service)
                            && acl.name == format!("{}.{service}.dlq", s.name)
                    }
                    (ResourceType::Topic, Operation::Read) => {
                        acl.name == s.name && s.consumers.iter().any(|c| c == service)
                    }
                    (ResourceType::Group, Operation::Read) => {
                        acl.name == service && s.consumers.iter().any(|c| c == service)
                    }
                    (ResourceType::TransactionalId, Operation::Write) => {
                        s.producer == service && acl.name == format!("choreo-relay-{service}")
                    }
                    _ => false,
                });
                prop_assert!(justified, "{acl} is not justified by any spec");
            }
        }

        /// Completeness: every declared producer can write and every consumer can read.
        #[test]
        fn every_declared_role_is_granted(specs in prop::collection::vec(arb_spec(), 0..5)) {
            let acls = desired_acls(&specs);
            for s in &specs {
                let grant = |who: &str, op, name: &str| {
                    acls.contains(&Acl::allow(principal(who), op, ResourceType::Topic, name))
                };
                prop_assert!(grant(&s.producer, Operation::Write, &s.name));
                for c in &s.consumers {
                    prop_assert!(grant(c, Operation::Read, &s.name));
                }
            }
        }
    }
}
