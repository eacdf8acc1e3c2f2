//! ACLs as code. The topic specs already say who produces and who consumes each topic; from
//! them [`desired_acls`] derives every ACL the services need (and nothing more), [`diff`] compares
//! that set with the broker's, and `choreo topics plan|apply` show and apply the difference beside
//! the topic changes: missing ACLs are created, and ACLs that no spec declares on the resources
//! the specs speak of (their topics, dead-letter topics, groups, transactional ids) are deleted;
//! ACLs on anything else are listed and left alone.
//!
//! The decisions are pure ([`derive`], [`diff`](mod@diff)); the broker is reached through
//! librdkafka's ACL calls, which rust-rdkafka does not wrap ([`broker`], the only `unsafe` code of
//! the crate), and [`cluster`] ties the two together. A broker without an authorizer (the
//! plaintext development stack) has no ACLs to align: plan and apply say so and go on.
//!
//! Principals are `User:<service>` as the specs name services; consumer groups are named after
//! their service too (`choreo::service::Service::consume`). Kafka lets Read and Write imply
//! Describe, and Write on a topic covers an idempotent producer (no cluster IdempotentWrite), so
//! the derived set has no separate Describe entries.

pub mod broker;
pub mod cluster;
pub mod derive;
pub mod diff;

use std::fmt;

pub use derive::desired_acls;
pub use diff::{diff, AclChanges};

/// What an ACL is about. Kafka's other kinds (users, delegation tokens) are ones librdkafka
/// cannot name; [`broker::describe_all`] counts them and leaves them alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    TransactionalId,
    Cluster,
}

/// Whether the resource name is the whole name or a prefix of the names it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    Literal,
    Prefixed,
}

/// An operation, as Kafka names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Allow,
    Deny,
}

/// One ACL binding: `permission` for `principal` connecting from `host` to do `operation` on
/// the resource. Ordered by principal first, so a plan reads service by service.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    pub principal: String,
    pub resource: ResourceType,
    pub name: String,
    pub pattern: PatternType,
    pub operation: Operation,
    pub permission: Permission,
    /// `*` for any host (all derived ACLs).
    pub host: String,
}

impl Acl {
    /// An ACL allowing `principal` `operation` on the resource `name` (literal), from any host.
    pub fn allow(
        principal: impl Into<String>,
        operation: Operation,
        resource: ResourceType,
        name: impl Into<String>,
    ) -> Self {
        Acl {
            principal: principal.into(),
            resource,
            name: name.into(),
            pattern: PatternType::Literal,
            operation,
            permission: Permission::Allow,
            host: "*".into(),
        }
    }
}

/// `allow User:order Write topic shop.orders.v1` (the host only when it is not `*`).
impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let permission = match self.permission {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        };
        let resource = match self.resource {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::TransactionalId => "transactional-id",
            ResourceType::Cluster => "cluster",
        };
        write!(
            f,
            "{permission} {} {:?} {resource} ",
            self.principal, self.operation
        )?;
        if self.pattern == PatternType::Prefixed {
            write!(f, "prefixed ")?;
        }
        write!(f, "{}", self.name)?;
        if self.host != "*" {
            write!(f, " from {}", self.host)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_acl_reads_as_a_sentence() {
        let acl = Acl::allow(
            "User:order",
            Operation::Write,
            ResourceType::Topic,
            "shop.orders.v1",
        );
        assert_eq!(
            acl.to_string(),
            "allow User:order Write topic shop.orders.v1"
        );
    }

    #[test]
    fn a_prefixed_deny_from_one_host_says_so() {
        let acl = Acl {
            pattern: PatternType::Prefixed,
            permission: Permission::Deny,
            host: "10.0.0.1".into(),
            ..Acl::allow("User:x", Operation::Read, ResourceType::Group, "team-")
        };
        assert_eq!(
            acl.to_string(),
            "deny User:x Read group prefixed team- from 10.0.0.1"
        );
    }
}
