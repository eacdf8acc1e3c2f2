//! The HTTP API: stock levels, goods receipts and the reservations of an order.

use serde_json::json;

use crate::helpers::{order, order_id, spawn_app, OPERATOR_TOKEN, SERVICE_TOKEN};

#[tokio::test]
async fn a_receipt_takes_the_operator_token_and_a_service_token_is_403() {
    let app = spawn_app().await;
    let receipt = json!({ "quantity": 5 });
    let (status, body) = app.post_as(None, "/stock/MUG-01/receipts", &receipt).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = app
        .post_as(Some("forged"), "/stock/MUG-01/receipts", &receipt)
        .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = app
        .post_as(Some(SERVICE_TOKEN), "/stock/MUG-01/receipts", &receipt)
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["type"], "urn:choreo:problem:forbidden");
    let (status, body) = app
        .post_as(Some(OPERATOR_TOKEN), "/stock/MUG-01/receipts", &receipt)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = app.get("/stock/MUG-01").await;
    assert_eq!(status, 200);
    app.finish().await;
}

#[tokio::test]
async fn a_receipt_creates_a_new_sku_and_adds_to_an_existing_one() {
    let app = spawn_app().await;

    let (status, body) = app
        .post("/stock/MUG-01/receipts", &json!({ "quantity": 5 }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({ "sku": "MUG-01", "available": 5, "reserved": 0, "sold": 0, "received": 5 })
    );
    let (status, body) = app
        .post("/stock/MUG-01/receipts", &json!({ "quantity": 7 }))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["available"].clone(), body["received"].clone()),
        (json!(12), json!(12))
    );

    let (status, body) = app.get("/stock/MUG-01").await;
    assert_eq!(status, 200);
    assert_eq!(body["available"], 12);
    app.finish().await;
}

#[tokio::test]
async fn all_stock_is_listed_by_sku() {
    let app = spawn_app().await;
    app.stock_up("TEA", 1).await;
    app.stock_up("MUG", 2).await;

    let (status, body) = app.get("/stock").await;

    assert_eq!(status, 200);
    let skus: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["sku"].as_str().unwrap())
        .collect();
    assert_eq!(skus, ["MUG", "TEA"]);
    app.finish().await;
}

#[tokio::test]
async fn an_unknown_sku_is_not_found_and_an_invalid_one_is_a_bad_request() {
    let app = spawn_app().await;

    let (status, body) = app.get("/stock/GHOST").await;
    assert_eq!(status, 404);
    assert!(body["detail"].as_str().unwrap().contains("GHOST"));

    let (status, body) = app.get("/stock/not%20a%20sku").await;
    assert_eq!(status, 400);
    assert!(body["detail"].is_string());
    app.finish().await;
}

#[tokio::test]
async fn a_receipt_outside_one_to_a_million_or_malformed_is_refused() {
    let app = spawn_app().await;

    for quantity in [0, -3, 1_000_001] {
        let (status, body) = app
            .post("/stock/MUG/receipts", &json!({ "quantity": quantity }))
            .await;
        assert_eq!(status, 422, "{quantity}: {body}");
        assert!(body["detail"].is_string());
    }
    let (status, body) = app.post("/stock/MUG/receipts", &json!({ "qty": 1 })).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = app
        .post("/stock/mug/receipts", &json!({ "quantity": 1 }))
        .await;
    assert_eq!(status, 400);

    let (status, _) = app.get("/stock/MUG").await;
    assert_eq!(status, 404);
    app.finish().await;
}

#[tokio::test]
async fn a_receipt_that_would_overflow_the_counters_is_refused() {
    let app = spawn_app().await;
    sqlx::query("insert into stock values ('MUG', 2147000000, 0, 0, 2147000000)")
        .execute(&app.db.pool)
        .await
        .unwrap();

    let (status, _) = app
        .post("/stock/MUG/receipts", &json!({ "quantity": 1_000_000 }))
        .await;

    assert_eq!(status, 422);
    assert_eq!(app.stock("MUG").await.received, 2_147_000_000);
    app.finish().await;
}

#[tokio::test]
async fn the_reservations_of_an_order_are_listed() {
    let app = spawn_app().await;
    app.stock_up("MUG", 5).await;
    let (id, other) = (order_id(), order_id());
    app.deliver(&id, &order(&id, &[("MUG", 2)])).await;
    app.deliver(&other, &order(&other, &[("MUG", 9)])).await;

    let (status, body) = app.get(&format!("/reservations?order_id={id}")).await;

    assert_eq!(status, 200);
    let rows = body.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["order_id"], id.as_str());
    assert_eq!(rows[0]["status"], "reserved");
    assert_eq!(rows[0]["items"], json!([{ "sku": "MUG", "quantity": 2 }]));
    assert_eq!(rows[0]["currency"], "EUR");
    assert_eq!(rows[0]["amount_minor"], 500);

    let (status, body) = app.get("/reservations").await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
    app.finish().await;
}
