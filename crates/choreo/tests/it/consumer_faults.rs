//! The consumer runner under the faults a handler and its database bring: a handler that panics
//! (once, or always), a partition whose batch keeps failing while the others must flow and a stop
//! must stay within its grace period, and an event type the handler does not know.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use choreo::consumer::{dlq, ConsumerConfig};
use choreo::metrics::Metrics;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::TopicPartitionList;
use tokio_util::sync::CancellationToken;

use crate::consumer::{
    assert_each_key_in_order_once, read_all, spawn, wait_for, Fixture, Recorder, Step,
    FROM_THE_FUTURE,
};
use crate::kafka;

fn step(key: &str, seq: i32, note: &str) -> Step {
    Step {
        key: key.into(),
        seq,
        note: note.into(),
    }
}

/// A key that Kafka's partitioner puts on `partition` of `partitions`.
fn key_on(partition: i32, partitions: i32) -> String {
    (0..)
        .map(|n| format!("key-{n}"))
        .find(|key| choreo::kafka::partition_for_key(key.as_bytes(), partitions) == partition)
        .expect("some key lands there")
}

/// Before the fix, the panicking worker died with its batch, a new worker took the partition's
/// next messages and committed past the lost ones: the first wave was never applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_that_panics_once_loses_nothing_and_applies_every_event_once() {
    let fx = Fixture::new(1).await;
    for seq in 0..10 {
        let note = if seq == 3 { "panic-once" } else { "" };
        fx.send(&step("key-0", seq, note)).await;
    }
    let consumer = fx.consumer_with(Recorder::new(fx.codec.clone()), fx.config());
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("the panic", async || {
        stats.panics.load(Ordering::Relaxed) == 1
    })
    .await;
    for seq in 10..20 {
        fx.send(&step("key-0", seq, "")).await;
    }
    wait_for("every step applied", async || {
        fx.applied().await.len() >= 20
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 1, 20);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    fx.db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_that_always_panics_is_dead_lettered_and_the_rest_applied_in_order() {
    let fx = Fixture::new(1).await;
    for seq in 0..10 {
        let note = if seq == 5 { "panic" } else { "" };
        fx.send(&step("key-0", seq, note)).await;
    }
    let consumer = fx.consumer_with(Recorder::new(fx.codec.clone()), fx.config());
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("nine applied and one dead letter", async || {
        stats.dead_lettered.load(Ordering::Relaxed) == 1 && fx.applied().await.len() == 9
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let seqs: Vec<i32> = fx.applied().await.iter().map(|a| a.1).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4, 6, 7, 8, 9]);
    let letters = read_all(&dlq::topic(&fx.topic, &fx.group), 1).await;
    assert_eq!(letters[0].header(dlq::REASON), "handler_panicked");
    assert!(letters[0]
        .header(dlq::ERROR)
        .contains("step 5 of key-0 panics"));
    fx.db.drop().await;
}

/// Before the fix, the stuck partition's full channel blocked the runner: the other partition
/// starved behind it, the member stopped polling, and a stop never finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stuck_partition_is_paused_while_the_others_flow_and_a_stop_stays_within_grace() {
    let fx = Fixture::new(2).await;
    let (stuck_key, flowing_key) = (key_on(0, 2), key_on(1, 2));
    fx.send(&step(&stuck_key, 0, "stuck")).await;
    for seq in 1..40 {
        fx.send(&step(&stuck_key, seq, "")).await;
        fx.send(&step(&flowing_key, seq, "")).await;
    }
    let config = ConsumerConfig {
        batch_size: 5,
        grace: Duration::from_secs(3),
        stuck_after: Duration::from_millis(500),
        ..fx.config()
    };
    let metrics = Arc::new(Metrics::new("consumer-test"));
    let handler = Recorder::new(fx.codec.clone());
    let stuck = handler.stuck.clone();
    let consumer = fx
        .consumer_with(handler, config.clone())
        .with_metrics(metrics.clone());
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("the other partition applied", async || {
        fx.applied()
            .await
            .iter()
            .filter(|a| a.0 == flowing_key)
            .count()
            == 39
    })
    .await;
    let gauge = || {
        metrics
            .consumer_stuck_seconds
            .with_label_values(&[fx.topic.as_str(), "0"])
            .get()
    };
    wait_for("the stuck partition reported", async || gauge() > 0.0).await;
    assert!(
        fx.applied().await.iter().all(|a| a.0 != stuck_key),
        "nothing of the stuck key applied past its stuck head"
    );
    let note = committed_metadata(&fx.group, &fx.topic, 0);
    assert!(note.starts_with("stuck since "), "{note}");
    assert!(note.contains("a row lock that is never released"), "{note}");

    let stopping = Instant::now();
    stop.cancel();
    tokio::time::timeout(config.grace + Duration::from_secs(5), task)
        .await
        .expect("the stop finished within the grace period")
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < config.grace + Duration::from_secs(5));

    stuck.store(false, Ordering::SeqCst);
    let handler = Recorder::new(fx.codec.clone());
    handler.stuck.store(false, Ordering::SeqCst);
    let consumer = fx.consumer_with(handler, config);
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("the stuck key applied once unstuck", async || {
        fx.applied().await.len() == 79
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let applied = fx.applied().await;
    let seqs: Vec<i32> = applied
        .iter()
        .filter(|a| a.0 == stuck_key)
        .map(|a| a.1)
        .collect();
    assert_eq!(seqs, (0..40).collect::<Vec<_>>(), "in order, once each");
    assert_eq!(committed_metadata(&fx.group, &fx.topic, 0), "");
    fx.db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_type_the_handler_does_not_know_is_counted_and_passed_over() {
    let fx = Fixture::new(1).await;
    fx.send(&step("key-0", 0, "")).await;
    let value = fx
        .codec
        .encode_for(&fx.topic, &step("key-0", 99, ""))
        .await
        .unwrap();
    fx.send_typed(FROM_THE_FUTURE, "key-0", &value).await;
    fx.send(&step("key-0", 1, "")).await;
    let metrics = Arc::new(Metrics::new("consumer-test"));
    let consumer = fx
        .consumer_with(Recorder::new(fx.codec.clone()), fx.config())
        .with_metrics(metrics.clone());
    let stats = consumer.stats();
    let stop = CancellationToken::new();
    let task = spawn(consumer, &stop);
    wait_for("the known steps applied", async || {
        stats.applied.load(Ordering::Relaxed) == 2
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_each_key_in_order_once(&fx.applied().await, 1, 2);
    assert_eq!(stats.unknown.load(Ordering::Relaxed), 1);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(
        metrics
            .consumer_unknown_events
            .with_label_values(&[FROM_THE_FUTURE])
            .get(),
        1
    );
    fx.db.drop().await;
}

/// The metadata of `group`'s committed offset for `topic`/`partition`, as `choreo lag` reads it.
fn committed_metadata(group: &str, topic: &str, partition: i32) -> String {
    let reader: BaseConsumer =
        choreo::kafka::consumer_config(&kafka(), group, "consumer-test-reader")
            .create()
            .unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, partition);
    let committed = reader
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    let element = committed.find_partition(topic, partition).unwrap();
    element.metadata().to_owned()
}
