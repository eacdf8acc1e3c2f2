//! The backbone's own tables in a service's database (outbox, inbox), created by [`migrate`].
//!
//! They are versioned in `choreo_migrations`, apart from the service's own sqlx migrations, so a
//! service's migration history and the backbone's never collide.
//!
//! A database may have two roles: one that owns the schema and migrates it
//! ([`MIGRATION_URL_VAR`], paired with the process's `DATABASE_URL` by [`migration_url`]) and a
//! runtime role that only reads and writes the tables; [`connect_migrated`] migrates as the first
//! and hands back a pool of the second. [`with_database`] points a URL at another database.

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

/// The variable naming the URL a service migrates its database with: a role that owns the
/// schema, where `DATABASE_URL` is a runtime role that may only read and write the tables.
pub const MIGRATION_URL_VAR: &str = "DATABASE_MIGRATION_URL";

/// The URL to migrate the database at `database_url` with, from the environment:
/// `DATABASE_MIGRATION_URL` when `database_url` is the value of `DATABASE_URL`, and
/// `DATABASE_MIGRATION_URL_<NAME>` when it is that of `DATABASE_URL_<NAME>` (as `.stack/env`
/// pairs them). `None` when there is none: the process migrates with `database_url` itself, as a
/// setup with one role per database does. Pairing by value means a migration URL is never used
/// for another database than the one the process runs on (a test's own, say).
pub fn migration_url(database_url: &str) -> Option<String> {
    migration_url_in(std::env::vars(), database_url)
}

fn migration_url_in(
    vars: impl IntoIterator<Item = (String, String)>,
    database_url: &str,
) -> Option<String> {
    let vars: std::collections::BTreeMap<String, String> = vars
        .into_iter()
        .filter(|(_, value)| !value.trim().is_empty())
        .collect();
    // `DATABASE_URL` sorts before every `DATABASE_URL_<NAME>`, so it is asked first.
    vars.iter()
        .filter(|(name, value)| {
            (*name == "DATABASE_URL" || name.starts_with("DATABASE_URL_"))
                && value.trim() == database_url.trim()
        })
        .find_map(|(name, _)| {
            let paired = name.replacen("DATABASE_URL", MIGRATION_URL_VAR, 1);
            vars.get(&paired).map(|url| url.trim().to_owned())
        })
}

/// `url` naming database `database` instead of its own, its options (`?sslmode=...`) kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let server = match base.find("://") {
        Some(scheme) => match base[scheme + 3..].find('/') {
            Some(slash) => &base[..scheme + 3 + slash],
            None => base,
        },
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// Opens a pool of `max_connections` on `database_url` after migrating its database (with
/// `migrate`) as the role of [`migration_url`] when there is one, else as `database_url`'s.
pub async fn connect_migrated<F>(
    database_url: &str,
    options: sqlx::postgres::PgPoolOptions,
    migrate: impl FnOnce(PgPool) -> F,
) -> Result<PgPool, crate::service::ServiceError>
where
    F: std::future::Future<Output = Result<(), crate::service::ServiceError>>,
{
    let pool = options.connect(database_url).await?;
    match migration_url(database_url) {
        Some(owner_url) => {
            let owner = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(std::time::Duration::from_secs(10))
                .connect(&owner_url)
                .await?;
            let migrated = migrate(owner.clone()).await;
            owner.close().await;
            migrated?;
        }
        None => migrate(pool.clone()).await?,
    }
    Ok(pool)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_migration_url_is_the_one_paired_with_the_database_url_in_use() {
        let env = vars(&[
            ("DATABASE_URL", "postgres://app@h/a"),
            ("DATABASE_MIGRATION_URL", "postgres://owner@h/a"),
            ("DATABASE_URL_ORDER", "postgres://order_app@h/o"),
            ("DATABASE_MIGRATION_URL_ORDER", "postgres://order@h/o"),
        ]);
        assert_eq!(
            migration_url_in(env.clone(), "postgres://app@h/a").as_deref(),
            Some("postgres://owner@h/a")
        );
        assert_eq!(
            migration_url_in(env, "postgres://order_app@h/o").as_deref(),
            Some("postgres://order@h/o")
        );
    }

    #[test]
    fn a_database_url_of_its_own_has_no_migration_url() {
        let env = vars(&[
            ("DATABASE_URL_ORDER", "postgres://order_app@h/o"),
            ("DATABASE_MIGRATION_URL_ORDER", "postgres://order@h/o"),
            ("DATABASE_URL_PAYMENT", "postgres://payment_app@h/p"),
            ("DATABASE_MIGRATION_URL", ""),
        ]);
        assert_eq!(migration_url_in(env.clone(), "postgres://test@h/t"), None);
        assert_eq!(migration_url_in(env, "postgres://payment_app@h/p"), None);
    }

    #[test]
    fn another_database_keeps_the_server_and_the_options() {
        let url =
            "postgres://u:p@127.0.0.1:5432/postgres?sslmode=verify-full&sslrootcert=/s/tls/ca.crt";
        assert_eq!(
            with_database(url, "test_1"),
            "postgres://u:p@127.0.0.1:5432/test_1?sslmode=verify-full&sslrootcert=/s/tls/ca.crt"
        );
        assert_eq!(
            with_database("postgres://u@h:1/a", "b"),
            "postgres://u@h:1/b"
        );
        assert_eq!(with_database("postgres://u@h:1", "b"), "postgres://u@h:1/b");
    }
}
