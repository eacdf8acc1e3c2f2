//! `/orders`: place an order (idempotently), cancel one, and read one with its payments and
//! shipments. The handlers check who may do what and shape the answers; the order, payment and
//! shipping services own the state and the rules, and their bodies are passed through as JSON.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use choreo::problem::Problem;
use serde::Serialize;
use serde_json::{json, Value};
use shop_events::request::{OrderRequest, PlaceOrder};
use shop_events::values::{CustomerId, OrderId};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{json_bytes, RequestId};
use crate::auth::Customer;
use crate::error::{idempotency_key_reused, request_in_flight, upstream_refusal};
use crate::idempotency::{fingerprint, Begin, IdempotencyKey};
use crate::json::ApiJson;
use crate::openapi::ProblemBody;
use crate::upstream::{Reply, Upstream};
use crate::AppState;

/// The answer to a placed order: the order service's order, plus a link to it.
#[derive(Serialize, ToSchema)]
pub struct PlacedOrder {
    pub order_id: Uuid,
    /// `placed` right after placing; the saga moves it on.
    pub status: String,
    pub links: Links,
    /// Every other field of the order as the order service returns it (lines, total_minor, ...).
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub order: Value,
}

#[derive(Serialize, ToSchema)]
pub struct Links {
    /// The order's own address, e.g. `/orders/0190...`.
    #[serde(rename = "self")]
    pub self_: String,
}

/// An order with what payment and shipping know about it.
#[derive(Serialize, ToSchema)]
pub struct OrderView {
    /// The order as the order service returns it.
    #[schema(value_type = Object)]
    pub order: Value,
    /// The order's payments; `null` when the payment service is unavailable.
    #[schema(value_type = Option<Vec<Object>>)]
    pub payments: Option<Value>,
    /// The order's shipments; `null` when the shipping service is unavailable.
    #[schema(value_type = Option<Vec<Object>>)]
    pub shipments: Option<Value>,
    /// The services that did not answer (`payment`, `shipping`); empty when all did.
    pub degraded: Vec<&'static str>,
}

/// Place an order for the token's customer.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body = OrderRequest,
    params(("Idempotency-Key" = Option<String>, Header,
        description = "1 to 255 visible ASCII characters; a retry with the same key and body \
                       gets the first answer again (with `Idempotent-Replayed: true`)")),
    responses(
        (status = 201, description = "Placed (or the first answer again, with `Idempotent-Replayed: true`)", body = PlacedOrder,
            headers(("Idempotent-Replayed" = String, description = "`true` when this is a stored answer"))),
        (status = 400, description = "Not JSON", body = ProblemBody, content_type = "application/problem+json"),
        (status = 401, description = "No valid bearer token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "A request with this Idempotency-Key is in progress", body = ProblemBody, content_type = "application/problem+json"),
        (status = 413, description = "The body is over 2 MB", body = ProblemBody, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = ProblemBody, content_type = "application/problem+json"),
        (status = 422, description = "A refused value, an unknown sku, or an Idempotency-Key used with another body", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
        (status = 503, description = "The order service is unavailable, or the shop is saturated and sheds new orders; see Retry-After", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
        (status = 504, description = "The order service did not answer in time", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
    ),
    security(("bearer" = []))
)]
pub async fn place(
    State(state): State<AppState>,
    customer: Customer,
    RequestId(request_id): RequestId,
    headers: HeaderMap,
    ApiJson(order): ApiJson<OrderRequest>,
) -> Result<Response, Problem> {
    let Some(key) = IdempotencyKey::from_headers(&headers)? else {
        let (status, body) =
            forward(&state, &customer, Uuid::now_v7(), &order, &request_id).await?;
        return Ok(json_bytes(status, body));
    };
    let canonical = serde_json::to_vec(&order).map_err(Problem::internal)?;
    let begin = state
        .idempotency
        .begin(&customer.0, &key, &fingerprint(&canonical), Uuid::now_v7())
        .await
        .map_err(|e| {
            Problem::internal(anyhow::Error::new(e).context("claim the idempotency key"))
        })?;
    let order_id = match begin {
        Begin::Proceed { order_id } => order_id,
        Begin::Replay { status, body } => {
            let mut response = json_bytes(status, body);
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(response);
        }
        Begin::InFlight => return Err(request_in_flight()),
        Begin::Mismatch => return Err(idempotency_key_reused()),
    };
    match forward(&state, &customer, order_id, &order, &request_id).await {
        Ok((status, bytes)) => {
            state
                .idempotency
                .complete(&customer.0, &key, status, &bytes)
                .await
                .map_err(|e| {
                    Problem::internal(anyhow::Error::new(e).context("store the idempotent answer"))
                })?;
            Ok(json_bytes(status, bytes))
        }
        Err(error) => {
            if let Err(e) = state.idempotency.release(&customer.0, &key).await {
                tracing::warn!(error = %e, "could not release the idempotency key");
            }
            Err(error)
        }
    }
}

/// Sends the order to the order service: 201 with the placed order, or its 4xx as a problem;
/// the body as the bytes to answer (and to store under an idempotency key).
async fn forward(
    state: &AppState,
    customer: &Customer,
    order_id: Uuid,
    order: &OrderRequest,
    request_id: &str,
) -> Result<(StatusCode, Vec<u8>), Problem> {
    // The token's subject becomes a checked customer id here, at the edge; one the shop cannot
    // take is refused with 422, as the order service did before.
    let customer_id =
        CustomerId::parse(&customer.0).map_err(|e| Problem::invalid(e.to_string()))?;
    let id = OrderId::parse(&order_id.to_string()).map_err(Problem::internal)?;
    let body = PlaceOrder::new(id, customer_id, order.clone());
    let reply = state.orders.post("/orders", &body, request_id).await?;
    if !reply.status.is_success() {
        let problem = upstream_refusal(reply.status, reply.body);
        let bytes = serde_json::to_vec(&problem).map_err(Problem::internal)?;
        return Ok((reply.status, bytes));
    }
    let status = reply
        .body
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or("placed")
        .to_owned();
    let placed = PlacedOrder {
        order_id,
        status,
        links: Links {
            self_: format!("/orders/{order_id}"),
        },
        order: without(reply.body, &["order_id", "status", "links"]),
    };
    let placed = serde_json::to_vec(&placed).map_err(Problem::internal)?;
    Ok((StatusCode::CREATED, placed))
}

fn without(mut value: Value, keys: &[&str]) -> Value {
    if let Some(object) = value.as_object_mut() {
        for key in keys {
            object.remove(*key);
        }
    }
    value
}

/// Cancel one of the token customer's orders.
#[utoipa::path(
    post, path = "/orders/{id}/cancel", tag = "orders",
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 202, description = "Cancellation accepted; the order as it is now", body = Object),
        (status = 401, description = "No valid bearer token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such order of this customer", body = ProblemBody, content_type = "application/problem+json"),
        (status = 409, description = "The order can no longer be cancelled", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
        (status = 503, description = "The order service is unavailable", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
        (status = 504, description = "The order service did not answer in time", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
    ),
    security(("bearer" = []))
)]
pub async fn cancel(
    State(state): State<AppState>,
    customer: Customer,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = order_id(&id)?;
    owned_order(&state.orders, &customer, id, &request_id).await?;
    let reply = state
        .orders
        .post(
            &format!("/orders/{id}/cancel"),
            &json!({ "customer_id": customer.0 }),
            &request_id,
        )
        .await?;
    if reply.status == StatusCode::NOT_FOUND {
        return Err(no_such_order(id));
    }
    if !reply.status.is_success() {
        return Err(upstream_refusal(reply.status, reply.body));
    }
    Ok((reply.status, Json(reply.body)).into_response())
}

/// One of the token customer's orders, with its payments and shipments.
#[utoipa::path(
    get, path = "/orders/{id}", tag = "orders",
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order; `degraded` names the services that did not answer", body = OrderView),
        (status = 401, description = "No valid bearer token", body = ProblemBody, content_type = "application/problem+json"),
        (status = 404, description = "No such order of this customer", body = ProblemBody, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited; see Retry-After", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
        (status = 503, description = "The order service is unavailable", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
        (status = 504, description = "The order service did not answer in time", body = ProblemBody, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1"))),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    customer: Customer,
    RequestId(request_id): RequestId,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, Problem> {
    let id = order_id(&id)?;
    let order = owned_order(&state.orders, &customer, id, &request_id).await?;
    // A UUID needs no escaping in a query string.
    let (payments_path, shipments_path) = (
        format!("/payments?order_id={id}"),
        format!("/shipments?order_id={id}"),
    );
    let (payments, shipments) = tokio::join!(
        state.payments.get(&payments_path, &request_id),
        state.shipments.get(&shipments_path, &request_id),
    );
    let mut degraded = Vec::new();
    let mut list = |name: &'static str, reply: Result<Reply, _>| match reply {
        Ok(Reply { status, body }) if status.is_success() && body.is_array() => Some(body),
        Ok(Reply { status, .. }) => {
            tracing::warn!(service = name, %status, "unexpected answer; degrading");
            degraded.push(name);
            None
        }
        Err(e) => {
            tracing::warn!(service = name, error = ?e, "unavailable; degrading");
            degraded.push(name);
            None
        }
    };
    let payments = list("payment", payments);
    let shipments = list("shipping", shipments);
    Ok(Json(OrderView {
        order,
        payments,
        shipments,
        degraded,
    }))
}

/// A path segment that is no UUID names no order.
fn order_id(segment: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(segment).map_err(|_| Problem::not_found(format!("no order {segment}")))
}

/// The answer for an order that does not exist or is another customer's: the same, so that
/// nobody learns which ids exist.
fn no_such_order(id: Uuid) -> Problem {
    Problem::not_found(format!("no order {id}"))
}

/// The order if it belongs to `customer`; anyone else's order is "not found".
async fn owned_order(
    orders: &Upstream,
    customer: &Customer,
    id: Uuid,
    request_id: &str,
) -> Result<Value, Problem> {
    let reply = orders.get(&format!("/orders/{id}"), request_id).await?;
    match reply.status {
        StatusCode::NOT_FOUND => Err(no_such_order(id)),
        status if status.is_success() => {
            let owner = reply.body.get("customer_id").and_then(Value::as_str);
            if owner == Some(customer.0.as_str()) {
                Ok(reply.body)
            } else {
                Err(no_such_order(id))
            }
        }
        status => Err(upstream_refusal(status, reply.body)),
    }
}
