//! The OpenAPI 3 document of the public API, served at `/openapi.json`: the routes, the bearer
//! security scheme, the error body (RFC 9457 problem details, [`ProblemBody`]) and the shapes a
//! client sends. Generated from the handlers'
//! annotations, so it cannot drift from the code that serves it.

use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::orders::{self, Links, OrderView, PlacedOrder};
use shop_events::request::{Lines, OrderLine, OrderRequest};
use shop_events::values::{Currency, Quantity, Sku};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shop gateway",
        description = "The shop's public API. Every request may carry `x-request-id` (one is made \
                       when absent) and gets it back. Clients are rate-limited per token subject \
                       (per IP without a token): 429 with `Retry-After` in whole seconds."
    ),
    paths(orders::place, orders::cancel, orders::get),
    components(schemas(
        ProblemBody, OrderRequest, OrderLine, Lines, Sku, Quantity, Currency, PlacedOrder, Links,
        OrderView
    )),
    modifiers(&BearerAuth),
    tags((name = "orders", description = "Placing, cancelling and following orders"))
)]
pub struct ApiDoc;

/// The body of every error answer, `application/problem+json` (RFC 9457): the document's
/// description of [`choreo::problem::Problem`], which is what the gateway serializes.
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
pub struct ProblemBody {
    /// The kind of problem, a stable URI: `urn:choreo:problem:` and one of `bad-request`,
    /// `unauthorized`, `not-found`, `conflict`, `unsupported-media-type`, `payload-too-large`,
    /// `invalid-value`,
    /// `idempotency-key-reused`, `request-in-flight`, `rate-limited`, `overloaded`,
    /// `unavailable`, `timeout`, `internal`.
    #[serde(rename = "type")]
    #[schema(example = "urn:choreo:problem:invalid-value")]
    pub type_uri: String,
    /// A short summary of the kind, the same for every problem of the kind.
    #[schema(example = "Invalid value")]
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong this time, for a person to read.
    pub detail: String,
    /// A URI naming this occurrence, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// The request field at fault for `invalid-value` (a JSON path such as
    /// `lines[0].quantity`, or a header name such as `Idempotency-Key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256 token whose `sub` is the customer id"))
                    .build(),
            ),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_routes_the_scheme_and_the_key_header() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert!(doc["paths"]["/orders"]["post"].is_object());
        assert!(doc["paths"]["/orders/{id}"]["get"].is_object());
        assert!(doc["paths"]["/orders/{id}/cancel"]["post"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let body = doc["paths"]["/orders"]["post"]["requestBody"].to_string();
        assert!(body.contains("#/components/schemas/PlaceOrder"), "{body}");
        let line = &doc["components"]["schemas"]["OrderLine"]["properties"];
        assert_eq!(line["quantity"]["maximum"], 1000, "{line}");
        assert_eq!(line["sku"]["$ref"], "#/components/schemas/Sku", "{line}");
        let problem = &doc["components"]["schemas"]["Problem"];
        for member in ["type", "title", "status", "detail", "instance", "field"] {
            assert!(
                problem["properties"][member].is_object(),
                "{member}: {problem}"
            );
        }
        let limited = &doc["paths"]["/orders"]["post"]["responses"]["429"];
        assert!(limited["headers"]["Retry-After"].is_object(), "{limited}");
        assert!(
            limited["content"]["application/problem+json"].is_object(),
            "{limited}"
        );
        let params = doc["paths"]["/orders"]["post"]["parameters"].to_string();
        assert!(params.contains("Idempotency-Key"), "{params}");
    }
}
