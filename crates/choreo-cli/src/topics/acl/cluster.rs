//! The ACL plan against a live broker, and its application: [`broker`](super::broker) for the
//! calls, [`diff`](super::diff()) for the decisions.

use std::fmt;
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminOptions, OwnedResourceSpecifier, ResourceSpecifier};

use super::{broker, derive::managed_resources, desired_acls, diff, AclChanges};
use crate::topics::cluster::Admin;
use crate::topics::TopicSpec;

/// What `choreo topics` does about ACLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AclPlan {
    /// The broker has no authorizer (a plaintext development broker): nothing to align.
    NoAuthorizer,
    Changes(AclChanges),
}

impl AclPlan {
    /// True when applying it would change nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            AclPlan::NoAuthorizer => true,
            AclPlan::Changes(changes) => changes.is_empty(),
        }
    }
}

impl fmt::Display for AclPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AclPlan::NoAuthorizer => write!(f, "ACLs: the broker has no authorizer; skipped"),
            AclPlan::Changes(changes) => write!(f, "{changes}"),
        }
    }
}

/// Reads the broker's ACLs and plans the specs' ACLs against them.
pub async fn plan_against(
    admin: &Admin,
    specs: &[TopicSpec],
    timeout: Duration,
) -> anyhow::Result<AclPlan> {
    if !has_authorizer(admin, timeout).await? {
        return Ok(AclPlan::NoAuthorizer);
    }
    let current = broker::describe_all(admin, timeout).context("cannot describe the ACLs")?;
    Ok(AclPlan::Changes(diff(
        &desired_acls(specs),
        &current.acls,
        &managed_resources(specs),
        current.unmanaged,
    )))
}

/// Creates the missing ACLs, then deletes the undeclared ones (so a service never loses a
/// grant it keeps), and waits until the broker shows the declared set.
pub async fn apply(
    admin: &Admin,
    specs: &[TopicSpec],
    plan: &AclPlan,
    timeout: Duration,
) -> anyhow::Result<()> {
    let AclPlan::Changes(changes) = plan else {
        return Ok(());
    };
    broker::create(admin, &changes.create, timeout)?;
    broker::delete(admin, &changes.delete, timeout)?;
    crate::topics::cluster::wait_until_empty(timeout, AclPlan::is_empty, || {
        plan_against(admin, specs, timeout)
    })
    .await
}

/// Whether the broker runs an authorizer, by its `authorizer.class.name` (empty without one).
///
/// DescribeAcls cannot tell: librdkafka 2.12 drops the request-level error of its response
/// (rdkafka_admin.c, `DescribeAclsResponse_parse`), so a broker without an authorizer answers
/// SECURITY_DISABLED and the caller sees an empty list.
async fn has_authorizer(admin: &Admin, timeout: Duration) -> anyhow::Result<bool> {
    let metadata = tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, timeout))
        .context("cannot read cluster metadata")?;
    let Some(broker) = metadata.brokers().first() else {
        bail!("the cluster metadata names no broker");
    };
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let described = admin
        .describe_configs(&[ResourceSpecifier::Broker(broker.id())], &options)
        .await
        .context("cannot describe the broker's configs")?;
    for result in described {
        let resource = result
            .map_err(|code| anyhow::anyhow!("describing the broker's configs failed: {code}"))?;
        if let OwnedResourceSpecifier::Broker(_) = resource.specifier {
            let authorizer = resource
                .get("authorizer.class.name")
                .and_then(|entry| entry.value.as_deref())
                .unwrap_or_default();
            return Ok(!authorizer.trim().is_empty());
        }
    }
    bail!("the broker did not describe its configs")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_without_an_authorizer_is_reported_and_needs_nothing() {
        let plan = AclPlan::NoAuthorizer;
        assert!(plan.is_empty());
        assert_eq!(
            plan.to_string(),
            "ACLs: the broker has no authorizer; skipped"
        );
    }
}
