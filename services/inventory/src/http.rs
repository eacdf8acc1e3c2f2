//! The inventory's HTTP API over its own tables, internal to the shop: `GET /stock`,
//! `GET /stock/{sku}`, `POST /stock/{sku}/receipts` (goods in) and `GET /reservations?order_id=`.
//! Errors are JSON `{"error": ...}`: 4xx for what the caller can fix, 500 (logged, never
//! detailed) for ours. Stock only changes here by receipts; the saga moves it in
//! [`crate::handler`].

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use shop_events::values::Sku;
use sqlx::PgPool;

use crate::domain::ReceiptQuantity;
use crate::store::{self, ReservationRow, StockRow};

/// The routes, over the service's database.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/stock", get(all_stock))
        .route("/stock/{sku}", get(stock))
        .route("/stock/{sku}/receipts", post(receive))
        .route("/reservations", get(reservations))
        .with_state(pool)
}

/// The errors of this API, mapped to a status and a JSON body once.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("no stock of SKU {0}")]
    NotFound(String),
    #[error("internal error")]
    Internal(#[from] sqlx::Error),
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(error) => {
                tracing::error!(%error, "inventory API failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

fn parse_sku(text: &str) -> Result<Sku, ApiError> {
    Sku::parse(text).map_err(|invalid| ApiError::BadRequest(invalid.to_string()))
}

async fn all_stock(State(pool): State<PgPool>) -> Result<Json<Vec<StockRow>>, ApiError> {
    Ok(Json(store::all_stock(&pool).await?))
}

async fn stock(
    State(pool): State<PgPool>,
    Path(sku): Path<String>,
) -> Result<Json<StockRow>, ApiError> {
    let sku = parse_sku(&sku)?;
    let row = store::stock(&pool, &sku).await?;
    row.map(Json).ok_or(ApiError::NotFound(sku.to_string()))
}

#[derive(Debug, Deserialize)]
struct Receipt {
    quantity: i64,
}

async fn receive(
    State(pool): State<PgPool>,
    Path(sku): Path<String>,
    body: Result<Json<Receipt>, JsonRejection>,
) -> Result<Json<StockRow>, ApiError> {
    let sku = parse_sku(&sku)?;
    let Json(receipt) = body?;
    let quantity = ReceiptQuantity::new(receipt.quantity)
        .map_err(|invalid| ApiError::Unprocessable(invalid.to_string()))?;
    let row = store::receive(&pool, &sku, quantity)
        .await?
        .ok_or_else(|| {
            ApiError::Unprocessable(format!("SKU {sku} cannot hold that many more units"))
        })?;
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
) -> Result<Json<Vec<ReservationRow>>, ApiError> {
    let Query(query) = query?;
    let order_id = query.order_id.as_deref().filter(|id| !id.is_empty());
    Ok(Json(store::reservations(&pool, order_id).await?))
}
