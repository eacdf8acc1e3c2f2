//! The order service's SQL: orders, their timeline and the catalogue. Plain queries over a
//! connection or transaction the caller holds; no decisions here.

use std::collections::BTreeMap;

use choreo::envelope::Cause;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shop_events::values::{Currency, Money, Sku};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::domain::{CancelReason, NewOrder, Status, StatusKind};

/// An order as stored. Only read from the table (its status checked whole), never built
/// elsewhere.
#[derive(Debug, Clone)]
pub struct OrderRow {
    pub order_id: String,
    pub customer_id: String,
    pub status: StatusKind,
    pub cancel_reason: Option<CancelReason>,
    pub lines: sqlx::types::Json<Vec<LineJson>>,
    pub currency: String,
    pub total_minor: i64,
    pub payment_id: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The order's OrderPlaced (none in rows older than the column).
    pub placed_cause: Option<Cause>,
    /// The event the order's latest move followed, if any was kept.
    pub last_cause: Option<Cause>,
    /// `status` and `cancel_reason` read together.
    full_status: Status,
}

impl OrderRow {
    /// The stored status with its cancel reason.
    pub fn status(&self) -> Status {
        self.full_status
    }

    /// The event work done later for the order (its deadline) continues and names: the event
    /// its latest move followed, else its OrderPlaced; none for a row that kept neither.
    pub fn kept_cause(&self) -> Option<&Cause> {
        self.last_cause.as_ref().or(self.placed_cause.as_ref())
    }
}

/// A row of `orders` as the query macros read it, before its status is checked whole.
struct StoredOrder {
    order_id: String,
    customer_id: String,
    status: StatusKind,
    cancel_reason: Option<CancelReason>,
    lines: sqlx::types::Json<Vec<LineJson>>,
    currency: String,
    total_minor: i64,
    payment_id: Option<String>,
    placed_at: DateTime<Utc>,
    deadline_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    placed_cause: Option<Json<Cause>>,
    last_cause: Option<Json<Cause>>,
}

impl TryFrom<StoredOrder> for OrderRow {
    type Error = sqlx::Error;

    /// A cancelled order without a reason fails like a value that does not decode.
    fn try_from(row: StoredOrder) -> Result<Self, sqlx::Error> {
        let full_status = Status::from_parts(row.status, row.cancel_reason).ok_or_else(|| {
            sqlx::Error::Decode(
                format!("order {} is cancelled without a reason", row.order_id).into(),
            )
        })?;
        Ok(Self {
            order_id: row.order_id,
            customer_id: row.customer_id,
            status: row.status,
            cancel_reason: row.cancel_reason,
            lines: row.lines,
            currency: row.currency,
            total_minor: row.total_minor,
            payment_id: row.payment_id,
            placed_at: row.placed_at,
            deadline_at: row.deadline_at,
            updated_at: row.updated_at,
            placed_cause: row.placed_cause.map(|c| c.0),
            last_cause: row.last_cause.map(|c| c.0),
            full_status,
        })
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
#[derive(Debug, Clone, Serialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event_type: String,
    pub producer: String,
    pub detail: String,
}

/// The unit prices of `skus` that the catalogue knows.
pub async fn prices(pool: &PgPool, skus: &[String]) -> Result<BTreeMap<Sku, Money>, sqlx::Error> {
    let rows = sqlx::query!(
        "select sku, currency, unit_price_minor from catalog where sku = any($1)",
        skus,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let price =
                Money::new(row.unit_price_minor, Currency::parse(&row.currency).ok()?).ok()?;
            Some((Sku::parse(&row.sku).ok()?, price))
        })
        .collect())
}

/// Sets a SKU's unit price.
pub async fn set_price(pool: &PgPool, sku: &Sku, price: Money) -> Result<(), sqlx::Error> {
    let currency = price.currency();
    sqlx::query!(
        "insert into catalog (sku, currency, unit_price_minor) values ($1, $2, $3)
         on conflict (sku) do update set currency = excluded.currency, unit_price_minor = excluded.unit_price_minor",
        sku.as_str(),
        currency.as_str(),
        price.minor(),
    )
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
    let inserted = sqlx::query!(
        "insert into orders (order_id, customer_id, status, lines, currency, total_minor, placed_at, deadline_at, updated_at)
         values ($1, $2, 'placed', $3, $4, $5, $6, $7, $6) on conflict (order_id) do nothing",
        order.order_id.as_str(),
        order.customer_id.as_str(),
        sqlx::types::Json(lines_json(order)) as _,
        order.currency.as_str(),
        order.total.minor(),
        placed_at,
        deadline_at,
    )
    .execute(tx)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The order, locked until the transaction ends.
pub async fn lock(tx: &mut PgConnection, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as!(
        StoredOrder,
        r#"select order_id, customer_id, status as "status: StatusKind",
                  cancel_reason as "cancel_reason: CancelReason",
                  lines as "lines: sqlx::types::Json<Vec<LineJson>>",
                  currency, total_minor, payment_id, placed_at, deadline_at, updated_at,
                  placed_cause as "placed_cause: Json<Cause>",
                  last_cause as "last_cause: Json<Cause>"
           from orders where order_id = $1 for update"#,
        order_id,
    )
    .fetch_optional(tx)
    .await?
    .map(OrderRow::try_from)
    .transpose()
}

pub async fn get(pool: &PgPool, order_id: &str) -> Result<Option<OrderRow>, sqlx::Error> {
    sqlx::query_as!(
        StoredOrder,
        r#"select order_id, customer_id, status as "status: StatusKind",
                  cancel_reason as "cancel_reason: CancelReason",
                  lines as "lines: sqlx::types::Json<Vec<LineJson>>",
                  currency, total_minor, payment_id, placed_at, deadline_at, updated_at,
                  placed_cause as "placed_cause: Json<Cause>",
                  last_cause as "last_cause: Json<Cause>"
           from orders where order_id = $1"#,
        order_id,
    )
    .fetch_optional(pool)
    .await?
    .map(OrderRow::try_from)
    .transpose()
}

/// Open orders whose deadline has passed, locked (skipping any another sweeper holds).
pub async fn lock_overdue(tx: &mut PgConnection, limit: i64) -> Result<Vec<OrderRow>, sqlx::Error> {
    sqlx::query_as!(
        StoredOrder,
        r#"select order_id, customer_id, status as "status: StatusKind",
                  cancel_reason as "cancel_reason: CancelReason",
                  lines as "lines: sqlx::types::Json<Vec<LineJson>>",
                  currency, total_minor, payment_id, placed_at, deadline_at, updated_at,
                  placed_cause as "placed_cause: Json<Cause>",
                  last_cause as "last_cause: Json<Cause>"
           from orders where status in ('placed', 'reserved') and deadline_at <= now()
           order by deadline_at limit $1 for update skip locked"#,
        limit,
    )
    .fetch_all(tx)
    .await?
    .into_iter()
    .map(OrderRow::try_from)
    .collect()
}

/// Keeps the order's own OrderPlaced, `placed`, for the events written for it later.
pub async fn keep_placed_cause(
    tx: &mut PgConnection,
    order_id: &str,
    placed: &Cause,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update orders set placed_cause = $2 where order_id = $1",
        order_id,
        Json(placed) as _,
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// Moves the order to `status`; `cause`, the event the move followed, is kept as its latest
/// (a move without one keeps the one before).
pub async fn set_status(
    tx: &mut PgConnection,
    order_id: &str,
    status: Status,
    payment_id: Option<&str>,
    cause: Option<&Cause>,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update orders set status = $2, cancel_reason = $3, payment_id = coalesce($4, payment_id),
                last_cause = coalesce($5, last_cause), updated_at = now()
         where order_id = $1",
        order_id,
        status.kind() as StatusKind,
        status.cancel_reason() as Option<CancelReason>,
        payment_id,
        cause.map(Json) as _,
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn append_timeline(
    tx: &mut PgConnection,
    order_id: &str,
    entry: &TimelineEntry,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "insert into order_timeline (order_id, at, event_type, producer, detail) values ($1, $2, $3, $4, $5)",
        order_id,
        entry.at,
        entry.event_type,
        entry.producer,
        entry.detail,
    )
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn timeline(pool: &PgPool, order_id: &str) -> Result<Vec<TimelineEntry>, sqlx::Error> {
    sqlx::query_as!(
        TimelineEntry,
        "select at, event_type, producer, detail from order_timeline where order_id = $1 order by at, id",
        order_id,
    )
    .fetch_all(pool)
    .await
}

/// Orders per status, and the total of confirmed and shipped orders in minor units.
pub async fn summary(pool: &PgPool) -> Result<(Vec<(String, i64)>, i64), sqlx::Error> {
    let by_status = sqlx::query!(
        r#"select status, count(*) as "count!" from orders group by status order by status"#
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|row| (row.status, row.count))
    .collect();
    let confirmed = sqlx::query_scalar!(
        r#"select coalesce(sum(total_minor), 0)::bigint as "total!" from orders where status in ('confirmed', 'shipped')"#,
    )
    .fetch_one(pool)
    .await?;
    Ok((by_status, confirmed))
}

/// The sagas still open: orders placed or reserved, not yet confirmed or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpenSagas {
    pub open_sagas: i64,
    /// Seconds since the oldest open order was placed (0 when none is open).
    pub oldest_open_secs: f64,
}

/// How many sagas are open and how old the oldest is (a read of the partial index
/// `orders_open_by_placed_at`, which holds only the open orders).
pub async fn open_sagas(pool: &PgPool) -> Result<OpenSagas, sqlx::Error> {
    sqlx::query_as!(
        OpenSagas,
        r#"select count(*) as "open_sagas!",
                  coalesce(extract(epoch from now() - min(placed_at)), 0)::float8 as "oldest_open_secs!"
           from orders where status in ('placed', 'reserved')"#,
    )
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use choreo::envelope::Metadata;

    use super::*;

    fn cause(event_type: &str) -> Cause {
        let mut event = Metadata::new(event_type, "order-1", "test");
        event.traceparent = Some(format!(
            "00-{:032x}-00f067aa0ba902b7-01",
            event.event_id.as_u128()
        ));
        Cause::from(&event)
    }

    fn row(placed: Option<&Cause>, last: Option<&Cause>) -> OrderRow {
        let now = Utc::now();
        OrderRow::try_from(StoredOrder {
            order_id: "order-1".into(),
            customer_id: "cus".into(),
            status: StatusKind::Placed,
            cancel_reason: None,
            lines: Json(vec![]),
            currency: "EUR".into(),
            total_minor: 0,
            payment_id: None,
            placed_at: now,
            deadline_at: now,
            updated_at: now,
            placed_cause: placed.cloned().map(Json),
            last_cause: last.cloned().map(Json),
        })
        .unwrap()
    }

    #[test]
    fn later_work_continues_the_latest_move_else_the_order_placed() {
        let (placed, reserved) = (cause("OrderPlaced"), cause("InventoryReserved"));
        assert_eq!(row(Some(&placed), None).kept_cause(), Some(&placed));
        assert_eq!(
            row(Some(&placed), Some(&reserved)).kept_cause(),
            Some(&reserved)
        );
        assert_eq!(row(None, None).kept_cause(), None);
    }

    #[test]
    fn an_event_caused_by_a_kept_cause_names_it_and_keeps_its_own_trace_when_it_has_one() {
        let placed = cause("OrderPlaced");
        let own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let mut request = Metadata::new("shop.order.OrderCancelled", "order-1", "order");
        request.traceparent = Some(own.into());
        let cancelled = request.caused_by(&placed);
        assert_eq!(cancelled.causation_id, Some(placed.event_id));
        assert_eq!(cancelled.traceparent.as_deref(), Some(own));

        let mut untraced = Metadata::new("shop.order.OrderCancelled", "order-1", "order");
        untraced.traceparent = None;
        let cancelled = untraced.caused_by(&placed);
        assert_eq!(cancelled.traceparent, placed.traceparent);
    }
}
