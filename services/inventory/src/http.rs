//! The inventory's HTTP API over its own tables, internal to the shop: `GET /stock`,
//! `GET /stock/{sku}`, `POST /stock/{sku}/receipts` (goods in) and `GET /reservations?order_id=`.
//! Errors are problems ([`choreo::problem`]): 4xx for what the caller can fix, 500 (logged,
//! never detailed) for ours. Stock only changes here by receipts; the saga moves it in
//! [`crate::handler`]. Every route takes the service or operator token (the frame's guard,
//! [`choreo::service::auth`]); a receipt takes the operator token only.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use choreo::problem::Problem;
use choreo::service::auth::operator_only;
use serde::Deserialize;
use shop_events::values::Sku;
use sqlx::PgPool;

use crate::domain::ReceiptQuantity;
use crate::store::{self, ReservationRow, StockRow};

/// The routes, over the service's database.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/stock", get(all_stock))
        .route("/stock/{sku}", get(stock))
        .merge(operator_only(
            Router::new().route("/stock/{sku}/receipts", post(receive)),
        ))
        .route("/reservations", get(reservations))
        .with_state(pool)
}

fn parse_sku(text: &str) -> Result<Sku, Problem> {
    Sku::parse(text).map_err(|invalid| Problem::bad_request(invalid.to_string()))
}

/// The stock tables' constraints guard the books against our bugs, not against a caller (a
/// receipt too large is refused before it is written), so a database error is internal here.
fn db(error: sqlx::Error) -> Problem {
    Problem::internal(error)
}

async fn all_stock(State(pool): State<PgPool>) -> Result<Json<Vec<StockRow>>, Problem> {
    Ok(Json(store::all_stock(&pool).await.map_err(db)?))
}

async fn stock(
    State(pool): State<PgPool>,
    Path(sku): Path<String>,
) -> Result<Json<StockRow>, Problem> {
    let sku = parse_sku(&sku)?;
    let row = store::stock(&pool, &sku).await.map_err(db)?;
    row.map(Json)
        .ok_or_else(|| Problem::not_found(format!("no stock of SKU {sku}")))
}

#[derive(Debug, Deserialize)]
struct Receipt {
    quantity: i64,
}

async fn receive(
    State(pool): State<PgPool>,
    Path(sku): Path<String>,
    body: Result<Json<Receipt>, JsonRejection>,
) -> Result<Json<StockRow>, Problem> {
    let sku = parse_sku(&sku)?;
    let Json(receipt) = body.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let quantity = ReceiptQuantity::new(receipt.quantity)
        .map_err(|invalid| Problem::invalid(invalid.to_string()))?;
    let row = store::receive(&pool, &sku, quantity)
        .await
        .map_err(db)?
        .ok_or_else(|| Problem::invalid(format!("SKU {sku} cannot hold that many more units")))?;
    tracing::info!(%sku, quantity = quantity.get(), available = row.available, "received");
    Ok(Json(row))
}

#[derive(Debug, Deserialize)]
struct ReservationsQuery {
    order_id: Option<String>,
}

/// The reservation of `?order_id=` (a list of at most one), or the latest 100.
async fn reservations(
    State(pool): State<PgPool>,
    query: Result<Query<ReservationsQuery>, QueryRejection>,
) -> Result<Json<Vec<ReservationRow>>, Problem> {
    let Query(query) = query.map_err(|rejection| Problem::bad_request(rejection.body_text()))?;
    let order_id = query.order_id.as_deref().filter(|id| !id.is_empty());
    let reservations = store::reservations(&pool, order_id).await.map_err(db)?;
    Ok(Json(reservations))
}
