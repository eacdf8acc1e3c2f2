//! The deadline sweeper: an order still open at its deadline is cancelled with reason
//! `timeout`, and the cancellation's compensations follow from `OrderCancelled` like any other.
//! Rows are taken with `for update skip locked`, so sweepers of several replicas share the work
//! and a sweep never waits behind a consumer holding an order.
//!
//! Each cancellation runs in a `deadline` span continuing the trace of the event kept with the
//! order (the one its latest move followed, else its OrderPlaced), which the OrderCancelled
//! names as its cause.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::domain::Input;
use crate::saga::{Saga, SagaError};
use crate::store;

pub struct Sweeper {
    pub pool: PgPool,
    pub saga: Saga,
    pub every: Duration,
}

impl Sweeper {
    /// Sweeps every `every` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), SagaError> {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.every) => {}
            }
            loop {
                match self.sweep(200).await {
                    Ok(200) => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "deadline sweep failed; trying again");
                        break;
                    }
                }
            }
        }
    }

    /// Cancels up to `limit` overdue orders in one transaction; returns how many.
    pub async fn sweep(&self, limit: i64) -> Result<usize, SagaError> {
        let mut tx = self.pool.begin().await?;
        let overdue = store::lock_overdue(&mut tx, limit).await?;
        for row in &overdue {
            // Each cancellation in a `deadline` span continuing the trace of the event kept
            // with the order ([`store::OrderRow::kept_cause`]), which it names.
            let cause = row.kept_cause();
            let span = tracing::info_span!(
                "deadline",
                otel.name = "deadline",
                order_id = %row.order_id,
            );
            choreo::telemetry::set_parent(&span, cause.and_then(|c| c.traceparent.as_deref()));
            self.saga
                .apply(&mut tx, row, &Input::DeadlinePassed, cause)
                .instrument(span)
                .await?;
        }
        self.saga.outbox.commit(tx).await?;
        if !overdue.is_empty() {
            tracing::info!(count = overdue.len(), "cancelled overdue orders");
        }
        Ok(overdue.len())
    }
}
