//! The order service's HTTP API, internal to the shop (the gateway is the public entry):
//! `POST /orders`, `POST /orders/{id}/cancel`, `GET /orders/{id}` with the saga's timeline,
//! `GET /orders/summary`, the catalogue (`GET /catalog`, `PUT /catalog/{sku}`), and
//! `GET /admission`, how far behind the sagas are (for the gateway's load shedding). Errors are
//! problems ([`choreo::problem`]): 4xx for what the caller can fix, 500 (logged, never detailed)
//! for ours; a violated constraint of this database is mapped by name in [`CONSTRAINTS`].
//! Every route takes the service or operator token (the frame's guard,
//! [`choreo::service::auth`]); setting a price takes the operator token only.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use choreo::problem::{Constraint, Kind, Problem};
use choreo::service::auth::operator_only;
use serde::Deserialize;
use serde_json::{json, Value};
use shop_events::request::PlaceOrder;
use shop_events::values::{Currency, InvalidValue, Money, Sku};
use sqlx::PgPool;

use crate::domain::{self, Input, OrderError};
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
        .merge(operator_only(
            Router::new().route("/catalog/{sku}", put(set_price)),
        ))
        .route("/admission", get(admission))
        .with_state(state)
}

/// The constraints of the order database a caller's request can violate, and how each is
/// answered; any other database error is internal.
pub const CONSTRAINTS: &[Constraint] = &[Constraint {
    name: "catalog_unit_price_minor_check",
    kind: Kind::INVALID_VALUE,
    detail: "a price must be above zero",
}];

/// A database error as this API answers it.
fn db(error: sqlx::Error) -> Problem {
    Problem::from_db(error, CONSTRAINTS)
}

fn saga(error: SagaError) -> Problem {
    match error {
        SagaError::Database(error) => db(error),
        other => Problem::internal(other),
    }
}

fn invalid(error: InvalidValue) -> Problem {
    Problem::invalid(error.to_string())
}

fn rejected(rejection: JsonRejection) -> Problem {
    Problem::bad_request(rejection.body_text())
}

/// A refused order body: 422 when a value in it is refused (or missing), 400 when it is no JSON.
fn refused_order(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => Problem::invalid(e.body_text()),
        other => rejected(other),
    }
}

fn no_order(id: &str) -> Problem {
    Problem::not_found(format!("no order {id}"))
}

async fn place(
    State(state): State<AppState>,
    body: Result<Json<PlaceOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    // The body's values are parsed by deserializing it (shop_events::request): a refused
    // one is a JSON rejection that says which and why.
    let Json(body) = body.map_err(refused_order)?;
    let wanted = body.lines.as_slice();
    let skus: Vec<String> = wanted.iter().map(|w| w.sku.to_string()).collect();
    let prices = store::prices(&state.pool, &skus).await.map_err(db)?;
    // Every refusal of the pricing (an unknown SKU, too many units, ...) is the caller's to fix.
    let order = domain::price(
        body.order_id,
        body.customer_id,
        body.currency,
        wanted,
        &prices,
    )
    .map_err(|e: OrderError| Problem::invalid(e.to_string()))?;
    let deadline_at = chrono::Utc::now() + state.deadline;
    let mut tx = state.pool.begin().await.map_err(db)?;
    let created = state
        .saga
        .place(&mut tx, &order, deadline_at)
        .await
        .map_err(saga)?;
    state.saga.outbox.commit(tx).await.map_err(db)?;
    let row = store::get(&state.pool, order.order_id.as_str())
        .await
        .map_err(db)?
        .ok_or_else(|| no_order(order.order_id.as_str()))?;
    if created {
        return Ok((StatusCode::CREATED, Json(view(&state.pool, &row).await?)));
    }
    let same = row.customer_id == order.customer_id.as_str()
        && row.currency == order.currency.as_str()
        && row.lines.0 == store::lines_json(&order);
    if !same {
        return Err(Problem::conflict(format!(
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
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Json(body) = body.map_err(rejected)?;
    let mut tx = state.pool.begin().await.map_err(db)?;
    let row = store::lock(&mut tx, &id).await.map_err(db)?;
    let Some(row) = row.filter(|r| r.customer_id == body.customer_id) else {
        return Err(no_order(&id));
    };
    // The cancellation names the order's OrderPlaced; its trace is this request's own (the
    // event's metadata takes the current span's context, which the cause does not replace).
    match state
        .saga
        .apply(
            &mut tx,
            &row,
            &Input::CancelRequested,
            row.placed_cause.as_ref(),
        )
        .await
        .map_err(saga)?
    {
        Applied::Refused(why) => return Err(Problem::conflict(why)),
        Applied::Moved(_) | Applied::Ignored(_) => {}
    }
    state.saga.outbox.commit(tx).await.map_err(db)?;
    let row = store::get(&state.pool, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| no_order(&id))?;
    Ok((StatusCode::ACCEPTED, Json(view(&state.pool, &row).await?)))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let row = store::get(&state.pool, &id)
        .await
        .map_err(db)?
        .ok_or_else(|| no_order(&id))?;
    Ok(Json(view(&state.pool, &row).await?))
}

/// An order as the API shows it, with its timeline.
async fn view(pool: &PgPool, row: &OrderRow) -> Result<Value, Problem> {
    let timeline = store::timeline(pool, &row.order_id).await.map_err(db)?;
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

async fn summary(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let (by_status, confirmed_total_minor) = store::summary(&state.pool).await.map_err(db)?;
    let by_status: serde_json::Map<String, Value> =
        by_status.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(Json(
        json!({ "by_status": by_status, "confirmed_total_minor": confirmed_total_minor }),
    ))
}

/// `{"open_sagas": N, "oldest_open_secs": S}`: the orders placed or reserved and not yet
/// confirmed or cancelled, and how long ago the oldest was placed. The gateway polls it and
/// refuses new orders while the oldest is older than its budget.
async fn admission(State(state): State<AppState>) -> Result<Json<store::OpenSagas>, Problem> {
    Ok(Json(store::open_sagas(&state.pool).await.map_err(db)?))
}

async fn catalog(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query!("select sku, currency, unit_price_minor from catalog order by sku")
            .map(|row| (row.sku, row.currency, row.unit_price_minor))
            .fetch_all(&state.pool)
            .await
            .map_err(db)?;
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
) -> Result<StatusCode, Problem> {
    let Json(body) = body.map_err(rejected)?;
    let sku = Sku::parse(&sku).map_err(invalid)?;
    let currency = Currency::parse(&body.currency).map_err(invalid)?;
    let price = Money::new(body.unit_price_minor, currency).map_err(invalid)?;
    // A price of zero is refused by the catalogue's check constraint (see CONSTRAINTS).
    store::set_price(&state.pool, &sku, price)
        .await
        .map_err(db)?;
    Ok(StatusCode::NO_CONTENT)
}
