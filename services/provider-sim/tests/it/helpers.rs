use std::time::Duration;

use provider_sim::{Config, Simulator};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// A running simulator; stops when dropped.
pub struct TestSim {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
}

impl Drop for TestSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_sim(config: Config) -> TestSim {
    let simulator = Simulator::bind(config).await.expect("binds port 0");
    let addr = simulator.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(simulator.run(shutdown.clone()));
    TestSim {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        shutdown,
    }
}

pub fn charge_body(key: &str, customer_id: &str, amount_minor: i64) -> Value {
    json!({
        "idempotency_key": key,
        "order_id": format!("order-{key}"),
        "customer_id": customer_id,
        "amount_minor": amount_minor,
        "currency": "EUR",
    })
}

impl TestSim {
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .put(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    /// Charges and returns the status and body.
    pub async fn charge(&self, key: &str, customer_id: &str, amount_minor: i64) -> (u16, Value) {
        self.post("/v1/charges", &charge_body(key, customer_id, amount_minor))
            .await
    }

    /// Repeats the charge under `key` until it answers `status` (for at most 5 s), and returns
    /// that answer.
    pub async fn charge_until(
        &self,
        key: &str,
        customer_id: &str,
        amount_minor: i64,
        status: &str,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (code, body) = self.charge(key, customer_id, amount_minor).await;
            assert_eq!(code, 200, "{body}");
            if body["status"] == status {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "charge {key} still {} after 5 s, not {status}",
                body["status"]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The charge made under `key` (`GET /v1/charges?idempotency_key=`), if any.
    pub async fn lookup(&self, key: &str) -> Option<Value> {
        let (status, page) = self
            .get(&format!("/v1/charges?idempotency_key={key}"))
            .await;
        assert_eq!(status, 200, "{page}");
        assert!(page["next_after"].is_null(), "{page}");
        let charges = page["charges"].as_array().expect("a charges array");
        assert!(charges.len() <= 1, "{page}");
        charges.first().cloned()
    }

    /// Voids the charge under `key` and returns the status and body.
    pub async fn void(&self, key: &str, customer_id: &str, amount_minor: i64) -> (u16, Value) {
        self.post(
            "/v1/charges/void",
            &charge_body(key, customer_id, amount_minor),
        )
        .await
    }

    pub async fn refund(&self, key: &str, charge_id: &str, amount_minor: i64) -> (u16, Value) {
        let body =
            json!({ "idempotency_key": key, "charge_id": charge_id, "amount_minor": amount_minor });
        self.post("/v1/refunds", &body).await
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.expect("a JSON body");
    (status, body)
}
