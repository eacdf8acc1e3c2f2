//! The HTTP API over a database with payments in it.

use payment::domain::Status;
use serde_json::Value;

use crate::helpers::*;

#[tokio::test]
async fn the_api_lists_an_orders_payments_and_sums_the_money() {
    let mut app = spawn_app(provider_sim::Config::for_tests()).await;
    let order_id = app.reserved_order("cus_judy").await;
    app.start_worker(worker_config(), app.provider());
    app.wait_for(&order_id, Status::Captured).await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = payment::http::router(app.db.pool.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let list: Value = reqwest::get(format!("{base}/payments?order_id={order_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["order_id"], order_id.as_str());
    assert_eq!(list[0]["status"], "captured");
    assert_eq!(list[0]["amount_minor"], AMOUNT);
    assert_eq!(list[0]["currency"], "EUR");
    assert_eq!(list[0]["attempts"], 1);
    assert_eq!(list[0]["refunded_minor"], 0);
    assert!(list[0]["provider_reference"].is_string());
    assert!(list[0]["payment_id"].is_string());

    let summary: Value = reqwest::get(format!("{base}/payments/summary"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["captured_minor"], AMOUNT);
    assert_eq!(summary["refunded_minor"], 0);
    assert_eq!(summary["by_status"]["captured"], 1);

    let bad = reqwest::get(format!("{base}/payments?order_id=not%20an%20id"))
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    app.finish().await;
}
