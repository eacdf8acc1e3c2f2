//! The inventory's SQL: the `stock` and `reservations` tables, read and written inside the
//! caller's transaction. No rules live here beyond what the schema's constraints enforce; what to
//! write is decided by [`crate::domain`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_events::values::Sku;
use sqlx::{PgConnection, PgPool};

use crate::domain::batch::Held;
use crate::domain::{Levels, ReceiptQuantity, Status};

/// One row of `stock`, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct StockRow {
    pub sku: String,
    pub available: i32,
    pub reserved: i32,
    pub sold: i32,
    pub received: i32,
}

impl StockRow {
    fn levels(&self) -> Levels {
        Levels {
            available: self.available,
            reserved: self.reserved,
            sold: self.sold,
            received: self.received,
        }
    }
}

/// One SKU's quantity in a reservation's `items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub sku: String,
    pub quantity: i32,
}

/// One row of `reservations`, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationRow {
    pub order_id: String,
    pub reservation_id: Option<String>,
    pub status: Status,
    pub items: sqlx::types::Json<Vec<Item>>,
    pub currency: String,
    pub amount_minor: i64,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A reservation to record: what the order asked and how it was decided.
#[derive(Debug, Clone)]
pub struct NewReservation<'a> {
    pub order_id: &'a str,
    pub reservation_id: Option<&'a str>,
    pub status: Status,
    pub items: &'a BTreeMap<Sku, i32>,
    pub currency: &'a str,
    pub amount_minor: i64,
    pub reason: Option<&'a str>,
}

fn decode_error(error: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}

/// Locks the stock rows of `skus` in SKU order (so two orders never deadlock) and returns their
/// levels; SKUs with no row are absent.
pub async fn lock_stock<'a>(
    conn: &mut PgConnection,
    skus: impl IntoIterator<Item = &'a Sku>,
) -> Result<BTreeMap<Sku, Levels>, sqlx::Error> {
    let skus: Vec<&str> = skus.into_iter().map(Sku::as_str).collect();
    let rows = sqlx::query_as!(
        StockRow,
        "select sku, available, reserved, sold, received from stock
         where sku = any($1) order by sku for update",
        &skus as &[&str],
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| Ok((Sku::parse(&row.sku).map_err(decode_error)?, row.levels())))
        .collect()
}

/// Writes new levels of the SKUs in `levels` (rows locked by [`lock_stock`]).
pub async fn write_levels(
    conn: &mut PgConnection,
    levels: &BTreeMap<Sku, Levels>,
) -> Result<(), sqlx::Error> {
    let skus: Vec<&str> = levels.keys().map(Sku::as_str).collect();
    let column = |get: fn(&Levels) -> i32| levels.values().map(get).collect::<Vec<i32>>();
    sqlx::query!(
        "update stock s set available = u.available, reserved = u.reserved, sold = u.sold
         from unnest($1::text[], $2::int[], $3::int[], $4::int[]) as u(sku, available, reserved, sold)
         where s.sku = u.sku",
        &skus as &[&str],
        &column(|l| l.available),
        &column(|l| l.reserved),
        &column(|l| l.sold),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Locks the stored reservations of `order_ids` (in order-id order, so batches never deadlock
/// on them) and returns them by order id.
pub async fn lock_reservations(
    conn: &mut PgConnection,
    order_ids: &[&str],
) -> Result<std::collections::HashMap<String, Held>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(Default::default());
    }
    let rows = sqlx::query!(
        r#"select order_id, reservation_id, status as "status: Status",
                  items as "items: sqlx::types::Json<Vec<Item>>"
           from reservations where order_id = any($1) order by order_id for update"#,
        order_ids as &[&str],
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let items = row
                .items
                .0
                .into_iter()
                .map(|item| Ok((Sku::parse(&item.sku).map_err(decode_error)?, item.quantity)))
                .collect::<Result<_, sqlx::Error>>()?;
            let held = Held {
                reservation_id: row.reservation_id,
                status: row.status,
                items,
            };
            Ok((row.order_id, held))
        })
        .collect()
}

/// Inserts new reservations in one statement; returns how many were inserted (fewer than
/// given when an order already had one: the caller must not trust its plan then).
pub async fn insert_reservations(
    conn: &mut PgConnection,
    rows: &[NewReservation<'_>],
) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let items: Vec<sqlx::types::Json<Vec<Item>>> = rows
        .iter()
        .map(|row| {
            sqlx::types::Json(
                row.items
                    .iter()
                    .map(|(sku, &quantity)| Item {
                        sku: sku.to_string(),
                        quantity,
                    })
                    .collect(),
            )
        })
        .collect();
    fn column<'r>(
        rows: &'r [NewReservation<'_>],
        get: impl Fn(&'r NewReservation<'_>) -> Option<&'r str>,
    ) -> Vec<Option<&'r str>> {
        rows.iter().map(get).collect()
    }
    let inserted = sqlx::query!(
        "insert into reservations (order_id, reservation_id, status, items, currency, amount_minor, reason)
         select * from unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::int8[], $7::text[])
         on conflict (order_id) do nothing",
        &column(rows, |r| Some(r.order_id)) as &[Option<&str>],
        &column(rows, |r| r.reservation_id) as &[Option<&str>],
        &column(rows, |r| Some(r.status.as_str())) as &[Option<&str>],
        &items as &[sqlx::types::Json<Vec<Item>>],
        &column(rows, |r| Some(r.currency)) as &[Option<&str>],
        &rows.iter().map(|r| r.amount_minor).collect::<Vec<i64>>(),
        &column(rows, |r| r.reason) as &[Option<&str>],
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted)
}

/// Moves stored reservations to new statuses (with a reason where one is given), in one
/// statement: (order id, status, reason).
pub async fn set_statuses(
    conn: &mut PgConnection,
    changes: &[(&str, Status, Option<&str>)],
) -> Result<(), sqlx::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    sqlx::query!(
        "update reservations r set status = u.status, reason = coalesce(u.reason, r.reason),
                updated_at = now()
         from unnest($1::text[], $2::text[], $3::text[]) as u(order_id, status, reason)
         where r.order_id = u.order_id",
        &changes.iter().map(|c| c.0).collect::<Vec<_>>() as &[&str],
        &changes.iter().map(|c| c.1.as_str()).collect::<Vec<_>>() as &[&str],
        &changes.iter().map(|c| c.2).collect::<Vec<_>>() as &[Option<&str>],
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The stock of one SKU.
pub async fn stock(pool: &PgPool, sku: &Sku) -> Result<Option<StockRow>, sqlx::Error> {
    sqlx::query_as!(
        StockRow,
        "select sku, available, reserved, sold, received from stock where sku = $1",
        sku.as_str(),
    )
    .fetch_optional(pool)
    .await
}

/// The stock of every SKU, by SKU.
pub async fn all_stock(pool: &PgPool) -> Result<Vec<StockRow>, sqlx::Error> {
    sqlx::query_as!(
        StockRow,
        "select sku, available, reserved, sold, received from stock order by sku"
    )
    .fetch_all(pool)
    .await
}

/// Adds a receipt to a SKU's stock, creating its row if it is new. `None` if the levels would
/// overflow (nothing is written then).
pub async fn receive(
    pool: &PgPool,
    sku: &Sku,
    quantity: ReceiptQuantity,
) -> Result<Option<StockRow>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "insert into stock (sku, available, reserved, sold, received) values ($1, 0, 0, 0, 0)
         on conflict (sku) do nothing",
        sku.as_str(),
    )
    .execute(&mut *tx)
    .await?;
    let current = lock_stock(&mut tx, [sku]).await?;
    let Some(after) = current.get(sku).and_then(|levels| levels.receive(quantity)) else {
        return Ok(None);
    };
    let row = sqlx::query_as!(
        StockRow,
        "update stock set available = $2, received = $3 where sku = $1
         returning sku, available, reserved, sold, received",
        sku.as_str(),
        after.available,
        after.received,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(row))
}

/// The reservations of one order, or the latest 100 when `order_id` is `None`.
pub async fn reservations(
    pool: &PgPool,
    order_id: Option<&str>,
) -> Result<Vec<ReservationRow>, sqlx::Error> {
    sqlx::query_as!(
        ReservationRow,
        r#"select order_id, reservation_id, status as "status: Status",
                  items as "items: sqlx::types::Json<Vec<Item>>", currency, amount_minor, reason,
                  created_at, updated_at
           from reservations where $1::text is null or order_id = $1
           order by created_at desc limit 100"#,
        order_id,
    )
    .fetch_all(pool)
    .await
}
