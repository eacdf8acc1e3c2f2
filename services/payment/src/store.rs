//! The payment service's SQL: what it knows of orders (`orders_seen`), its payments, the
//! worker's claim, and the read models of the HTTP API. No decisions here: callers load a
//! [`State`], let [`crate::domain::decide`] rule, and save what it returns.
//!
//! Lock order, to keep deadlocks out: the consumer locks the order's `orders_seen` row, then its
//! payment; the worker locks only payments.

use std::collections::BTreeMap;
use std::time::Duration;

use choreo::envelope::Cause;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
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
    /// The event that created the payment (InventoryReserved); none in rows older than the
    /// column.
    pub cause: Option<Json<Cause>>,
    /// The event that asked for the money back (OrderCancelled), once one did.
    pub refund_cause: Option<Json<Cause>>,
}

impl Payment {
    /// The event the worker's next call for this payment continues, and the events it writes
    /// name: for a refund owed, the cancellation that asked for it (or, for a capture found
    /// late, the payment's own cause); otherwise the event that created the payment. None for
    /// a row that kept no cause: its events are written without one.
    pub fn kept_cause(&self) -> Option<&Cause> {
        let kept = match self.status {
            Status::RefundPending => self.refund_cause.as_ref().or(self.cause.as_ref()),
            _ => self.cause.as_ref(),
        };
        kept.map(|cause| &cause.0)
    }

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

/// Locks the order's row (creating it if it is new) until the transaction ends, and returns it.
pub async fn lock_order(conn: &mut PgConnection, order_id: &str) -> Result<OrderSeen, sqlx::Error> {
    sqlx::query_as!(
        OrderSeen,
        "insert into orders_seen (order_id) values ($1)
         on conflict (order_id) do update set order_id = excluded.order_id
         returning customer_id, cancelled",
        order_id,
    )
    .fetch_one(conn)
    .await
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
    sqlx::query!(
        "insert into orders_seen (order_id, customer_id, currency, total_minor)
         values ($1, $2, $3, $4)
         on conflict (order_id) do update
         set customer_id = coalesce(orders_seen.customer_id, excluded.customer_id),
             currency = coalesce(orders_seen.currency, excluded.currency),
             total_minor = coalesce(orders_seen.total_minor, excluded.total_minor)",
        order_id,
        customer_id,
        currency,
        total_minor,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "update payments set customer_id = $2, updated_at = now()
         where order_id = $1 and customer_id is null",
        order_id,
        customer_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that an order was cancelled before any payment existed.
pub async fn mark_cancelled(conn: &mut PgConnection, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update orders_seen set cancelled = true where order_id = $1",
        order_id,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The order's payment, locked until the transaction ends.
pub async fn payment_of_order(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as!(
        Payment,
        r#"select payment_id, order_id, amount_minor, currency, customer_id,
                  status as "status: Status", cancel_requested, attempts, refund_attempts,
                  provider_reference, refund_reference, refunded_minor, last_error, created_at,
                  cause as "cause: Json<Cause>", refund_cause as "refund_cause: Json<Cause>"
           from payments where order_id = $1 for update"#,
        order_id,
    )
    .fetch_optional(conn)
    .await
}

/// The payment, locked until the transaction ends.
pub async fn payment(
    conn: &mut PgConnection,
    payment_id: Uuid,
) -> Result<Option<Payment>, sqlx::Error> {
    sqlx::query_as!(
        Payment,
        r#"select payment_id, order_id, amount_minor, currency, customer_id,
                  status as "status: Status", cancel_requested, attempts, refund_attempts,
                  provider_reference, refund_reference, refunded_minor, last_error, created_at,
                  cause as "cause: Json<Cause>", refund_cause as "refund_cause: Json<Cause>"
           from payments where payment_id = $1 for update"#,
        payment_id,
    )
    .fetch_optional(conn)
    .await
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
    /// The event that created it, kept for the events the worker writes.
    pub cause: &'a Cause,
}

/// Creates a payment in `state` (pending, or voided for an order already cancelled).
pub async fn insert_payment(
    conn: &mut PgConnection,
    new: &NewPayment<'_>,
) -> Result<Payment, sqlx::Error> {
    let status = new.state.status.unwrap_or(Status::Pending);
    sqlx::query_as!(
        Payment,
        r#"insert into payments
             (payment_id, order_id, amount_minor, currency, customer_id, status, cancel_requested,
              cause)
           values ($1, $2, $3, $4, $5, $6, $7, $8)
           returning payment_id, order_id, amount_minor, currency, customer_id,
                  status as "status: Status", cancel_requested, attempts, refund_attempts,
                  provider_reference, refund_reference, refunded_minor, last_error, created_at,
                  cause as "cause: Json<Cause>", refund_cause as "refund_cause: Json<Cause>""#,
        new.payment_id,
        new.order_id,
        new.amount_minor,
        new.currency,
        new.customer_id,
        status as Status,
        new.state.cancelled,
        Json(new.cause) as _,
    )
    .fetch_one(conn)
    .await
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
    sqlx::query!(
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
        payment_id,
        status as Status,
        state.cancelled,
        state.charge_id.as_deref(),
        state.refund_id.as_deref(),
        released,
        retry_in.as_secs_f64(),
        error,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Keeps `cause`, the cancellation that asked for the payment's money back, for the refund
/// (or void) the worker makes later.
pub async fn keep_refund_cause(
    conn: &mut PgConnection,
    payment_id: Uuid,
    cause: &Cause,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "update payments set refund_cause = $2 where payment_id = $1",
        payment_id,
        Json(cause) as _,
    )
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
    sqlx::query_as!(
        Payment,
        r#"update payments set
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
         returning payment_id, order_id, amount_minor, currency, customer_id,
                  status as "status: Status", cancel_requested, attempts, refund_attempts,
                  provider_reference, refund_reference, refunded_minor, last_error, created_at,
                  cause as "cause: Json<Cause>", refund_cause as "refund_cause: Json<Cause>""#,
        i64::try_from(limit).unwrap_or(i64::MAX),
        lease.as_secs_f64(),
    )
    .fetch_all(pool)
    .await
}

/// The payments with these ids (unlocked, for reconciliation to compare).
pub async fn payments_by_id(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Payment>, sqlx::Error> {
    sqlx::query_as!(
        Payment,
        r#"select payment_id, order_id, amount_minor, currency, customer_id,
                  status as "status: Status", cancel_requested, attempts, refund_attempts,
                  provider_reference, refund_reference, refunded_minor, last_error, created_at,
                  cause as "cause: Json<Cause>", refund_cause as "refund_cause: Json<Cause>"
           from payments where payment_id = any($1)"#,
        ids,
    )
    .fetch_all(pool)
    .await
}

/// The payments of an order (at most one today), as the HTTP API shows them.
pub async fn payments_of_order(pool: &PgPool, order_id: &str) -> Result<Vec<Payment>, sqlx::Error> {
    sqlx::query_as!(
        Payment,
        r#"select payment_id, order_id, amount_minor, currency, customer_id,
                  status as "status: Status", cancel_requested, attempts, refund_attempts,
                  provider_reference, refund_reference, refunded_minor, last_error, created_at,
                  cause as "cause: Json<Cause>", refund_cause as "refund_cause: Json<Cause>"
           from payments where order_id = $1 order by created_at"#,
        order_id,
    )
    .fetch_all(pool)
    .await
}

/// Money captured and refunded over all payments, and how many payments are in each status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub captured_minor: i64,
    pub refunded_minor: i64,
    pub by_status: BTreeMap<String, i64>,
}

pub async fn summary(pool: &PgPool) -> Result<Summary, sqlx::Error> {
    let totals = sqlx::query!(
        r#"select coalesce(sum(amount_minor) filter (where provider_reference is not null), 0)::int8
                    as "captured_minor!",
                  coalesce(sum(refunded_minor), 0)::int8 as "refunded_minor!"
           from payments"#,
    )
    .fetch_one(pool)
    .await?;
    let (captured_minor, refunded_minor) = (totals.captured_minor, totals.refunded_minor);
    let counts =
        sqlx::query!(r#"select status, count(*) as "count!" from payments group by status"#)
            .fetch_all(pool)
            .await?
            .into_iter()
            .map(|row| (row.status, row.count));
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

#[cfg(test)]
mod tests {
    use choreo::envelope::Metadata;

    use super::*;

    fn payment(status: Status, cause: Option<&Cause>, refund_cause: Option<&Cause>) -> Payment {
        Payment {
            payment_id: Uuid::now_v7(),
            order_id: "order-1".into(),
            amount_minor: 100,
            currency: "EUR".into(),
            customer_id: Some("cus".into()),
            status,
            cancel_requested: false,
            attempts: 0,
            refund_attempts: 0,
            provider_reference: None,
            refund_reference: None,
            refunded_minor: 0,
            last_error: None,
            created_at: Utc::now(),
            cause: cause.cloned().map(Json),
            refund_cause: refund_cause.cloned().map(Json),
        }
    }

    fn cause(event_type: &str) -> Cause {
        Cause::from(&Metadata::new(event_type, "order-1", "test"))
    }

    #[test]
    fn a_charge_continues_the_event_that_created_the_payment() {
        let (reserved, cancelled) = (cause("Reserved"), cause("Cancelled"));
        for status in [Status::Pending, Status::Charging, Status::InDoubt] {
            let kept = payment(status, Some(&reserved), Some(&cancelled));
            assert_eq!(kept.kept_cause(), Some(&reserved), "{status}");
        }
    }

    #[test]
    fn a_refund_continues_the_cancellation_that_asked_for_it_else_the_payments_cause() {
        let (reserved, cancelled) = (cause("Reserved"), cause("Cancelled"));
        let asked = payment(Status::RefundPending, Some(&reserved), Some(&cancelled));
        assert_eq!(asked.kept_cause(), Some(&cancelled));
        let found_late = payment(Status::RefundPending, Some(&reserved), None);
        assert_eq!(found_late.kept_cause(), Some(&reserved));
    }

    #[test]
    fn a_row_that_kept_no_cause_has_none() {
        for status in Status::ALL {
            assert_eq!(payment(status, None, None).kept_cause(), None);
        }
    }
}
