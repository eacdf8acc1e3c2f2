//! Idempotent `POST`s: the `Idempotency-Key` header, and the table in the gateway's database
//! that keeps the first answer per (customer, key) so a retry gets the same answer.
//!
//! [`Store::begin`] claims a key (or finds its stored answer, a request in flight, or another
//! body under the same key); [`Store::complete`] stores the answer; [`Store::release`] lets a
//! retry try again after an upstream failure, with the same order id. HTTP lives in the routes.
//!
//! Keys are kept for `GATEWAY_IDEMPOTENCY_RETENTION` (24 h, as Stripe does): [`pruner`] deletes
//! older ones every minute with the backbone's chunked pruner (`choreo::prune`), but never a key
//! whose request is still in flight (`locked_until` in the future), and reports
//! `gateway_idempotency_keys_rows` and `gateway_idempotency_keys_pruned_total`.

use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use choreo::metrics::Metrics;
use choreo::prune::{PruneConfig, Pruner, Table};
use prometheus::{IntCounter, IntGauge};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use choreo::problem::Problem;

use crate::error::invalid;

pub const HEADER: &str = "idempotency-key";

/// A valid `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: &[u8]) -> Result<Self, Problem> {
        let valid = (1..=255).contains(&value.len()) && value.iter().all(|b| b.is_ascii_graphic());
        match std::str::from_utf8(value) {
            Ok(text) if valid => Ok(Self(text.to_owned())),
            _ => Err(invalid(
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                "Idempotency-Key",
            )),
        }
    }

    /// The key of a request, if it has one.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, Problem> {
        headers
            .get(HEADER)
            .map(|value| Self::parse(value.as_bytes()))
            .transpose()
    }
}

/// SHA-256 of a request body.
pub fn fingerprint(body: &[u8]) -> Vec<u8> {
    Sha256::digest(body).to_vec()
}

/// What [`Store::begin`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// This request holds the key: go ahead with this order id.
    Proceed { order_id: Uuid },
    /// The key already has an answer: send it again.
    Replay { status: StatusCode, body: Vec<u8> },
    /// Another request holds the key right now.
    InFlight,
    /// The key was used with another body.
    Mismatch,
}

/// The idempotency table.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// How long a holder may keep a key before another request may take it over.
    lease: Duration,
}

impl Store {
    pub fn new(pool: PgPool, lease: Duration) -> Self {
        Self { pool, lease }
    }

    /// Claims `key` for `customer`, or says why not. `order_id` is used if the key is new.
    #[tracing::instrument(skip_all, err)]
    pub async fn begin(
        &self,
        customer: &str,
        key: &IdempotencyKey,
        hash: &[u8],
        order_id: Uuid,
    ) -> Result<Begin, sqlx::Error> {
        let claimed = sqlx::query_scalar!(
            "insert into idempotency_keys
                 (customer_id, idempotency_key, request_hash, order_id, locked_until)
             values ($1, $2, $3, $4, now() + make_interval(secs => $5))
             on conflict (customer_id, idempotency_key) do update
                 set locked_until = excluded.locked_until
                 where idempotency_keys.response_status is null
                   and idempotency_keys.request_hash = excluded.request_hash
                   and (idempotency_keys.locked_until is null
                        or idempotency_keys.locked_until < now())
             returning order_id",
            customer,
            key.0,
            hash,
            order_id,
            self.lease.as_secs_f64(),
        )
        .fetch_optional(&self.pool)
        .await?;
        if let Some(order_id) = claimed {
            return Ok(Begin::Proceed { order_id });
        }
        let stored = sqlx::query!(
            "select request_hash, response_status, response_body from idempotency_keys
                 where customer_id = $1 and idempotency_key = $2",
            customer,
            key.0,
        )
        .fetch_one(&self.pool)
        .await?;
        let same = stored.request_hash == hash;
        Ok(match (same, stored.response_status, stored.response_body) {
            (false, _, _) => Begin::Mismatch,
            (true, Some(status), Some(body)) => Begin::Replay {
                status: u16::try_from(status)
                    .ok()
                    .and_then(|s| StatusCode::from_u16(s).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                body,
            },
            (true, _, _) => Begin::InFlight,
        })
    }

    /// Stores the answer to the request that holds `key`.
    #[tracing::instrument(skip_all, err)]
    pub async fn complete(
        &self,
        customer: &str,
        key: &IdempotencyKey,
        status: StatusCode,
        body: &[u8],
    ) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "update idempotency_keys
             set response_status = $3, response_body = $4, locked_until = null
             where customer_id = $1 and idempotency_key = $2",
            customer,
            key.0,
            status.as_u16() as i16,
            body,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Lets the next request with `key` try again (the upstream gave no answer to keep).
    #[tracing::instrument(skip_all, err)]
    pub async fn release(&self, customer: &str, key: &IdempotencyKey) -> Result<(), sqlx::Error> {
        sqlx::query!(
            "update idempotency_keys set locked_until = null
             where customer_id = $1 and idempotency_key = $2 and response_status is null",
            customer,
            key.0,
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The idempotency table for the pruner: keys created before the retention, unless a request
/// holds one right now. The subquery locks what it picks (skipping rows a request holds), and
/// the outer condition is checked again on the row as it is when deleted.
pub const TABLE: Table = Table {
    name: "idempotency_keys",
    delete_chunk: "delete from idempotency_keys k where (k.customer_id, k.idempotency_key) in (
            select customer_id, idempotency_key from idempotency_keys
            where created_at < now() - make_interval(secs => $1)
              and (locked_until is null or locked_until <= now())
            limit $2 for update skip locked)
          and (k.locked_until is null or k.locked_until <= now())",
    count: "select count(*) from idempotency_keys",
};

/// The pruner of the idempotency keys older than `retention`, with its metrics registered in
/// `metrics`' registry.
pub fn pruner(pool: PgPool, retention: Duration, metrics: &Metrics) -> prometheus::Result<Pruner> {
    let rows = IntGauge::new(
        "gateway_idempotency_keys_rows",
        "Rows in idempotency_keys (counted once per prune)",
    )?;
    let pruned = IntCounter::new(
        "gateway_idempotency_keys_pruned_total",
        "Idempotency keys deleted as older than the retention",
    )?;
    metrics.registry.register(Box::new(rows.clone()))?;
    metrics.registry.register(Box::new(pruned.clone()))?;
    Ok(Pruner::new(
        pool,
        TABLE,
        PruneConfig::new(retention),
        rows,
        pruned,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_255_visible_ascii_characters() {
        assert!(IdempotencyKey::parse(b"a").is_ok());
        assert!(IdempotencyKey::parse(&[b'k'; 255]).is_ok());
        for bad in [
            &b""[..],
            &[b'k'; 256],
            b"has space",
            b"tab\t",
            "é".as_bytes(),
        ] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_fingerprint_tells_bodies_apart() {
        assert_eq!(fingerprint(b"{}"), fingerprint(b"{}"));
        assert_ne!(fingerprint(b"{}"), fingerprint(b"[]"));
    }
}
