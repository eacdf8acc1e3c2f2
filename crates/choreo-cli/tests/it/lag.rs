//! `choreo lag` against the real broker and PostgreSQL: a group of the test's own that committed
//! part of a topic, and the outbox backlog of a fresh database, beside a database without an
//! outbox and one that does not answer.

use choreo::envelope::Metadata;
use choreo::testing::{create_topic, kafka, unique, TestDb};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::inspect::{choreo, json_lines, stderr, stdout, Events};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_shows_what_a_group_has_left_and_each_outbox_backlog() {
    let topic = create_topic("test.lag", 1).await;
    let events = Events::new();
    for i in 0..5 {
        events
            .send_bytes(
                &topic,
                "k",
                format!("v{i}").as_bytes(),
                &Metadata::new("t.T", "k", "test"),
            )
            .await;
    }
    let group = unique("test.lag-group");
    let consumer: BaseConsumer = choreo::kafka::consumer_config(&kafka(), &group, "lag-test")
        .create()
        .unwrap();
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(&topic, 0, Offset::Offset(2))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();

    let db = TestDb::create().await;
    let mut tx = db.pool.begin().await.unwrap();
    for _ in 0..3 {
        let metadata = Metadata::new("t.T", "k", "test");
        choreo::outbox::add_encoded(&mut tx, &topic, "k", b"v", &metadata)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let no_outbox = std::env::var("PG_ADMIN_URL").unwrap();

    let with_db = format!("test={}", db.url);
    let plain = format!("plain={no_outbox}");
    let args = [
        "lag",
        "--group",
        &group,
        "--database",
        &with_db,
        "--database",
        &plain,
        "--database",
        "gone=postgres://nobody:x@127.0.0.1:1/none",
        "--timeout",
        "5",
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let report = &json_lines(&choreo(&json_args))[0];
    let groups = report["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{report}");
    assert_eq!(groups[0]["group"], group.as_str());
    assert_eq!(groups[0]["total_lag"], 3);
    let partition = &groups[0]["partitions"][0];
    assert_eq!(partition["topic"], topic.as_str());
    assert_eq!(partition["committed"], 2);
    assert_eq!(partition["end"], 5);
    assert_eq!(partition["lag"], 3);

    let outboxes = report["outboxes"].as_array().unwrap();
    let find = |name: &str| {
        outboxes
            .iter()
            .find(|o| o["database"] == name)
            .unwrap_or_else(|| panic!("{name} in {report}"))
    };
    assert_eq!(find("test")["status"], "ok");
    assert_eq!(find("test")["backlog"], 3);
    assert!(find("test")["oldest_age_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(find("plain")["status"], "no_outbox");
    assert_eq!(find("gone")["status"], "unreachable");

    let output = choreo(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains(&format!("group {group} (")), "{text}");
    assert!(text.contains("total lag 3"), "{text}");
    assert!(text.contains("3 event(s), oldest"), "{text}");
    assert!(text.contains("no choreo_outbox table"), "{text}");
    assert!(text.contains("unreachable"), "{text}");

    db.drop().await;
}

#[test]
fn lag_against_an_unreachable_cluster_exits_1_naming_the_brokers() {
    let output = choreo(&["--brokers", "127.0.0.1:1", "--timeout", "2", "lag"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no Kafka broker answered at 127.0.0.1:1"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_shows_parked_outbox_rows_and_the_rows_held_behind_them() {
    let db = TestDb::create().await;
    let mut tx = db.pool.begin().await.unwrap();
    let mut ids = Vec::new();
    for (key, value) in [("k", "bad"), ("k", "held"), ("j", "free")] {
        let metadata = Metadata::new("t.T", key, "test");
        let id = choreo::outbox::add_encoded(
            &mut tx,
            "shop.nowhere.v1",
            key,
            value.as_bytes(),
            &metadata,
        )
        .await
        .unwrap();
        ids.push(id);
    }
    tx.commit().await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    assert!(choreo::outbox::park(&mut conn, ids[0], "unknown topic")
        .await
        .unwrap());

    let with_db = format!("test={}", db.url);
    let args = [
        "lag",
        "--group",
        "none",
        "--database",
        &with_db,
        "--timeout",
        "5",
    ];
    let mut json_args = args.to_vec();
    json_args.push("--json");
    let report = &json_lines(&choreo(&json_args))[0];
    let outbox = &report["outboxes"][0];
    assert_eq!(outbox["backlog"], 2, "{report}");
    assert_eq!(outbox["parked"], 1, "{report}");
    assert_eq!(outbox["held"], 1, "{report}");
    assert_eq!(outbox["parked_rows"][0]["id"], ids[0], "{report}");
    assert_eq!(
        outbox["parked_rows"][0]["error"], "unknown topic",
        "{report}"
    );

    let output = choreo(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("2 event(s)"), "{text}");
    assert!(text.contains("1 PARKED, 1 held behind them"), "{text}");
    assert!(
        text.contains("shop.nowhere.v1  k    unknown topic"),
        "{text}"
    );

    // Un-parked, the row is back under its id, ahead of the one that waited.
    assert_eq!(
        choreo::outbox::unpark(&mut conn, "shop.nowhere.v1", "k")
            .await
            .unwrap(),
        1
    );
    let back: Vec<i64> =
        sqlx::query_scalar("select id from choreo_outbox where key = 'k' order by id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(back, [ids[0], ids[1]]);
    drop(conn);
    db.drop().await;
}
