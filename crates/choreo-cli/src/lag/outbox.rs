//! The database side of `choreo lag`: each service's outbox backlog and the age of its oldest
//! row, and the rows its relay parked because they can never be published (with the rows held
//! behind them). A database without an outbox, or one that does not answer, is reported as such.

use std::time::Duration;

use choreo::outbox::Parked;
use serde::Serialize;
use sqlx::Connection;

/// The variables a service database is found under by default: `DATABASE_URL_<NAME>`.
pub const URL_VAR_PREFIX: &str = "DATABASE_URL_";

/// A service database to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub name: String,
    pub url: String,
}

/// Parses `name=URL`.
pub fn parse_database(text: &str) -> Result<Database, String> {
    match text.split_once('=') {
        Some((name, url)) if !name.is_empty() && !url.is_empty() => Ok(Database {
            name: name.to_owned(),
            url: url.to_owned(),
        }),
        _ => Err(format!("`{text}` is not name=URL")),
    }
}

/// Every `DATABASE_URL_<NAME>` of `vars`, named `<name>` in lower case, sorted by name.
pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<Database> {
    let mut databases: Vec<Database> = vars
        .into_iter()
        .filter_map(|(var, url)| {
            let name = var.strip_prefix(URL_VAR_PREFIX)?;
            (!name.is_empty() && !url.trim().is_empty()).then(|| Database {
                name: name.to_lowercase(),
                url,
            })
        })
        .collect();
    databases.sort_by(|a, b| a.name.cmp(&b.name));
    databases
}

/// The most parked rows listed per database (all are counted).
pub const PARKED_LISTED: i64 = 20;

/// What was found in one database.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Backlog {
    Ok {
        /// Rows waiting in the outbox, held ones included.
        backlog: i64,
        oldest_age_seconds: f64,
        /// Rows parked as unpublishable.
        parked: i64,
        /// Rows waiting behind a parked row of their key.
        held: i64,
        /// The oldest parked rows (at most [`PARKED_LISTED`]).
        parked_rows: Vec<Parked>,
    },
    NoOutbox,
    Unreachable {
        error: String,
    },
}

impl std::fmt::Display for Backlog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backlog::Ok {
                backlog,
                oldest_age_seconds,
                parked,
                held,
                ..
            } => {
                write!(f, "{backlog} event(s), oldest {oldest_age_seconds:.1}s")?;
                if *parked > 0 {
                    write!(f, "; {parked} PARKED, {held} held behind them")?;
                }
                Ok(())
            }
            Backlog::NoOutbox => write!(f, "no choreo_outbox table"),
            Backlog::Unreachable { error } => write!(f, "unreachable: {error}"),
        }
    }
}

/// The outbox backlog of `database`, never failing: problems are part of the answer.
pub async fn backlog(database: &Database, timeout: Duration) -> Backlog {
    let work = async {
        let mut conn = sqlx::PgConnection::connect(&database.url).await?;
        let exists: bool = sqlx::query_scalar("select to_regclass('choreo_outbox') is not null")
            .fetch_one(&mut conn)
            .await?;
        let found = if exists {
            let (backlog, oldest_age_seconds) = choreo::outbox::backlog(&mut conn).await?;
            let parking: bool =
                sqlx::query_scalar("select to_regclass('choreo_outbox_parked') is not null")
                    .fetch_one(&mut conn)
                    .await?;
            let ((parked, held), parked_rows) = if parking {
                (
                    choreo::outbox::parked_and_held(&mut conn).await?,
                    choreo::outbox::parked(&mut conn, PARKED_LISTED).await?,
                )
            } else {
                ((0, 0), Vec::new())
            };
            Backlog::Ok {
                backlog,
                oldest_age_seconds,
                parked,
                held,
                parked_rows,
            }
        } else {
            Backlog::NoOutbox
        };
        let _ = conn.close().await;
        Ok::<_, sqlx::Error>(found)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => Backlog::Unreachable {
            error: e.to_string(),
        },
        Err(_) => Backlog::Unreachable {
            error: format!("no answer within {timeout:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_databases_come_from_their_variables() {
        let vars = [
            ("DATABASE_URL_PAYMENT", "postgres://p"),
            ("KAFKA_BROKERS", "x:1"),
            ("DATABASE_URL_ORDER", "postgres://o"),
            ("DATABASE_URL_", "postgres://none"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let names: Vec<String> = from_env(vars).into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["order", "payment"]);
    }

    #[test]
    fn a_database_flag_is_name_equals_url() {
        assert_eq!(
            parse_database("order=postgres://h/db?x=1").unwrap(),
            Database {
                name: "order".into(),
                url: "postgres://h/db?x=1".into()
            }
        );
        assert!(parse_database("postgres://h/db").is_err());
    }
}
