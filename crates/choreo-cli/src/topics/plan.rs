//! The pure planner: desired specs against the cluster's current state, no I/O.
//!
//! Topics that exist in the cluster but have no spec are left alone. For a topic with a spec,
//! topic-level overrides that the spec does not name are reset to the broker default, so the
//! spec is the whole truth about a topic's configs.

use std::collections::BTreeMap;
use std::fmt;

use super::spec::TopicSpec;

/// What the cluster has for one topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicState {
    pub partitions: u32,
    pub replication_factor: u16,
    /// Current value of every topic config, and whether it is a topic-level override.
    pub configs: BTreeMap<String, ConfigValue>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigValue {
    pub value: Option<String>,
    pub is_override: bool,
}

/// One config that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigChange {
    pub key: String,
    pub from: Option<String>,
    /// `None`: the override is removed and the broker default applies.
    pub to: Option<String>,
}

/// What happens to one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicChange {
    Create(TopicSpec),
    Alter {
        name: String,
        /// `Some((from, to))` when the partition count is raised.
        partitions: Option<(u32, u32)>,
        /// Config changes; when not empty the topic's overrides become exactly `desired_configs`.
        configs: Vec<ConfigChange>,
        desired_configs: BTreeMap<String, String>,
    },
    UpToDate(String),
}

/// A change the planner will not make because it would lose data or cannot be done in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    FewerPartitions { topic: String, have: u32, want: u32 },
    ReplicationFactor { topic: String, have: u16, want: u16 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::FewerPartitions { topic, have, want } => write!(
                f,
                "refusing to shrink {topic} from {have} to {want} partitions: Kafka cannot remove \
                 partitions, and fewer would move keys to other partitions and break their order; \
                 raise `partitions` back to {have}, or create a new version of the topic"
            ),
            Refusal::ReplicationFactor { topic, have, want } => write!(
                f,
                "refusing to change the replication factor of {topic} from {have} to {want}: \
                 that is a partition reassignment, not a topic config; set `replication_factor` \
                 back to {have}, or reassign replicas with Kafka's tools"
            ),
        }
    }
}

/// The plan for a set of specs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub changes: Vec<TopicChange>,
    pub refusals: Vec<Refusal>,
}

impl Plan {
    /// True when applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        self.refusals.is_empty()
            && self
                .changes
                .iter()
                .all(|c| matches!(c, TopicChange::UpToDate(_)))
    }

    fn count(&self, pick: fn(&TopicChange) -> bool) -> usize {
        self.changes.iter().filter(|c| pick(c)).count()
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            match change {
                TopicChange::Create(spec) => {
                    write!(
                        f,
                        "  + create {}: {} partitions, replication factor {}",
                        spec.name, spec.partitions, spec.replication_factor
                    )?;
                    let configs: Vec<String> = spec
                        .configs
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    if !configs.is_empty() {
                        write!(f, ", {}", configs.join(", "))?;
                    }
                    writeln!(f)?;
                }
                TopicChange::Alter {
                    name,
                    partitions,
                    configs,
                    ..
                } => {
                    if let Some((from, to)) = partitions {
                        writeln!(f, "  ~ {name}: partitions {from} -> {to}")?;
                    }
                    for c in configs {
                        let show =
                            |v: &Option<String>| v.clone().unwrap_or_else(|| "(default)".into());
                        writeln!(
                            f,
                            "  ~ {name}: {} {} -> {}",
                            c.key,
                            show(&c.from),
                            show(&c.to)
                        )?;
                    }
                }
                TopicChange::UpToDate(name) => writeln!(f, "  = {name}: up to date")?,
            }
        }
        for refusal in &self.refusals {
            writeln!(f, "  ! {refusal}")?;
        }
        let created = self.count(|c| matches!(c, TopicChange::Create(_)));
        let altered = self.count(|c| matches!(c, TopicChange::Alter { .. }));
        let same = self.count(|c| matches!(c, TopicChange::UpToDate(_)));
        write!(
            f,
            "Plan: {created} to create, {altered} to change, {same} up to date"
        )?;
        if !self.refusals.is_empty() {
            write!(f, ", {} refused", self.refusals.len())?;
        }
        Ok(())
    }
}

/// Plans every spec against `current` (topics that exist, by name).
pub fn plan(specs: &[TopicSpec], current: &BTreeMap<String, TopicState>) -> Plan {
    let mut result = Plan::default();
    for spec in specs {
        match current.get(&spec.name) {
            None => result.changes.push(TopicChange::Create(spec.clone())),
            Some(state) => plan_existing(spec, state, &mut result),
        }
    }
    result
}

fn plan_existing(spec: &TopicSpec, state: &TopicState, result: &mut Plan) {
    let refusals_before = result.refusals.len();
    if spec.partitions < state.partitions {
        result.refusals.push(Refusal::FewerPartitions {
            topic: spec.name.clone(),
            have: state.partitions,
            want: spec.partitions,
        });
    }
    if spec.replication_factor != state.replication_factor {
        result.refusals.push(Refusal::ReplicationFactor {
            topic: spec.name.clone(),
            have: state.replication_factor,
            want: spec.replication_factor,
        });
    }
    if result.refusals.len() > refusals_before {
        return;
    }
    let partitions =
        (spec.partitions > state.partitions).then_some((state.partitions, spec.partitions));
    let mut configs: Vec<ConfigChange> = spec
        .configs
        .iter()
        .filter_map(|(key, want)| {
            let have = state.configs.get(key).and_then(|c| c.value.clone());
            (have.as_deref() != Some(want.as_str())).then(|| ConfigChange {
                key: key.clone(),
                from: have,
                to: Some(want.clone()),
            })
        })
        .collect();
    configs.extend(
        state
            .configs
            .iter()
            .filter(|(key, c)| c.is_override && !spec.configs.contains_key(*key))
            .map(|(key, c)| ConfigChange {
                key: key.clone(),
                from: c.value.clone(),
                to: None,
            }),
    );
    configs.sort_by(|a, b| a.key.cmp(&b.key));
    if partitions.is_none() && configs.is_empty() {
        result
            .changes
            .push(TopicChange::UpToDate(spec.name.clone()));
    } else {
        result.changes.push(TopicChange::Alter {
            name: spec.name.clone(),
            partitions,
            configs,
            desired_configs: spec.configs.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topics::spec::KeyFormat;

    fn spec(partitions: u32, configs: &[(&str, &str)]) -> TopicSpec {
        TopicSpec {
            name: "shop.orders.v1".into(),
            description: "d".into(),
            partitions,
            replication_factor: 1,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            key_format: KeyFormat::String,
            key_description: "k".into(),
            events: vec!["shop.order.OrderPlaced".into()],
            producer: "order".into(),
            consumers: vec![],
        }
    }

    /// The state the cluster shows after `spec` was applied: its configs as overrides, plus a
    /// broker default that the spec does not name.
    fn state_of(spec: &TopicSpec) -> TopicState {
        let mut configs: BTreeMap<String, ConfigValue> = spec
            .configs
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    ConfigValue {
                        value: Some(v.clone()),
                        is_override: true,
                    },
                )
            })
            .collect();
        configs.insert(
            "segment.bytes".into(),
            ConfigValue {
                value: Some("1073741824".into()),
                is_override: false,
            },
        );
        TopicState {
            partitions: spec.partitions,
            replication_factor: spec.replication_factor,
            configs,
        }
    }

    fn current(state: TopicState) -> BTreeMap<String, TopicState> {
        BTreeMap::from([("shop.orders.v1".to_string(), state)])
    }

    #[test]
    fn a_missing_topic_is_created() {
        let plan = plan(&[spec(12, &[])], &BTreeMap::new());
        assert!(matches!(&plan.changes[..], [TopicChange::Create(s)] if s.partitions == 12));
        assert!(!plan.is_empty());
    }

    #[test]
    fn an_applied_spec_plans_no_change() {
        let desired = spec(12, &[("retention.ms", "1000")]);
        let plan = plan(std::slice::from_ref(&desired), &current(state_of(&desired)));
        assert!(plan.is_empty(), "{plan}");
        assert!(plan
            .to_string()
            .contains("0 to create, 0 to change, 1 up to date"));
    }

    #[test]
    fn more_partitions_are_added() {
        let plan = plan(&[spec(12, &[])], &current(state_of(&spec(6, &[]))));
        assert!(
            matches!(&plan.changes[..], [TopicChange::Alter { partitions: Some((6, 12)), configs, .. }] if configs.is_empty())
        );
    }

    #[test]
    fn fewer_partitions_are_refused() {
        let plan = plan(&[spec(6, &[])], &current(state_of(&spec(12, &[]))));
        assert_eq!(
            plan.refusals,
            [Refusal::FewerPartitions {
                topic: "shop.orders.v1".into(),
                have: 12,
                want: 6
            }]
        );
        assert!(plan.changes.is_empty());
        assert!(plan.refusals[0]
            .to_string()
            .contains("cannot remove partitions"));
    }

    #[test]
    fn another_replication_factor_is_refused() {
        let mut state = state_of(&spec(12, &[]));
        state.replication_factor = 3;
        let plan = plan(&[spec(12, &[])], &current(state));
        assert!(matches!(
            &plan.refusals[..],
            [Refusal::ReplicationFactor {
                have: 3,
                want: 1,
                ..
            }]
        ));
    }

    #[test]
    fn a_changed_config_is_aligned_and_a_stray_override_reset() {
        let mut state = state_of(&spec(
            12,
            &[("retention.ms", "1000"), ("segment.ms", "60000")],
        ));
        state.configs.get_mut("retention.ms").unwrap().value = Some("5".into());
        let plan = plan(&[spec(12, &[("retention.ms", "1000")])], &current(state));
        let TopicChange::Alter {
            configs,
            partitions: None,
            desired_configs,
            ..
        } = &plan.changes[0]
        else {
            panic!("expected an alter: {plan}");
        };
        assert_eq!(
            configs,
            &[
                ConfigChange {
                    key: "retention.ms".into(),
                    from: Some("5".into()),
                    to: Some("1000".into())
                },
                ConfigChange {
                    key: "segment.ms".into(),
                    from: Some("60000".into()),
                    to: None
                },
            ]
        );
        assert_eq!(desired_configs.len(), 1);
    }

    #[test]
    fn a_spec_value_equal_to_the_broker_default_needs_no_override() {
        let state = state_of(&spec(12, &[]));
        let plan = plan(
            &[spec(12, &[("segment.bytes", "1073741824")])],
            &current(state),
        );
        assert!(plan.is_empty(), "{plan}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const KEYS: [&str; 4] = [
            "retention.ms",
            "segment.ms",
            "cleanup.policy",
            "max.message.bytes",
        ];

        fn configs() -> impl Strategy<Value = BTreeMap<String, String>> {
            proptest::collection::btree_map(
                proptest::sample::select(&KEYS[..]).prop_map(String::from),
                "[0-9]{1,3}",
                0..4,
            )
        }

        fn state() -> impl Strategy<Value = TopicState> {
            (1u32..40, 1u16..3, configs(), configs()).prop_map(
                |(partitions, replication_factor, overrides, defaults)| {
                    let mut configs: BTreeMap<String, ConfigValue> = defaults
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                k,
                                ConfigValue {
                                    value: Some(v),
                                    is_override: false,
                                },
                            )
                        })
                        .collect();
                    for (k, v) in overrides {
                        configs.insert(
                            k,
                            ConfigValue {
                                value: Some(v),
                                is_override: true,
                            },
                        );
                    }
                    TopicState {
                        partitions,
                        replication_factor,
                        configs,
                    }
                },
            )
        }

        /// What the cluster looks like after `plan` was carried out, as Kafka would do it.
        fn carry_out(plan: &Plan, before: Option<TopicState>) -> TopicState {
            let mut state = before.unwrap_or_default();
            for change in &plan.changes {
                match change {
                    TopicChange::Create(spec) => state = state_of(spec),
                    TopicChange::Alter {
                        partitions,
                        configs,
                        desired_configs,
                        ..
                    } => {
                        if let Some((_, to)) = partitions {
                            state.partitions = *to;
                        }
                        if !configs.is_empty() {
                            for entry in state.configs.values_mut().filter(|c| c.is_override) {
                                *entry = ConfigValue {
                                    value: Some("broker-default".into()),
                                    is_override: false,
                                };
                            }
                            for (k, v) in desired_configs {
                                state.configs.insert(
                                    k.clone(),
                                    ConfigValue {
                                        value: Some(v.clone()),
                                        is_override: true,
                                    },
                                );
                            }
                        }
                    }
                    TopicChange::UpToDate(_) => {}
                }
            }
            state
        }

        proptest! {
            #[test]
            fn a_carried_out_plan_leaves_nothing_to_do(
                partitions in 1u32..40, wanted in configs(), before in proptest::option::of(state()),
            ) {
                let mut desired = spec(partitions, &[]);
                desired.configs = wanted;
                let current = before.clone().map(current).unwrap_or_default();
                let first = plan(std::slice::from_ref(&desired), &current);
                prop_assume!(first.refusals.is_empty());
                let after = carry_out(&first, before);
                let second = plan(std::slice::from_ref(&desired), &super::current(after));
                prop_assert!(second.is_empty(), "{}", second);
            }

            #[test]
            fn a_refusal_is_planned_exactly_when_partitions_shrink_or_replication_changes(
                partitions in 1u32..40, before in state(),
            ) {
                let desired = spec(partitions, &[]);
                let plan = plan(std::slice::from_ref(&desired), &current(before.clone()));
                let destructive = partitions < before.partitions || before.replication_factor != 1;
                prop_assert_eq!(!plan.refusals.is_empty(), destructive);
                if destructive {
                    prop_assert!(plan.changes.is_empty());
                }
            }
        }
    }
}
