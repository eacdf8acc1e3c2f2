//! The consumer's rebalance hook, its view of group membership, and the registry of partition
//! workers it shares with the runner. On revocation the hook stops the revoked partitions'
//! workers and waits (up to the grace period) until each has finished and committed the batch in
//! hand, before the partitions are given to another member.

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A running partition worker.
pub(crate) struct WorkerHandle {
    pub sender: mpsc::Sender<OwnedMessage>,
    pub stop: CancellationToken,
    pub done: std_mpsc::Receiver<()>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What the runner finds for a partition.
pub(crate) enum Slot {
    /// A worker that takes messages.
    Live(mpsc::Sender<OwnedMessage>),
    /// A worker that ended on its own (it panicked): what it held may not be applied, so no
    /// later message of the partition may go to a new worker of this session.
    Dead,
    /// No worker yet.
    Absent,
}

/// Partition workers by (topic, partition), and the partitions revoked since the runner last
/// looked (so it drops what it holds for them).
#[derive(Default)]
pub(crate) struct Workers {
    map: Mutex<HashMap<(String, i32), WorkerHandle>>,
    revoked: Mutex<Vec<(String, i32)>>,
}

impl Workers {
    pub fn slot(&self, topic: &str, partition: i32) -> Slot {
        let map = self.map.lock().expect("workers lock");
        match map.get(&(topic.to_owned(), partition)) {
            None => Slot::Absent,
            Some(worker) if worker.task.is_finished() => Slot::Dead,
            Some(worker) => Slot::Live(worker.sender.clone()),
        }
    }

    /// The first worker that ended on its own, if any.
    pub fn dead(&self) -> Option<(String, i32)> {
        let map = self.map.lock().expect("workers lock");
        map.iter()
            .find(|(_, w)| w.task.is_finished())
            .map(|(key, _)| key.clone())
    }

    pub fn insert(&self, topic: &str, partition: i32, handle: WorkerHandle) {
        self.map
            .lock()
            .expect("workers lock")
            .insert((topic.to_owned(), partition), handle);
    }

    /// Removes the workers matching `pick`.
    pub fn take(&self, pick: impl Fn(&str, i32) -> bool) -> Vec<WorkerHandle> {
        let mut map = self.map.lock().expect("workers lock");
        let keys: Vec<(String, i32)> = map.keys().filter(|(t, p)| pick(t, *p)).cloned().collect();
        keys.into_iter().filter_map(|k| map.remove(&k)).collect()
    }

    /// Kills every worker without waiting (a test's crash point; feature `testing`).
    #[cfg(feature = "testing")]
    pub fn abort_all(&self) {
        for handle in self.take(|_, _| true) {
            handle.task.abort();
        }
    }

    fn note_revoked(&self, partitions: &[(String, i32)]) {
        self.revoked
            .lock()
            .expect("workers lock")
            .extend_from_slice(partitions);
    }

    /// The partitions revoked since the last call.
    pub fn drain_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().expect("workers lock"))
    }
}

/// Stops `handles` and waits until each has committed its batch in hand, or `grace` passed.
/// Blocking: called from librdkafka's rebalance callback and from shutdown.
pub(crate) fn stop_and_wait(handles: Vec<WorkerHandle>, grace: Duration) -> usize {
    for handle in &handles {
        handle.stop.cancel();
    }
    let deadline = Instant::now() + grace;
    let wait = || {
        handles
            .iter()
            .filter(|h| {
                h.done
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    .is_err()
            })
            .count()
    };
    let unfinished = match tokio::runtime::Handle::try_current() {
        Ok(runtime) if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    };
    for handle in handles {
        handle.task.abort();
    }
    unfinished
}

pub(crate) struct RunnerContext {
    pub workers: Arc<Workers>,
    pub grace: Duration,
    pub stats: Arc<super::ConsumerStats>,
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl ClientContext for RunnerContext {
    /// librdkafka's statistics (every `statistics.interval.ms`) say whether this member is in
    /// its group, and carry each partition's lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        if let Some(group) = &statistics.cgrp {
            self.stats
                .membership
                .observe(&group.state, &group.join_state, Instant::now());
        }
        let Some(metrics) = &self.metrics else { return };
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                if *partition >= 0 && p.consumer_lag >= 0 {
                    metrics
                        .consumer_lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked: Vec<(String, i32)> = list
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let handles = self
                .workers
                .take(|t, p| revoked.iter().any(|(rt, rp)| rt == t && *rp == p));
            let count = handles.len();
            let unfinished = stop_and_wait(handles, self.grace);
            self.workers.note_revoked(&revoked);
            // A partition the runner paused (its worker was full) must not stay paused when it
            // comes back to this member later.
            let _ = consumer.resume(list);
            tracing::info!(
                partitions = revoked.len(),
                workers = count,
                unfinished,
                "partitions revoked"
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = consumer.assignment().map_or(0, |a| a.count());
        if let Rebalance::Assign(added) = rebalance {
            let added: Vec<String> = added
                .elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect();
            tracing::info!(assigned, added = %added.join(","), "partitions assigned");
            self.stats.membership.joined(Instant::now());
        }
        if let Rebalance::Error(error) = rebalance {
            tracing::warn!(%error, "rebalance failed");
        }
        self.stats
            .assigned_partitions
            .store(assigned as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `(topic, partition)` as a one-element list for pause, resume and seek calls.
pub(crate) fn one(topic: &str, partition: i32) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    list
}
