//! The payment service's read-only HTTP API (the gateway and the end-to-end test read it):
//! `GET /payments?order_id=` lists an order's payments, `GET /payments/summary` sums the money
//! captured and refunded. Errors are problems ([`choreo::problem`]): a bad query is told to the
//! caller, a database failure is logged and answered 500 without details.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use choreo::problem::Problem;
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
) -> Result<Json<Vec<PaymentView>>, Problem> {
    let raw = query
        .order_id
        .ok_or_else(|| Problem::bad_request("the order_id query parameter is required"))?;
    let order_id = OrderId::parse(&raw).map_err(|e| Problem::bad_request(e.to_string()))?;
    let payments = store::payments_of_order(&pool, order_id.as_str())
        .await
        .map_err(Problem::internal)?;
    Ok(Json(payments.into_iter().map(PaymentView::from).collect()))
}

async fn summary(State(pool): State<PgPool>) -> Result<Json<Summary>, Problem> {
    Ok(Json(
        store::summary(&pool).await.map_err(Problem::internal)?,
    ))
}
