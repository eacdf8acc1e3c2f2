//! The payment service's SQL: what it knows of orders (`orders_seen`), its payments, the
//! worker's claim, and the read models of the HTTP API. No decisions here: callers load a
//! [`State`], let [`crate::domain::decide`] rule, and save what it returns.
//!
//! Lock order, to keep deadlocks out: the consumer locks the order's `orders_seen` row, then its
//! payment; the worker locks only payments.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::{State, Status};

/// What the service knows of an order apart from its payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderSeen {
    /// `None` until OrderPlaced is seen.
    pub customer_id: Option<String>,
    /// Cancelled before any payment existed.
    pub cancelled: bool,
}

/// One payment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: Uuid,
    pub order_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub customer_id: Option<String>,
    pub status: Status,
    pub cancel_requested: bool,
    pub attempts: i32,
    pub refund_attempts: i32,
    pub provider_reference: Option<String>,
    pub refund_reference: Option<String>,
    pub refunded_minor: i64,
    /// Why the last provider call did not settle it.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Payment {
    /// The state the domain decides on.
    pub fn state(&self) -> State {
        State {
            status: Some(self.status),
            cancelled: self.cancel_requested,
            charge_id: self.provider_reference.clone(),
            refund_id: self.refund_reference.clone(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    payment_id: Uuid,
    order_id: String,
    amount_minor: i64,
    currency: String,
    customer_id: Option<String>,
    status: String,
    cancel_requested: bool,
    attempts: i32,
    refund_attempts: i32,
    provider_reference: Option<String>,
    refund_reference: Option<String>,
    refunded_minor: i64,
    last_error: Option<String>,
    created_at: DateTime<Utc>,
}

impl TryFrom<Row> for Payment {
    type Error = sqlx::Error;

    fn try_from(row: Row) -> Result<Self, sqlx::Error> {
        let status = Status::parse(&row.status).ok_or_else(|| {
            sqlx::Error::Decode(format!("unknown payment status {:?}", row.status).into())
        })?;
        Ok(Self {
            payment_id: row.payment_id,
            order_id: row.order_id,
            amount_minor: row.amount_minor,
            currency: row.currency,
            customer_id: row.customer_id,
            status,
            cancel_requested: row.cancel_requested,
            attempts: row.attempts,
            refund_attempts: row.refund_attempts,
            provider_reference: row.provider_reference,
            refund_reference: row.refund_reference,
            refunded_minor: row.refunded_minor,
            last_error: row.last_error,
            created_at: row.created_at,
        })
    }
}

const COLUMNS: &str = "payment_id, order_id, amount_minor, currency, customer_id, status, \
    cancel_requested, attempts, refund_attempts, provider_reference, refund_reference, \
    refunded_minor, last_error, created_at";

fn rows(rows: Vec<Row>) -> Result<Vec<Payment>, sqlx::Error> {
    rows.into_iter().map(Payment::try_from).collect()
}

/// Locks the order's row (creating it if it is new) until the transaction ends, and returns it.
pub async fn lock_order(conn: &mut PgConnection, order_id: &str) -> Result<OrderSeen, sqlx::Error> {
    let (customer_id, cancelled) = sqlx::query_as(
        "insert into orders_seen (order_id) values ($1)
         on conflict (order_id) do update set order_id = excluded.order_id
         returning customer_id, cancelled",
    )
    .bind(order_id)
    .fetch_one(conn)
    .await?;
    Ok(OrderSeen {
        customer_id,
        cancelled,
    })
}

/// Records who pays for an order and how much (from OrderPlaced); a payment created before
/// OrderPlaced was seen learns its customer here.
pub async fn remember_order(
    conn: &mut PgConnection,
    order_id: &str,
    customer_id: &str,
    currency: &str,
    total_minor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into orders_seen (order_id, customer_id, currency, total_minor)
         values ($1, $2, $3, $4)
         on conflict (order_id) do update
         set customer_id = coalesce(orders_seen.customer_id, excluded.customer_id),
             currency = coalesce(orders_seen.currency, excluded.currency),
             total_minor = coalesce(orders_seen.total_minor, excluded.total_minor)",
    )
    .bind(order_id)
    .bind(customer_id)
    .bind(currency)
    .bind(total_minor)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "update payments set customer_id = $2, updated_at = now()
         where order_id = $1 and customer_id is null",
    )
    .bind(order_id)
    .bind(customer_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that an order was cancelled before any payment existed.
pub async fn mark_cancelled(conn: &mut PgConnection, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update orders_seen set cancelled = true where order_id = $1")
        .bind(order_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The order's payment, locked until the transaction ends.
pub async fn payment_of_order(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {COLUMNS} from payments where order_id = $1 for update"
    ))
    .bind(order_id)
    .fetch_optional(conn)
    .await?;
    row.map(Payment::try_from).transpose()
}

/// The payment, locked until the transaction ends.
pub async fn payment(
    conn: &mut PgConnection,
    payment_id: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "select {COLUMNS} from payments where payment_id = $1 for update"
    ))
    .bind(payment_id)
    .fetch_optional(conn)
    .await?;
    row.map(Payment::try_from).transpose()
}

/// A payment to create.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub payment_id: Uuid,
    pub order_id: &'a str,
    pub amount_minor: i64,
    pub currency: &'a str,
    pub customer_id: Option<&'a str>,
    pub state: &'a State,
}

/// Creates a payment in `state` (pending, or voided for an order already cancelled).
pub async fn insert_payment(
    conn: &mut PgConnection,
    new: &NewPayment<'_>,
) -> Result<Payment, sqlx::Error> {
    let status = new.state.status.unwrap_or(Status::Pending);
    let row: Row = sqlx::query_as(&format!(
        "insert into payments
           (payment_id, order_id, amount_minor, currency, customer_id, status, cancel_requested)
         values ($1, $2, $3, $4, $5, $6, $7)
         returning {COLUMNS}"
    ))
    .bind(new.payment_id)
    .bind(new.order_id)
    .bind(new.amount_minor)
    .bind(new.currency)
    .bind(new.customer_id)
    .bind(status.as_str())
    .bind(new.state.cancelled)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Saves a decided state; a worker's save also gives the payment back (`release`).
pub async fn save(
    conn: &mut PgConnection,
    payment_id: Uuid,
    state: &State,
    release: Option<Release<'_>>,
) -> Result<(), sqlx::Error> {
    let status = state.status.unwrap_or(Status::Pending);
    let (released, retry_in, error) = match release {
        Some(r) => (true, r.retry_in.unwrap_or_default(), r.error),
        None => (false, Duration::ZERO, None),
    };
    sqlx::query(
        "update payments set
           status = $2,
           cancel_requested = $3,
           provider_reference = $4,
           refund_reference = $5,
           refunded_minor = case when $5::text is null then 0 else amount_minor end,
           lease_until = case when $6 then null else lease_until end,
           next_attempt_at = case when $6 then now() + $7::float8 * interval '1 second'
                                  else next_attempt_at end,
           last_error = case when $6 then $8 else last_error end,
           updated_at = now()
         where payment_id = $1",
    )
    .bind(payment_id)
    .bind(status.as_str())
    .bind(state.cancelled)
    .bind(state.charge_id.as_deref())
    .bind(state.refund_id.as_deref())
    .bind(released)
    .bind(retry_in.as_secs_f64())
    .bind(error)
    .execute(conn)
    .await?;
    Ok(())
}

/// How a worker gives a payment back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Release<'a> {
    /// When to try again, if the provider is to be called again.
    pub retry_in: Option<Duration>,
    /// Why the last call did not settle it.
    pub error: Option<&'a str>,
}

/// Claims up to `limit` due payments for a worker: pending ones become `charging`, charging
/// ones whose worker's lease ran out become `in_doubt` (its request may have reached the
/// provider), payments in doubt and refunds owed keep their status; each is leased for `lease`
/// and its attempt is counted. Payments whose customer is not known yet wait.
pub async fn claim_due(
    pool: &PgPool,
    limit: usize,
    lease: Duration,
) -> Result<Vec<Payment>, sqlx::Error> {
    let claimed: Vec<Row> = sqlx::query_as(&format!(
        "update payments set
           status = case status when 'pending' then 'charging'
                                when 'charging' then 'in_doubt'
                                else status end,
           lease_until = now() + $2::float8 * interval '1 second',
           attempts = attempts + (status <> 'refund_pending')::int,
           refund_attempts = refund_attempts + (status = 'refund_pending')::int,
           updated_at = now()
         where payment_id in (
           select payment_id from payments
           where status in ('pending', 'charging', 'in_doubt', 'refund_pending')
             and next_attempt_at <= now()
             and (lease_until is null or lease_until < now())
             and customer_id is not null
           order by next_attempt_at
           limit $1
           for update skip locked)
         returning {COLUMNS}"
    ))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(lease.as_secs_f64())
    .fetch_all(pool)
    .await?;
    rows(claimed)
}

/// The payments with these ids (unlocked, for reconciliation to compare).
pub async fn payments_by_id(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Payment>, sqlx::Error> {
    let found: Vec<Row> = sqlx::query_as(&format!(
        "select {COLUMNS} from payments where payment_id = any($1)"
    ))
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows(found)
}

/// The payments of an order (at most one today), as the HTTP API shows them.
pub async fn payments_of_order(pool: &PgPool, order_id: &str) -> Result<Vec<Payment>, sqlx::Error> {
    let found: Vec<Row> = sqlx::query_as(&format!(
        "select {COLUMNS} from payments where order_id = $1 order by created_at"
    ))
    .bind(order_id)
    .fetch_all(pool)
    .await?;
    rows(found)
}

/// Money captured and refunded over all payments, and how many payments are in each status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub by_status: BTreeMap<String, i64>,
}

pub async fn summary(pool: &PgPool) -> Result<Summary, sqlx::Error> {
    let (captured_minor, refunded_minor): (i64, i64) = sqlx::query_as(
        "select coalesce(sum(amount_minor) filter (where provider_reference is not null), 0)::int8,
                coalesce(sum(refunded_minor), 0)::int8
         from payments",
    )
    .fetch_one(pool)
    .await?;
    let counts: Vec<(String, i64)> =
        sqlx::query_as("select status, count(*) from payments group by status")
            .fetch_all(pool)
            .await?;
    let mut by_status: BTreeMap<String, i64> = Status::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    by_status.extend(counts);
    Ok(Summary {
        captured_minor,
        refunded_minor,
        by_status,
    })
}
