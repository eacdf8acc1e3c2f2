//! `choreo relay` as real processes: two relays on one database, the leader frozen with SIGSTOP
//! loses the lead to the standby, and when it wakes with SIGCONT it publishes nothing: every
//! event reaches the topic exactly once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use choreo::envelope::Metadata;
use choreo::testing::{create_topic, kafka, unique, TestDb};
use rdkafka::consumer::{Consumer, StreamConsumer};

/// A `choreo relay` process whose log lines arrive on a channel.
struct RelayProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl RelayProcess {
    fn start(db: &TestDb, service: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_choreo"))
            .args([
                "relay",
                "--service",
                service,
                "--lease-ms",
                "2000",
                "--database-url",
                &db.url,
            ])
            .env("KAFKA_BROKERS", kafka().brokers)
            .env("CHOREO_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .expect("choreo relay starts");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        Self { child, lines }
    }

    /// Waits until it logs a line containing `text`.
    fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(remaining) {
                Ok(line) if line.contains(text) => return,
                Ok(_) => {}
                Err(_) => panic!("the relay did not log `{text}` in time"),
            }
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.signal("-TERM");
        let _ = self.child.wait();
    }
}

async fn enqueue(db: &TestDb, topic: &str, value: &str) -> String {
    let metadata = Metadata::new("test.relay.Probe", "k", "relay-process-test");
    let mut tx = db.pool.begin().await.unwrap();
    choreo::outbox::add_encoded(&mut tx, topic, "k", value.as_bytes(), &metadata)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    metadata.event_id.to_string()
}

/// Waits until the relay deleted every row it published.
async fn outbox_drained(db: &TestDb) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from choreo_outbox")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} outbox rows never deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads (read-committed) until `count` records arrived; returns their event ids.
async fn read(consumer: &StreamConsumer, count: usize, seen: &mut Vec<String>) {
    while seen.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records in time")
            .unwrap();
        let id = choreo::kafka::header(&message, "event_id").expect("event_id header");
        seen.push(id.to_owned());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_frozen_with_sigstop_loses_the_lead_and_publishes_nothing_when_it_wakes() {
    let db = TestDb::create().await;
    let topic = create_topic("test.relay-process", 1).await;
    let service = unique("relay-process").replace('.', "-");
    let consumer: StreamConsumer =
        choreo::kafka::consumer_config(&kafka(), &unique("reader"), "relay-process-test")
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut seen = Vec::new();

    let first = RelayProcess::start(&db, &service);
    first.wait_for_log("relay leads");
    let second = RelayProcess::start(&db, &service);
    let mut written = vec![enqueue(&db, &topic, "one").await];
    read(&consumer, 1, &mut seen).await;
    // The relay deletes a row just after Kafka acknowledged it: a leader frozen in between
    // leaves the row for the next leader to publish again (at least once; the consumers' inbox
    // makes it once). Freeze it only when the row is gone, so what is tested is the frozen
    // leader itself publishing nothing.
    outbox_drained(&db).await;

    // Freeze the leader: after the lease PostgreSQL ends its session and the standby leads.
    first.signal("-STOP");
    let frozen = Instant::now();
    second.wait_for_log("relay leads");
    let takeover = frozen.elapsed();
    written.push(enqueue(&db, &topic, "two").await);
    read(&consumer, 2, &mut seen).await;

    // Wake it: it finds its session gone, steps down, and publishes nothing of its own.
    first.signal("-CONT");
    first.wait_for_log("back to standby");
    written.push(enqueue(&db, &topic, "three").await);
    read(&consumer, 3, &mut seen).await;
    let sentinel = enqueue(&db, &topic, "sentinel").await;
    read(&consumer, 4, &mut seen).await;

    assert_eq!(seen[..3], written[..], "each event exactly once, in order");
    assert_eq!(seen[3], sentinel);
    assert!(
        takeover < Duration::from_secs(10),
        "the standby took over in {takeover:?}"
    );
    drop((first, second));
    db.drop().await;
}
