//! The consumer's rebalance hook and the registry of partition workers it shares with the
//! runner. On revocation the hook stops the revoked partitions' workers and waits (up to the
//! grace period) until each has finished and committed the batch in hand, before the partitions
//! are given to another member.

use std::collections::HashMap;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};
use rdkafka::message::OwnedMessage;
use rdkafka::ClientContext;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A running partition worker.
pub(crate) struct WorkerHandle {
    pub sender: mpsc::Sender<OwnedMessage>,
    pub stop: CancellationToken,
    pub done: std_mpsc::Receiver<()>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Partition workers by (topic, partition).
#[derive(Default)]
pub(crate) struct Workers {
    map: Mutex<HashMap<(String, i32), WorkerHandle>>,
}

impl Workers {
    pub fn sender(&self, topic: &str, partition: i32) -> Option<mpsc::Sender<OwnedMessage>> {
        let map = self.map.lock().expect("workers lock");
        map.get(&(topic.to_owned(), partition))
            .filter(|w| !w.stop.is_cancelled() && !w.task.is_finished())
            .map(|w| w.sender.clone())
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

    /// Kills every worker without waiting (a crash).
    pub fn abort_all(&self) {
        for handle in self.take(|_, _| true) {
            handle.task.abort();
        }
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
    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
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
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            let revoked: Vec<(String, i32)> = revoked
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            let handles = self
                .workers
                .take(|t, p| revoked.iter().any(|(rt, rp)| rt == t && *rp == p));
            let count = handles.len();
            let unfinished = stop_and_wait(handles, self.grace);
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
        }
        self.stats
            .assigned_partitions
            .store(assigned as u64, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .joined
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
