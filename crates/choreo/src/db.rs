//! The backbone's own tables in a service's database (outbox, inbox), created by [`migrate`].
//!
//! They are versioned in `choreo_migrations`, apart from the service's own sqlx migrations, so a
//! service's migration history and the backbone's never collide.

use sqlx::PgPool;

/// (version, description, SQL), in order. Append only.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "outbox and inbox",
        include_str!("../migrations/0001_outbox_inbox.sql"),
    ),
    (
        2,
        "parked outbox rows",
        include_str!("../migrations/0002_outbox_parked.sql"),
    ),
    (
        3,
        "inbox by applied_at",
        include_str!("../migrations/0003_inbox_applied_at.sql"),
    ),
    (
        4,
        "relay woken by a doorbell, not a NOTIFY per transaction",
        include_str!("../migrations/0004_outbox_doorbell.sql"),
    ),
];

/// Serialises concurrent `migrate` calls of replicas starting together.
const MIGRATION_LOCK: i64 = 0x6368_6f72_656f_0001;

/// Creates or upgrades the backbone's tables; safe to call from every replica at start-up.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!("select pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(
        "create table if not exists choreo_migrations (
            version int primary key,
            description text not null,
            applied_at timestamptz not null default now())",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Vec<i32> = sqlx::query_scalar("select version from choreo_migrations")
        .fetch_all(&mut *tx)
        .await?;
    for (version, description, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        sqlx::raw_sql(sql).execute(&mut *tx).await?;
        sqlx::query("insert into choreo_migrations (version, description) values ($1, $2)")
            .bind(version)
            .bind(description)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version, description, "applied choreo migration");
    }
    tx.commit().await
}
