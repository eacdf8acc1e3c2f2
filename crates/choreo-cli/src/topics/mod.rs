//! Topics as code. One YAML file per topic in `topics/` ([`spec`]) is compared with what the
//! cluster has ([`cluster::describe`]) by a pure planner ([`plan`]); `apply` carries out the
//! plan through the AdminClient and waits until the cluster shows it.
//!
//! Only additive changes are made: create a topic, raise its partition count, align its configs.
//! Fewer partitions or another replication factor are refused, never attempted.
//!
//! The specs' producers and consumers also decide the broker's ACLs ([`acl`]).

pub mod acl;
pub mod cluster;
pub mod plan;
pub mod spec;

pub use plan::{plan, ConfigChange, Plan, Refusal, TopicChange, TopicState};
pub use spec::{load_dir, KeyFormat, SpecError, TopicSpec};
