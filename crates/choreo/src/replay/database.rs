//! The fresh database a replay writes to: created on request (through `PG_ADMIN_URL`),
//! migrated as the service migrates its own (the backbone's tables first), checked to hold none
//! of the service's rows, and given the `--init-sql` state.

use std::io::Write;
use std::path::Path;
use std::str::FromStr as _;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection as _, PgPool};

use super::{ReplayError, Service};

/// The variable that names the PostgreSQL superuser URL `--create` uses.
pub const ADMIN_URL_VAR: &str = "PG_ADMIN_URL";

/// The database's name in `url`, for messages (never the URL: it may hold a password).
pub fn name(url: &str) -> String {
    PgConnectOptions::from_str(url)
        .ok()
        .and_then(|o| o.get_database().map(str::to_owned))
        .unwrap_or_else(|| "(unnamed database)".into())
}

/// Connects to `url`, creating the database first when `create` and it is missing.
pub async fn connect(
    url: &str,
    create: bool,
    out: &mut (dyn Write + Send),
) -> Result<PgPool, ReplayError> {
    let options = PgConnectOptions::from_str(url).map_err(|e| {
        ReplayError::BadInput(format!("--database-url is not a PostgreSQL URL: {e}"))
    })?;
    let database = name(url);
    if create {
        create_if_missing(&database, options.get_username(), out).await?;
    }
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("3D000") => {
                ReplayError::BadInput(format!(
                    "database {database} does not exist (pass --create to create it)"
                ))
            }
            _ => ReplayError::Failed(format!("cannot connect to database {database}: {e}")),
        })
}

async fn create_if_missing(
    database: &str,
    owner: &str,
    out: &mut (dyn Write + Send),
) -> Result<(), ReplayError> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if !plain(database) || !plain(owner) {
        return Err(ReplayError::BadInput(format!(
            "--create makes databases named with letters, digits, _ and - only, not `{database}`"
        )));
    }
    let admin_url = std::env::var(ADMIN_URL_VAR).map_err(|_| {
        ReplayError::BadInput(format!(
            "--create needs {ADMIN_URL_VAR} (a PostgreSQL superuser URL; `scripts/stack up` \
             writes it to .stack/env)"
        ))
    })?;
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .map_err(|e| ReplayError::Failed(format!("cannot connect with {ADMIN_URL_VAR}: {e}")))?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await
            .map_err(|e| ReplayError::Failed(e.to_string()))?;
    if exists {
        return Ok(());
    }
    let admin_user = PgConnectOptions::from_str(&admin_url)
        .map(|o| o.get_username().to_owned())
        .unwrap_or_default();
    let owner_clause = if owner == admin_user {
        String::new()
    } else {
        format!(" owner \"{owner}\"")
    };
    sqlx::raw_sql(&format!("create database \"{database}\"{owner_clause}"))
        .execute(&mut admin)
        .await
        .map_err(|e| ReplayError::Failed(format!("creating database {database}: {e}")))?;
    writeln!(out, "created database {database}").map_err(super::run::output_failed)?;
    Ok(())
}

/// Runs the backbone's and the service's migrations, then refuses a database that already holds
/// the service's rows unless `force`, then runs `init_sql`.
pub async fn prepare<R>(
    pool: &PgPool,
    service: &Service<R>,
    force: bool,
    init_sql: Option<(&Path, &str)>,
) -> Result<(), ReplayError> {
    let failed = |e: &dyn std::fmt::Display| ReplayError::Failed(format!("migrating: {e}"));
    crate::db::migrate(pool).await.map_err(|e| failed(&e))?;
    service.migrator.run(pool).await.map_err(|e| failed(&e))?;
    let mut holding = Vec::new();
    let tables = ["choreo_inbox", "choreo_outbox"]
        .iter()
        .chain(service.state_tables);
    for table in tables {
        let any: bool = sqlx::query_scalar(&format!("select exists (select 1 from {table})"))
            .fetch_one(pool)
            .await
            .map_err(|e| ReplayError::Failed(e.to_string()))?;
        if any {
            holding.push(*table);
        }
    }
    if !holding.is_empty() && !force {
        return Err(ReplayError::Refused(format!(
            "database {} already holds {} rows ({}): replay into a fresh database, or pass \
             --force",
            pool.connect_options().get_database().unwrap_or("?"),
            service.name,
            holding.join(", ")
        )));
    }
    if let Some((path, sql)) = init_sql {
        sqlx::raw_sql(sql).execute(pool).await.map_err(|e| {
            ReplayError::BadInput(format!("--init-sql {} failed: {e}", path.display()))
        })?;
    }
    Ok(())
}
