//! The inventory's SQL: the `stock` and `reservations` tables, read and written inside the
//! caller's transaction. No rules live here beyond what the schema's constraints enforce; what to
//! write is decided by [`crate::domain`].

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shop_events::values::Sku;
use sqlx::{PgConnection, PgPool};

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReservationRow {
    pub order_id: String,
    pub reservation_id: Option<String>,
    pub status: String,
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
    let rows: Vec<StockRow> = sqlx::query_as(
        "select sku, available, reserved, sold, received from stock
         where sku = any($1) order by sku for update",
    )
    .bind(&skus)
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
    sqlx::query(
        "update stock s set available = u.available, reserved = u.reserved, sold = u.sold
         from unnest($1::text[], $2::int[], $3::int[], $4::int[]) as u(sku, available, reserved, sold)
         where s.sku = u.sku",
    )
    .bind(&skus)
    .bind(column(|l| l.available))
    .bind(column(|l| l.reserved))
    .bind(column(|l| l.sold))
    .execute(conn)
    .await?;
    Ok(())
}

/// Whether the order was seen before (reserved or rejected).
pub async fn reservation_exists(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from reservations where order_id = $1)")
        .bind(order_id)
        .fetch_one(conn)
        .await
}

/// Records a reservation; `false` if the order already has one (nothing is written then).
pub async fn insert_reservation(
    conn: &mut PgConnection,
    new: &NewReservation<'_>,
) -> Result<bool, sqlx::Error> {
    let items: Vec<Item> = new
        .items
        .iter()
        .map(|(sku, &quantity)| Item {
            sku: sku.to_string(),
            quantity,
        })
        .collect();
    let inserted = sqlx::query(
        "insert into reservations (order_id, reservation_id, status, items, currency, amount_minor, reason)
         values ($1, $2, $3, $4, $5, $6, $7) on conflict (order_id) do nothing",
    )
    .bind(new.order_id)
    .bind(new.reservation_id)
    .bind(new.status.as_str())
    .bind(sqlx::types::Json(items))
    .bind(new.currency)
    .bind(new.amount_minor)
    .bind(new.reason)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// A stored reservation, locked for the rest of the transaction.
#[derive(Debug, Clone)]
pub struct LockedReservation {
    pub reservation_id: Option<String>,
    pub status: Status,
    pub items: BTreeMap<Sku, i32>,
}

/// The SKUs held by the reservations of `order_ids` (read without locking; a reservation's
/// items never change).
pub async fn reserved_skus(
    conn: &mut PgConnection,
    order_ids: &[String],
) -> Result<Vec<Sku>, sqlx::Error> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let skus: Vec<String> = sqlx::query_scalar(
        "select distinct item->>'sku' from reservations, jsonb_array_elements(items) item
         where order_id = any($1) and status = 'reserved'",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    Ok(skus.iter().filter_map(|s| Sku::parse(s).ok()).collect())
}

/// Locks the order's reservation row, if there is one.
pub async fn lock_reservation(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<LockedReservation>, sqlx::Error> {
    let row: Option<(Option<String>, String, sqlx::types::Json<Vec<Item>>)> = sqlx::query_as(
        "select reservation_id, status, items from reservations where order_id = $1 for update",
    )
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    let Some((reservation_id, status, sqlx::types::Json(items))) = row else {
        return Ok(None);
    };
    let status = Status::parse(&status)
        .ok_or_else(|| sqlx::Error::Decode(format!("unknown status {status:?}").into()))?;
    let items = items
        .into_iter()
        .map(|item| Ok((Sku::parse(&item.sku).map_err(decode_error)?, item.quantity)))
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(Some(LockedReservation {
        reservation_id,
        status,
        items,
    }))
}

/// Moves the order's reservation to `status`, with `reason`.
pub async fn set_status(
    conn: &mut PgConnection,
    order_id: &str,
    status: Status,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update reservations set status = $2, reason = coalesce($3, reason), updated_at = now()
         where order_id = $1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stock of one SKU.
pub async fn stock(pool: &PgPool, sku: &Sku) -> Result<Option<StockRow>, sqlx::Error> {
    sqlx::query_as("select sku, available, reserved, sold, received from stock where sku = $1")
        .bind(sku.as_str())
        .fetch_optional(pool)
        .await
}

/// The stock of every SKU, by SKU.
pub async fn all_stock(pool: &PgPool) -> Result<Vec<StockRow>, sqlx::Error> {
    sqlx::query_as("select sku, available, reserved, sold, received from stock order by sku")
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
    sqlx::query(
        "insert into stock (sku, available, reserved, sold, received) values ($1, 0, 0, 0, 0)
         on conflict (sku) do nothing",
    )
    .bind(sku.as_str())
    .execute(&mut *tx)
    .await?;
    let current = lock_stock(&mut tx, [sku]).await?;
    let Some(after) = current.get(sku).and_then(|levels| levels.receive(quantity)) else {
        return Ok(None);
    };
    let row: StockRow = sqlx::query_as(
        "update stock set available = $2, received = $3 where sku = $1
         returning sku, available, reserved, sold, received",
    )
    .bind(sku.as_str())
    .bind(after.available)
    .bind(after.received)
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
    sqlx::query_as(
        "select order_id, reservation_id, status, items, currency, amount_minor, reason,
                created_at, updated_at
         from reservations where $1::text is null or order_id = $1
         order by created_at desc limit 100",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}
