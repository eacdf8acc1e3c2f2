//! The order service's SQL: orders, their timeline and the catalogue. Plain queries over a
//! connection or transaction the caller holds; no decisions here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use shop_events::values::{Currency, Money, Sku};
use sqlx::{PgConnection, PgPool};

use crate::domain::{NewOrder, Status};

/// An order as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: String,
    pub status: String,
    pub cancel_reason: Option<String>,
    pub lines: sqlx::types::Json<Vec<LineJson>>,
    pub currency: String,
    pub total_minor: i64,
    pub payment_id: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrderRow {
    /// The stored status; a row the schema's check lets through always reads.
    pub fn status(&self) -> Status {
        Status::from_parts(&self.status, self.cancel_reason.as_deref())
            .unwrap_or_else(|| panic!("order {} has status {:?}", self.order_id, self.status))
    }
}

/// A line as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct LineJson {
    pub sku: String,
    pub quantity: i64,
    pub unit_price_minor: i64,
}

/// One step of an order's saga as the order service saw it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub producer: String,
    pub detail: String,
}

/// The unit prices of `skus` that the catalogue knows.
pub async fn prices(pool: &PgPool, skus: &[String]) -> Result<BTreeMap<Sku, Money>, sqlx::Error> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("select sku, currency, unit_price_minor from catalog where sku = any($1)")
            .bind(skus)
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(sku, currency, minor)| {
            let price = Money::new(minor, Currency::parse(&currency).ok()?).ok()?;
            Some((Sku::parse(&sku).ok()?, price))
        })
        .collect())
}

/// Sets a SKU's unit price.
pub async fn set_price(pool: &PgPool, sku: &Sku, price: Money) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into catalog (sku, currency, unit_price_minor) values ($1, $2, $3)
         on conflict (sku) do update set currency = excluded.currency, unit_price_minor = excluded.unit_price_minor",
    )
    .bind(sku.as_str())
    .bind(price.currency().as_str())
    .bind(price.minor())
    .execute(pool)
    .await?;
    Ok(())
}

pub fn lines_json(order: &NewOrder) -> Vec<LineJson> {
    order
        .lines
        .iter()
        .map(|l| LineJson {
            sku: l.sku.to_string(),
            quantity: i64::from(l.quantity),
            unit_price_minor: l.unit_price.minor(),
        })
        .collect()
}

/// Inserts a new order; `false` when an order with its id already exists.
pub async fn insert(
    tx: &mut PgConnection,
    order: &NewOrder,
    placed_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "insert into orders (order_id, customer_id, status, lines, currency, total_minor, placed_at, deadline_at, updated_at)
         values ($1, $2, 'placed', $3, $4, $5, $6, $7, $6) on conflict (order_id) do nothing",
    )
    .bind(order.order_id.as_str())
    .bind(order.customer_id.as_str())
    .bind(sqlx::types::Json(lines_json(order)))
    .bind(order.currency.as_str())
    .bind(order.total.minor())
    .bind(placed_at)
    .bind(deadline_at)
    .execute(tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

const COLUMNS: &str = "order_id, customer_id, status, cancel_reason, lines, currency, total_minor, payment_id, placed_at, deadline_at, updated_at";

/// The order, locked until the transaction ends.
pub async fn lock(tx: &mut PgConnection, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from orders where order_id = $1 for update"
    ))
    .bind(order_id)
    .fetch_optional(tx)
    .await
}

pub async fn get(pool: &PgPool, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!("select {COLUMNS} from orders where order_id = $1"))
        .bind(order_id)
        .fetch_optional(pool)
        .await
}

/// Open orders whose deadline has passed, locked (skipping any another sweeper holds).
pub async fn lock_overdue(tx: &mut PgConnection, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from orders where status in ('placed', 'reserved') and deadline_at <= now()
         order by deadline_at limit $1 for update skip locked"
    ))
    .bind(limit)
    .fetch_all(tx)
    .await
}

pub async fn set_status(
    tx: &mut PgConnection,
    order_id: &str,
    status: Status,
    payment_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update orders set status = $2, cancel_reason = $3, payment_id = coalesce($4, payment_id), updated_at = now()
         where order_id = $1",
    )
    .bind(order_id)
    .bind(status.as_str())
    .bind(status.cancel_reason().map(|r| r.as_str()))
    .bind(payment_id)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn append_timeline(
    tx: &mut PgConnection,
    order_id: &str,
    entry: &TimelineEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into order_timeline (order_id, at, event_type, producer, detail) values ($1, $2, $3, $4, $5)",
    )
    .bind(order_id)
    .bind(entry.at)
    .bind(&entry.event_type)
    .bind(&entry.producer)
    .bind(&entry.detail)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn timeline(pool: &PgPool, order_id: &str) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query_as(
        "select at, event_type, producer, detail from order_timeline where order_id = $1 order by at, id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}

/// Orders per status, and the total of confirmed and shipped orders in minor units.
pub async fn summary(pool: &PgPool) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
    let by_status =
        sqlx::query_as("select status, count(*) from orders group by status order by status")
            .fetch_all(pool)
            .await?;
    let confirmed: i64 = sqlx::query_scalar(
        "select coalesce(sum(total_minor), 0)::bigint from orders where status in ('confirmed', 'shipped')",
    )
    .fetch_one(pool)
    .await?;
    Ok((by_status, confirmed))
}

/// The sagas still open: orders placed or reserved, not yet confirmed or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, sqlx::FromRow)]
pub struct OpenSagas {
    pub open_sagas: i64,
    /// Seconds since the oldest open order was placed (0 when none is open).
    pub oldest_open_secs: f64,
}

/// How many sagas are open and how old the oldest is (a read of the partial index
/// `orders_open_by_placed_at`, which holds only the open orders).
pub async fn open_sagas(pool: &PgPool) -> Result<OpenSagas, sqlx::Error> {
    sqlx::query_as(
        "select count(*) as open_sagas,
                coalesce(extract(epoch from now() - min(placed_at)), 0)::float8 as oldest_open_secs
         from orders where status in ('placed', 'reserved')",
    )
    .fetch_one(pool)
    .await
}
