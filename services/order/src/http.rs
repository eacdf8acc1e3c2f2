//! The order service's HTTP API, internal to the shop (the gateway is the public entry):
//! `POST /orders`, `POST /orders/{id}/cancel`, `GET /orders/{id}` with the saga's timeline,
//! `GET /orders/summary`, the catalogue (`GET /catalog`, `PUT /catalog/{sku}`), and
//! `GET /admission`, how far behind the sagas are (for the gateway's load shedding). Errors are
//! JSON `{"error": ...}`: 4xx for what the caller can fix, 500 (logged, never detailed) for ours.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use shop_events::values::{Currency, CustomerId, InvalidValue, Money, OrderId, Quantity, Sku};
use sqlx::PgPool;

use crate::domain::{self, Input, OrderError, Wanted};
use crate::saga::{Applied, Saga, SagaError};
use crate::store::{self, OrderRow};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub saga: Saga,
    /// How long an order may take to be confirmed before it is cancelled.
    pub deadline: Duration,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/orders", post(place))
        .route("/orders/summary", get(summary))
        .route("/orders/{id}", get(show))
        .route("/orders/{id}/cancel", post(cancel))
        .route("/catalog", get(catalog))
        .route("/catalog/{sku}", put(set_price))
        .route("/admission", get(admission))
        .with_state(state)
}

/// The errors of this API, mapped to a status and a JSON body once.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("no order {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error")]
    Internal(#[from] SagaError),
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        ApiError::Internal(SagaError::Database(error))
    }
}

impl From<InvalidValue> for ApiError {
    fn from(error: InvalidValue) -> Self {
        ApiError::Unprocessable(error.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(error) => {
                tracing::error!(%error, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceOrder {
    pub order_id: String,
    pub customer_id: String,
    pub lines: Vec<WantedLine>,
    pub currency: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WantedLine {
    pub sku: String,
    pub quantity: i64,
}

async fn place(
    State(state): State<AppState>,
    body: Result<Json<PlaceOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let order_id = OrderId::parse(&body.order_id)?;
    let customer_id = CustomerId::parse(&body.customer_id)?;
    let currency = Currency::parse(&body.currency)?;
    let wanted = body
        .lines
        .iter()
        .map(|l| {
            Ok(Wanted {
                sku: Sku::parse(&l.sku)?,
                quantity: Quantity::new(l.quantity)?,
            })
        })
        .collect::<Result<Vec<_>, InvalidValue>>()?;
    let skus: Vec<String> = wanted.iter().map(|w| w.sku.to_string()).collect();
    let prices = store::prices(&state.pool, &skus).await?;
    let order =
        domain::price(order_id, customer_id, currency, &wanted, &prices).map_err(|e| match e {
            OrderError::Overflow
            | OrderError::TooMany { .. }
            | OrderError::TooManyLines
            | OrderError::NoLines => ApiError::Unprocessable(e.to_string()),
            other => ApiError::Unprocessable(other.to_string()),
        })?;
    let deadline_at = chrono::Utc::now() + state.deadline;
    let mut tx = state.pool.begin().await?;
    let created = state.saga.place(&mut tx, &order, deadline_at).await?;
    state.saga.outbox.commit(tx).await?;
    let row = store::get(&state.pool, order.order_id.as_str())
        .await?
        .ok_or_else(|| ApiError::NotFound(order.order_id.to_string()))?;
    if created {
        return Ok((StatusCode::CREATED, Json(view(&state.pool, &row).await?)));
    }
    let same = row.customer_id == order.customer_id.as_str()
        && row.currency == order.currency.as_str()
        && row.lines.0 == store::lines_json(&order);
    if !same {
        return Err(ApiError::Conflict(format!(
            "order {} exists with other content",
            row.order_id
        )));
    }
    Ok((StatusCode::OK, Json(view(&state.pool, &row).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelOrder {
    pub customer_id: String,
}

async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<CancelOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let mut tx = state.pool.begin().await?;
    let row = store::lock(&mut tx, &id).await?;
    let Some(row) = row.filter(|r| r.customer_id == body.customer_id) else {
        return Err(ApiError::NotFound(id));
    };
    match state
        .saga
        .apply(&mut tx, &row, &Input::CancelRequested, None)
        .await?
    {
        Applied::Refused(why) => return Err(ApiError::Conflict(why.to_owned())),
        Applied::Moved(_) | Applied::Ignored(_) => {}
    }
    state.saga.outbox.commit(tx).await?;
    let row = store::get(&state.pool, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(id.clone()))?;
    Ok((StatusCode::ACCEPTED, Json(view(&state.pool, &row).await?)))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let row = store::get(&state.pool, &id)
        .await?
        .ok_or(ApiError::NotFound(id))?;
    Ok(Json(view(&state.pool, &row).await?))
}

/// An order as the API shows it, with its timeline.
async fn view(pool: &PgPool, row: &OrderRow) -> Result<Value, ApiError> {
    let timeline = store::timeline(pool, &row.order_id).await?;
    Ok(json!({
        "order_id": row.order_id,
        "customer_id": row.customer_id,
        "status": row.status,
        "cancel_reason": row.cancel_reason,
        "lines": row.lines.0,
        "currency": row.currency,
        "total_minor": row.total_minor,
        "payment_id": row.payment_id,
        "placed_at": row.placed_at,
        "deadline_at": row.deadline_at,
        "updated_at": row.updated_at,
        "timeline": timeline,
    }))
}

async fn summary(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (by_status, confirmed_total_minor) = store::summary(&state.pool).await?;
    let by_status: serde_json::Map<String, Value> =
        by_status.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(Json(
        json!({ "by_status": by_status, "confirmed_total_minor": confirmed_total_minor }),
    ))
}

/// `{"open_sagas": N, "oldest_open_secs": S}`: the orders placed or reserved and not yet
/// confirmed or cancelled, and how long ago the oldest was placed. The gateway polls it and
/// refuses new orders while the oldest is older than its budget.
async fn admission(State(state): State<AppState>) -> Result<Json<store::OpenSagas>, ApiError> {
    Ok(Json(store::open_sagas(&state.pool).await?))
}

async fn catalog(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("select sku, currency, unit_price_minor from catalog order by sku")
            .fetch_all(&state.pool)
            .await?;
    Ok(Json(json!(rows
        .into_iter()
        .map(|(sku, currency, unit_price_minor)| json!({"sku": sku, "currency": currency, "unit_price_minor": unit_price_minor}))
        .collect::<Vec<_>>())))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub currency: String,
    pub unit_price_minor: i64,
}

async fn set_price(
    State(state): State<AppState>,
    Path(sku): Path<String>,
    body: Result<Json<Price>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(body) = body?;
    let sku = Sku::parse(&sku)?;
    let price = Money::new(body.unit_price_minor, Currency::parse(&body.currency)?)?;
    if price.minor() == 0 {
        return Err(ApiError::Unprocessable("a price must be above zero".into()));
    }
    store::set_price(&state.pool, &sku, price).await?;
    Ok(StatusCode::NO_CONTENT)
}
