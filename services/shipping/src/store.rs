//! The shipping service's SQL: the `shipments` table. No rules live here; what to write is
//! decided by [`crate::domain`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::domain::Status;

/// One row of `shipments`, as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ShipmentRow {
    pub shipment_id: String,
    pub order_id: String,
    pub carrier: String,
    pub status: Status,
    pub scheduled_at: DateTime<Utc>,
}

/// The status of the order's shipment, if it has one, locked for the rest of the transaction.
pub async fn lock_status(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<Status>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select status as "status: Status" from shipments where order_id = $1 for update"#,
        order_id,
    )
    .fetch_optional(conn)
    .await
}

/// Records a shipment; `false` if the order already has one (nothing is written then).
pub async fn insert(conn: &mut PgConnection, row: &ShipmentRow) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query!(
        "insert into shipments (order_id, shipment_id, carrier, status, scheduled_at)
         values ($1, $2, $3, $4, $5) on conflict (order_id) do nothing",
        row.order_id,
        row.shipment_id,
        row.carrier,
        row.status as Status,
        row.scheduled_at,
    )
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// The shipments of one order, or the latest 100 when `order_id` is `None`.
pub async fn shipments(
    pool: &PgPool,
    order_id: Option<&str>,
) -> Result<Vec<ShipmentRow>, sqlx::Error> {
    sqlx::query_as!(
        ShipmentRow,
        r#"select shipment_id, order_id, carrier, status as "status: Status", scheduled_at from shipments
         where $1::text is null or order_id = $1
         order by scheduled_at desc, shipment_id desc limit 100"#,
        order_id,
    )
    .fetch_all(pool)
    .await
}
