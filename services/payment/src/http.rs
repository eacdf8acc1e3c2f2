//! The payment service's read-only HTTP API (the gateway and the end-to-end test read it):
//! `GET /payments?order_id=` lists an order's payments, `GET /payments/summary` sums the money
//! captured and refunded. Errors are one enum mapped once: a bad query is told to the caller,
//! a database failure is logged and answered 500 without details.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use shop_events::values::OrderId;
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::{self, Payment, Summary};

/// The API's routes, over the service's database.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/payments", get(list))
        .route("/payments/summary", get(summary))
        .with_state(pool)
}

/// One payment as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentView {
    pub payment_id: Uuid,
    pub order_id: String,
    pub status: &'static str,
    pub amount_minor: i64,
    pub currency: String,
    pub provider_reference: Option<String>,
    pub attempts: i32,
    pub refunded_minor: i64,
}

impl From<Payment> for PaymentView {
    fn from(p: Payment) -> Self {
        Self {
            payment_id: p.payment_id,
            order_id: p.order_id,
            status: p.status.as_str(),
            amount_minor: p.amount_minor,
            currency: p.currency,
            provider_reference: p.provider_reference,
            attempts: p.attempts,
            refunded_minor: p.refunded_minor,
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    order_id: Option<String>,
}

async fn list(
    State(pool): State<PgPool>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<PaymentView>>, ApiError> {
    let raw = query
        .order_id
        .ok_or_else(|| ApiError::BadRequest("the order_id query parameter is required".into()))?;
    let order_id = OrderId::parse(&raw).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let payments = store::payments_of_order(&pool, order_id.as_str()).await?;
    Ok(Json(payments.into_iter().map(PaymentView::from).collect()))
}

async fn summary(State(pool): State<PgPool>) -> Result<Json<Summary>, ApiError> {
    Ok(Json(store::summary(&pool).await?))
}

/// Every error the API answers with, as `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message.clone()),
            ApiError::Database(error) => {
                tracing::error!(%error, "a payments query failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error".to_owned(),
                )
            }
        };
        (status, Json(serde_json::json!({ "error": message }))).into_response()
    }
}
