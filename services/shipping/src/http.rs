//! The shipping service's HTTP API over its own table, internal to the shop:
//! `GET /shipments?order_id=` (the order's shipments) and `GET /shipments` (the latest 100).
//! Errors are problems ([`choreo::problem`]): 400 for a malformed query, 500 (logged, never
//! detailed) for ours.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use choreo::problem::Problem;
use serde::Deserialize;
use sqlx::PgPool;

use crate::store::{self, ShipmentRow};

/// The routes, over the service's database.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/shipments", get(shipments))
        .with_state(pool)
}

#[derive(Debug, Deserialize)]
struct ShipmentsQuery {
    order_id: Option<String>,
}

/// The shipments of `?order_id=`, or the latest 100.
async fn shipments(
    State(pool): State<PgPool>,
    query: Result<Query<ShipmentsQuery>, QueryRejection>,
) -> Result<Json<Vec<ShipmentRow>>, Problem> {
    let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let order_id = query.order_id.as_deref().filter(|id| !id.is_empty());
    let shipments = store::shipments(&pool, order_id)
        .await
        .map_err(Problem::internal)?;
    Ok(Json(shipments))
}
