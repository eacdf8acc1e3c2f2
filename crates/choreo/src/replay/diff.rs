//! Comparing the replay's database with another (normally the live service's): every table of
//! the public schema but the backbone's (`choreo_*`) and `_sqlx_migrations`, rows keyed by
//! primary key and, when the table has an `order_id` column, only the orders of the replayed
//! range. Timestamps, generated ids (serial and identity columns, and the ids the service makes
//! itself, [`super::Service::generated_ids`]) and the columns named with `--ignore` are left out:
//! they differ on every run.
//!
//! [`shape`] and [`compare`] are pure; [`run`] reads both databases.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;

use serde_json::{Map, Value as Json};
use sqlx::PgPool;

use super::run::output_failed;
use super::ReplayError;

/// A column as the catalogue describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub data_type: String,
    /// Filled from a sequence (serial or identity).
    pub generated: bool,
}

/// How a table is compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub name: String,
    /// The columns compared, in table order.
    pub compared: Vec<String>,
    /// The columns rows are matched by; empty when no key survives the ignored columns (rows are
    /// then compared as a multiset).
    pub key: Vec<String>,
}

/// `table`'s shape: its key is the primary key, or else the first unique constraint, whose
/// columns are all compared. Timestamps, sequences and the `ignore`d columns are not compared.
pub fn shape(
    table: &str,
    columns: &[Column],
    keys: &[Vec<String>],
    ignore: &BTreeSet<String>,
) -> TableShape {
    let ignored = |c: &Column| {
        c.generated || c.data_type.starts_with("timestamp") || ignore.contains(&c.name)
    };
    let compared: Vec<String> = columns
        .iter()
        .filter(|c| !ignored(c))
        .map(|c| c.name.clone())
        .collect();
    let key = keys
        .iter()
        .find(|key| key.iter().all(|k| compared.contains(k)))
        .cloned()
        .unwrap_or_default();
    TableShape {
        name: table.to_owned(),
        compared,
        key,
    }
}

/// One difference between the replay and the other database.
#[derive(Debug, Clone, PartialEq)]
pub enum RowDiff {
    /// A row the other database has and the replay does not.
    Missing { table: String, row: String },
    /// A row only the replay has.
    Extra { table: String, row: String },
    /// A row both have, with these columns (replay's value, other's value) differing.
    Changed {
        table: String,
        row: String,
        columns: Vec<(String, Json, Json)>,
    },
}

impl fmt::Display for RowDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowDiff::Missing { table, row } => write!(f, "{table} {row}: missing in the replay"),
            RowDiff::Extra { table, row } => write!(f, "{table} {row}: extra in the replay"),
            RowDiff::Changed {
                table,
                row,
                columns,
            } => {
                write!(f, "{table} {row}: changed")?;
                for (column, replay, other) in columns {
                    write!(f, "\n    {column}: replay {replay}, compared {other}")?;
                }
                Ok(())
            }
        }
    }
}

/// The differences between `replay` and `other`, rows given as JSON objects (`to_jsonb`).
pub fn compare(shape: &TableShape, replay: &[Json], other: &[Json]) -> Vec<RowDiff> {
    let project = |row: &Json, columns: &[String]| -> Map<String, Json> {
        columns
            .iter()
            .map(|c| (c.clone(), row.get(c).cloned().unwrap_or(Json::Null)))
            .collect()
    };
    let table = shape.name.clone();
    let mut diffs = Vec::new();
    if shape.key.is_empty() {
        // No usable key: compare as multisets of rows.
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for row in replay {
            *counts
                .entry(Json::Object(project(row, &shape.compared)).to_string())
                .or_default() += 1;
        }
        for row in other {
            *counts
                .entry(Json::Object(project(row, &shape.compared)).to_string())
                .or_default() -= 1;
        }
        for (row, n) in counts {
            for _ in 0..n.abs() {
                let (table, row) = (table.clone(), row.clone());
                diffs.push(if n > 0 {
                    RowDiff::Extra { table, row }
                } else {
                    RowDiff::Missing { table, row }
                });
            }
        }
        return diffs;
    }
    let keyed = |rows: &[Json]| -> BTreeMap<String, Map<String, Json>> {
        rows.iter()
            .map(|row| {
                let key: Vec<String> = shape
                    .key
                    .iter()
                    .map(|k| format!("{k}={}", row.get(k).unwrap_or(&Json::Null)))
                    .collect();
                (
                    format!("[{}]", key.join(", ")),
                    project(row, &shape.compared),
                )
            })
            .collect()
    };
    let (mine, theirs) = (keyed(replay), keyed(other));
    for (row, values) in &mine {
        let Some(their_values) = theirs.get(row) else {
            diffs.push(RowDiff::Extra {
                table: table.clone(),
                row: row.clone(),
            });
            continue;
        };
        let columns: Vec<(String, Json, Json)> = shape
            .compared
            .iter()
            .filter(|c| values.get(*c) != their_values.get(*c))
            .map(|c| (c.clone(), values[c].clone(), their_values[c].clone()))
            .collect();
        if !columns.is_empty() {
            diffs.push(RowDiff::Changed {
                table: table.clone(),
                row: row.clone(),
                columns,
            });
        }
    }
    for row in theirs.keys().filter(|row| !mine.contains_key(*row)) {
        diffs.push(RowDiff::Missing {
            table: table.clone(),
            row: row.clone(),
        });
    }
    diffs
}

/// Compares the replay's database with the one at `other_url` and writes the result to `out`; refused
/// (exit 3) when they differ.
pub async fn run(
    replay: &PgPool,
    other_url: &str,
    orders: &[String],
    ignore: &[String],
    out: &mut (dyn Write + Send),
) -> Result<(), ReplayError> {
    let other_name = super::database::name(other_url);
    let other = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(other_url)
        .await
        .map_err(|e| {
            ReplayError::Failed(format!(
                "cannot connect to --diff-against database {other_name}: {e}"
            ))
        })?;
    let ignore: BTreeSet<String> = ignore.iter().cloned().collect();
    let db = |e: sqlx::Error| ReplayError::Failed(format!("comparing databases: {e}"));
    let tables: Vec<String> = sqlx::query_scalar(
        "select table_name::text from information_schema.tables
         where table_schema = 'public' and table_type = 'BASE TABLE'
           and table_name not like 'choreo\\_%' and table_name <> '_sqlx_migrations'
         order by 1",
    )
    .fetch_all(replay)
    .await
    .map_err(db)?;
    let mut diffs = Vec::new();
    for table in &tables {
        let columns: Vec<Column> = sqlx::query_as::<_, (String, String, bool)>(
            "select column_name::text, data_type::text,
                    coalesce(column_default like 'nextval(%', false) or is_identity = 'YES'
             from information_schema.columns
             where table_schema = 'public' and table_name = $1 order by ordinal_position",
        )
        .bind(table)
        .fetch_all(replay)
        .await
        .map_err(db)?
        .into_iter()
        .map(|(name, data_type, generated)| Column {
            name,
            data_type,
            generated,
        })
        .collect();
        let keys: Vec<Vec<String>> = sqlx::query_scalar(
            "select array(select a.attname::text
                          from unnest(c.conkey) with ordinality k(n, i)
                          join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.n
                          order by k.i)
             from pg_constraint c
             where c.conrelid = ('public.' || quote_ident($1))::regclass and c.contype in ('p', 'u')
             order by c.contype = 'p' desc, c.conname",
        )
        .bind(table)
        .fetch_all(replay)
        .await
        .map_err(db)?;
        let shape = shape(table, &columns, &keys, &ignore);
        let by_order = columns.iter().any(|c| c.name == "order_id");
        let mine = rows(replay, table, by_order, orders).await.map_err(db)?;
        let theirs = match rows(&other, table, by_order, orders).await {
            Ok(rows) => rows,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => {
                writeln!(out, "{table}: missing in {other_name}").map_err(output_failed)?;
                diffs.push(RowDiff::Missing {
                    table: table.clone(),
                    row: "(the whole table)".into(),
                });
                continue;
            }
            Err(e) => return Err(db(e)),
        };
        diffs.extend(compare(&shape, &mine, &theirs));
    }
    other.close().await;
    if diffs.is_empty() {
        writeln!(out, "diff against {other_name}: no differences").map_err(output_failed)?;
        return Ok(());
    }
    writeln!(out, "diff against {other_name}:").map_err(output_failed)?;
    for diff in &diffs {
        writeln!(out, "  {diff}").map_err(output_failed)?;
    }
    Err(ReplayError::Refused(format!(
        "{} difference(s) between the replay and {other_name}",
        diffs.len()
    )))
}

/// `table`'s rows as JSON objects; only `orders`' when `by_order`.
async fn rows(
    pool: &PgPool,
    table: &str,
    by_order: bool,
    orders: &[String],
) -> Result<Vec<Json>, sqlx::Error> {
    let quoted = format!("\"{}\"", table.replace('"', "\"\""));
    if by_order {
        sqlx::query_scalar(&format!(
            "select to_jsonb(t) from {quoted} t where order_id = any($1)"
        ))
        .bind(orders)
        .fetch_all(pool)
        .await
    } else {
        sqlx::query_scalar(&format!("select to_jsonb(t) from {quoted} t"))
            .fetch_all(pool)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(name: &str, data_type: &str) -> Column {
        Column {
            name: name.into(),
            data_type: data_type.into(),
            generated: false,
        }
    }

    fn shipments() -> TableShape {
        let columns = [
            column("order_id", "text"),
            column("shipment_id", "text"),
            column("carrier", "text"),
            column("scheduled_at", "timestamp with time zone"),
        ];
        shape(
            "shipments",
            &columns,
            &[vec!["order_id".into()]],
            &["shipment_id".to_owned()].into(),
        )
    }

    #[test]
    fn timestamps_and_generated_ids_are_not_compared() {
        let shape = shipments();
        assert_eq!(shape.compared, ["order_id", "carrier"]);
        assert_eq!(shape.key, ["order_id"]);
    }

    #[test]
    fn a_key_made_of_ignored_columns_gives_way_to_a_unique_one() {
        let columns = [column("payment_id", "uuid"), column("order_id", "text")];
        let keys = [vec!["payment_id".into()], vec!["order_id".into()]];
        let shape = shape(
            "payments",
            &columns,
            &keys,
            &["payment_id".to_owned()].into(),
        );
        assert_eq!(shape.key, ["order_id"]);
    }

    #[test]
    fn rows_are_missing_extra_or_changed() {
        let replay = [
            json!({"order_id": "a", "carrier": "dhl", "shipment_id": "x"}),
            json!({"order_id": "b", "carrier": "ups", "shipment_id": "y"}),
        ];
        let other = [
            json!({"order_id": "a", "carrier": "dhl", "shipment_id": "other"}),
            json!({"order_id": "c", "carrier": "ups", "shipment_id": "z"}),
        ];
        let diffs = compare(&shipments(), &replay, &other);
        let text: Vec<String> = diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "shipments [order_id=\"b\"]: extra in the replay",
                "shipments [order_id=\"c\"]: missing in the replay"
            ]
        );
        let changed = [json!({"order_id": "a", "carrier": "ups"})];
        let diffs = compare(&shipments(), &replay[..1], &changed);
        assert_eq!(
            diffs[0].to_string(),
            "shipments [order_id=\"a\"]: changed\n    carrier: replay \"dhl\", compared \"ups\""
        );
    }

    #[test]
    fn rows_without_a_key_are_compared_as_a_multiset() {
        let columns = [
            Column {
                generated: true,
                ..column("id", "bigint")
            },
            column("order_id", "text"),
            column("event_type", "text"),
        ];
        let shape = shape(
            "order_timeline",
            &columns,
            &[vec!["id".into()]],
            &BTreeSet::new(),
        );
        assert!(shape.key.is_empty());
        let row = |id: i64, t: &str| json!({"id": id, "order_id": "a", "event_type": t});
        let same = compare(
            &shape,
            &[row(1, "A"), row(2, "B")],
            &[row(7, "B"), row(9, "A")],
        );
        assert!(same.is_empty(), "{same:?}");
        let diffs = compare(&shape, &[row(1, "A"), row(2, "A")], &[row(7, "A")]);
        assert_eq!(diffs.len(), 1);
        assert!(matches!(diffs[0], RowDiff::Extra { .. }));
    }
}
