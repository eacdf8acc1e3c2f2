//! The inbox's pruner against PostgreSQL: rows older than the retention go, in chunks, younger
//! ones stay, and the metrics say how many rows are left and how many went.

use std::time::Duration;

use choreo::metrics::Metrics;
use choreo::prune::{PruneConfig, Pruner, DEFAULT_INBOX_RETENTION};
use tokio_util::sync::CancellationToken;

use crate::TestDb;

/// Inserts `n` inbox rows of `consumer` applied `age` ago.
async fn applied(db: &TestDb, consumer: &str, n: i32, age: Duration) {
    sqlx::query(
        "insert into choreo_inbox (consumer, event_id, applied_at)
         select $1, gen_random_uuid(), now() - make_interval(secs => $2)
         from generate_series(1, $3)",
    )
    .bind(consumer)
    .bind(age.as_secs_f64())
    .bind(n)
    .execute(&db.pool)
    .await
    .unwrap();
}

async fn inbox_rows(db: &TestDb) -> i64 {
    sqlx::query_scalar("select count(*) from choreo_inbox")
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn rows_older_than_the_retention_are_pruned_in_chunks_and_younger_ones_kept() {
    let db = TestDb::create().await;
    applied(&db, "order", 12, 9 * DAY).await;
    applied(&db, "payment", 5, 30 * DAY).await;
    applied(&db, "order", 3, 7 * DAY).await;
    applied(&db, "order", 4, Duration::ZERO).await;
    let metrics = Metrics::new("prune-test");
    let config = PruneConfig {
        chunk: 5,
        ..PruneConfig::new(DEFAULT_INBOX_RETENTION)
    };
    let pruner = Pruner::inbox(db.pool.clone(), config, &metrics);

    let cycle = pruner.cycle(&CancellationToken::new()).await.unwrap();

    assert_eq!(cycle.deleted, 17);
    assert_eq!(cycle.rows, 7);
    assert_eq!(inbox_rows(&db).await, 7);
    let oldest_left: f64 = sqlx::query_scalar(
        "select extract(epoch from now() - min(applied_at))::float8 from choreo_inbox",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(oldest_left < (8 * DAY).as_secs_f64(), "{oldest_left}");
    assert_eq!(metrics.inbox_rows.get(), 7);
    assert_eq!(metrics.inbox_pruned.get(), 17);
    let text = metrics.render();
    assert!(
        text.contains(r#"choreo_inbox_rows{service="prune-test"} 7"#),
        "{text}"
    );
    assert!(
        text.contains(r#"choreo_inbox_pruned_total{service="prune-test"} 17"#),
        "{text}"
    );
    db.drop().await;
}

#[tokio::test]
async fn a_cycle_stops_after_its_most_chunks_and_the_next_one_goes_on() {
    let db = TestDb::create().await;
    applied(&db, "order", 10, 9 * DAY).await;
    let metrics = Metrics::new("prune-test");
    let config = PruneConfig {
        chunk: 3,
        max_chunks: 2,
        ..PruneConfig::new(DEFAULT_INBOX_RETENTION)
    };
    let pruner = Pruner::inbox(db.pool.clone(), config, &metrics);
    let token = CancellationToken::new();

    assert_eq!(pruner.cycle(&token).await.unwrap().deleted, 6);
    assert_eq!(pruner.cycle(&token).await.unwrap().deleted, 4);
    assert_eq!(inbox_rows(&db).await, 0);
    assert_eq!(metrics.inbox_pruned.get(), 10);
    db.drop().await;
}

#[tokio::test]
async fn the_running_pruner_prunes_at_once_and_stops_when_cancelled() {
    let db = TestDb::create().await;
    applied(&db, "order", 2, 9 * DAY).await;
    applied(&db, "order", 1, Duration::ZERO).await;
    let metrics = Metrics::new("prune-test");
    let pruner = Pruner::inbox(
        db.pool.clone(),
        PruneConfig::new(DEFAULT_INBOX_RETENTION),
        &metrics,
    );
    let token = CancellationToken::new();
    let running = tokio::spawn(pruner.run(token.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.inbox_rows.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "no cycle ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    token.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the pruner stops when cancelled")
        .unwrap()
        .unwrap();
    assert_eq!(metrics.inbox_pruned.get(), 2);
    db.drop().await;
}

#[tokio::test]
async fn the_inbox_has_a_brin_index_on_applied_at() {
    let db = TestDb::create().await;
    let definition: String = sqlx::query_scalar(
        "select indexdef from pg_indexes where indexname = 'choreo_inbox_applied_at'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        definition.contains("USING brin (applied_at)"),
        "{definition}"
    );
    // Migrating again (another replica starting) changes nothing.
    choreo::db::migrate(&db.pool).await.unwrap();
    db.drop().await;
}
