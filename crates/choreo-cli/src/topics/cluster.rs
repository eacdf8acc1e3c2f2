//! The AdminClient edge: reads the cluster's topics into [`TopicState`]s and carries out a
//! [`Plan`]. Everything here talks to Kafka; the decisions are in [`super::plan`].

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;

use super::plan::{plan, ConfigValue, Plan, TopicChange, TopicState};
use super::spec::TopicSpec;

pub type Admin = AdminClient<DefaultClientContext>;

/// Connects an admin client; fails with a clear message when no broker answers within `timeout`.
pub fn connect(kafka: &choreo::KafkaConfig, timeout: Duration) -> anyhow::Result<Admin> {
    let admin: Admin = choreo::kafka::admin_config(kafka, "choreo-topics")
        .create()
        .context("cannot create a Kafka admin client")?;
    tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, timeout)).with_context(
        || {
            format!(
                "no Kafka broker answered at {} within {timeout:?}",
                kafka.brokers
            )
        },
    )?;
    Ok(admin)
}

/// The current state of those of `names` that exist.
pub async fn describe(
    admin: &Admin,
    names: &[&str],
    timeout: Duration,
) -> anyhow::Result<BTreeMap<String, TopicState>> {
    let metadata = tokio::task::block_in_place(|| admin.inner().fetch_metadata(None, timeout))
        .context("cannot read cluster metadata")?;
    let mut states = BTreeMap::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| names.contains(&t.name()))
    {
        if topic.error().is_some() || topic.partitions().is_empty() {
            continue; // being created or deleted: not there yet
        }
        let replication_factor = topic.partitions()[0].replicas().len();
        states.insert(
            topic.name().to_owned(),
            TopicState {
                partitions: u32::try_from(topic.partitions().len())?,
                replication_factor: u16::try_from(replication_factor)?,
                configs: BTreeMap::new(),
            },
        );
    }
    if states.is_empty() {
        return Ok(states);
    }
    let resources: Vec<ResourceSpecifier> =
        states.keys().map(|n| ResourceSpecifier::Topic(n)).collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let described = admin
        .describe_configs(&resources, &options)
        .await
        .context("cannot describe topic configs")?;
    let mut configs = BTreeMap::new();
    for result in described {
        let resource =
            result.map_err(|code| anyhow::anyhow!("describing topic configs failed: {code}"))?;
        let rdkafka::admin::OwnedResourceSpecifier::Topic(name) = resource.specifier else {
            continue;
        };
        let entries = resource
            .entries
            .into_iter()
            .map(|e| {
                let is_override = e.source == ConfigSource::DynamicTopic;
                (
                    e.name,
                    ConfigValue {
                        value: e.value,
                        is_override,
                    },
                )
            })
            .collect();
        configs.insert(name, entries);
    }
    for (name, state) in &mut states {
        state.configs = configs.remove(name).unwrap_or_default();
    }
    Ok(states)
}

/// Reads the cluster and plans `specs` against it.
pub async fn plan_against(
    admin: &Admin,
    specs: &[TopicSpec],
    timeout: Duration,
) -> anyhow::Result<Plan> {
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    Ok(plan(specs, &describe(admin, &names, timeout).await?))
}

/// Carries out every change of `plan` (which must have no refusals), then waits until the
/// cluster shows all of it, so that the next plan is empty.
pub async fn apply(
    admin: &Admin,
    specs: &[TopicSpec],
    plan: &Plan,
    timeout: Duration,
) -> anyhow::Result<()> {
    if !plan.refusals.is_empty() {
        bail!("the plan has refused changes; nothing was applied");
    }
    let options = AdminOptions::new()
        .request_timeout(Some(timeout))
        .operation_timeout(Some(timeout));
    let creates: Vec<NewTopic> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            TopicChange::Create(spec) => Some(new_topic(spec)),
            _ => None,
        })
        .collect();
    if !creates.is_empty() {
        for result in admin
            .create_topics(&creates, &options)
            .await
            .context("creating topics failed")?
        {
            result.map_err(|(topic, code)| anyhow::anyhow!("creating {topic} failed: {code}"))?;
        }
    }
    let grows: Vec<NewPartitions> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            TopicChange::Alter {
                name,
                partitions: Some((_, to)),
                ..
            } => Some(NewPartitions::new(name, *to as usize)),
            _ => None,
        })
        .collect();
    if !grows.is_empty() {
        for result in admin
            .create_partitions(&grows, &options)
            .await
            .context("adding partitions failed")?
        {
            result.map_err(|(topic, code)| {
                anyhow::anyhow!("adding partitions to {topic} failed: {code}")
            })?;
        }
    }
    // AlterConfigs (not the incremental kind) replaces a topic's overrides with exactly the given
    // set: that is what aligning to the spec means, resets included.
    let alters: Vec<AlterConfig> = plan
        .changes
        .iter()
        .filter_map(|c| match c {
            TopicChange::Alter {
                name,
                configs,
                desired_configs,
                ..
            } if !configs.is_empty() => {
                let alter = AlterConfig::new(ResourceSpecifier::Topic(name));
                Some(desired_configs.iter().fold(alter, |a, (k, v)| a.set(k, v)))
            }
            _ => None,
        })
        .collect();
    if !alters.is_empty() {
        for result in admin
            .alter_configs(&alters, &options)
            .await
            .context("altering topic configs failed")?
        {
            result.map_err(|(resource, code)| {
                anyhow::anyhow!("altering configs of {resource:?} failed: {code}")
            })?;
        }
    }
    wait_until_applied(admin, specs, timeout).await
}

fn new_topic(spec: &TopicSpec) -> NewTopic<'_> {
    let topic = NewTopic::new(
        &spec.name,
        spec.partitions as i32,
        TopicReplication::Fixed(i32::from(spec.replication_factor)),
    );
    spec.configs.iter().fold(topic, |t, (k, v)| t.set(k, v))
}

/// Metadata reaches the broker's cache a moment after the controller accepts a change.
async fn wait_until_applied(
    admin: &Admin,
    specs: &[TopicSpec],
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_until_empty(timeout, Plan::is_empty, || {
        plan_against(admin, specs, timeout)
    })
    .await
}

/// Plans again every 200 ms until the plan is empty; fails showing what remains after
/// `timeout`. Topics and ACLs alike show a change a moment after the controller accepts it.
pub(crate) async fn wait_until_empty<
    P: std::fmt::Display,
    F: Future<Output = anyhow::Result<P>>,
>(
    timeout: Duration,
    is_empty: fn(&P) -> bool,
    mut plan: impl FnMut() -> F,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let remaining = plan().await?;
        if is_empty(&remaining) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("the cluster still differs from the specs after {timeout:?}:\n{remaining}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
