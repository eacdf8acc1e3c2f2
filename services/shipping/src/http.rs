//! The shipping service's HTTP API over its own table, internal to the shop:
//! `GET /shipments?order_id=` (the order's shipments) and `GET /shipments` (the latest 100).
//! Errors are JSON `{"error": ...}`: 400 for a malformed query, 500 (logged, never detailed) for
//! ours.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

use crate::store::{self, ShipmentRow};

/// The routes, over the service's database.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/shipments", get(shipments))
        .with_state(pool)
}

/// The errors of this API, mapped to a status and a JSON body once.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("internal error")]
    Internal(#[from] sqlx::Error),
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
            ApiError::Internal(error) => {
                tracing::error!(%error, "shipping API failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

#[derive(Debug, Deserialize)]
struct ShipmentsQuery {
    order_id: Option<String>,
}

/// The shipments of `?order_id=`, or the latest 100.
async fn shipments(
    State(pool): State<PgPool>,
    query: Result<Query<ShipmentsQuery>, QueryRejection>,
) -> Result<Json<Vec<ShipmentRow>>, ApiError> {
    let Query(query) = query?;
    let order_id = query.order_id.as_deref().filter(|id| !id.is_empty());
    Ok(Json(store::shipments(&pool, order_id).await?))
}
