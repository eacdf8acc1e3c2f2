//! The inbox: a consumer records every event it applies, in the transaction that applies it, so
//! that an event delivered again (after a crash before the offset commit, a rebalance, a relay
//! that published twice) is recognised and skipped.

use sqlx::PgConnection;
use uuid::Uuid;

/// Records that `consumer` applies `event_id` in the current transaction. Returns false when it
/// already had: the caller must then skip the event. A concurrent transaction recording the same
/// event makes this wait for its outcome.
pub async fn record(
    tx: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into choreo_inbox (consumer, event_id) values ($1, $2) on conflict do nothing",
        consumer,
        event_id,
    )
    .execute(tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Records a whole batch in one statement; returns the ids that were new (an id already there,
/// or twice in `event_ids`, is returned at most once). The caller applies exactly those.
pub async fn record_all(
    tx: &mut PgConnection,
    consumer: &str,
    event_ids: &[Uuid],
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(Default::default());
    }
    let fresh: Vec<Uuid> = sqlx::query_scalar!(
        "insert into choreo_inbox (consumer, event_id) select $1, unnest($2::uuid[])
         on conflict do nothing returning event_id",
        consumer,
        event_ids,
    )
    .fetch_all(tx)
    .await?;
    Ok(fresh.into_iter().collect())
}
