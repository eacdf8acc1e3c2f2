//! The gateway end to end over HTTP: the real application on port 0 with a database of its own
//! (the local stack's PostgreSQL), in front of a small in-process double of the order, payment
//! and shipping services that can be made slow or failing. The project's end-to-end test runs
//! the real services; this one covers the edge cases that are hard to provoke with them. The
//! double refuses calls without the service token, as the real services do.
//!
//! [`fuzz`] sends the gateway thousands of generated hostile requests.

#[path = "api/fuzz.rs"]
mod fuzz;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use choreo::problem::{Problem, PROBLEM_JSON};
use choreo::service::auth::{guard, Credentials};
use choreo::testing::TestDb;
use gateway::auth::{JwtKeys, TokenPolicy};
use gateway::{Application, Config, Secrets};
use secrecy::SecretString;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret-of-at-least-32-bytes!";
const SERVICE_TOKEN: &str = "test-service-token";
const ISSUER: &str = "choreo-shop";
const AUDIENCE: &str = "shop-gateway";
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The double of the internal services.
#[derive(Default)]
struct Fake {
    orders: Mutex<HashMap<String, Value>>,
    /// POST /orders calls that reached the double.
    place_calls: AtomicUsize,
    failing: AtomicBool,
    delay_ms: AtomicUsize,
    last_request_id: Mutex<Option<String>>,
    /// What GET /admission says of the oldest open saga, in seconds.
    open_sagas: Mutex<u64>,
    /// GET /admission answers 500.
    admission_failing: AtomicBool,
}

/// A problem body, as the real services answer their errors.
fn problem(problem: Problem) -> Json<Value> {
    Json(serde_json::to_value(problem).unwrap())
}

async fn fake_place(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    fake.place_calls.fetch_add(1, Ordering::SeqCst);
    *fake.last_request_id.lock().unwrap() = headers
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    tokio::time::sleep(Duration::from_millis(
        fake.delay_ms.load(Ordering::SeqCst) as u64
    ))
    .await;
    if fake.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "boom"})),
        );
    }
    if body["lines"].to_string().contains("UNKNOWN") {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            problem(Problem::invalid("unknown sku UNKNOWN")),
        );
    }
    let id = body["order_id"].as_str().unwrap().to_owned();
    let order = json!({
        "order_id": id,
        "customer_id": body["customer_id"],
        "status": "placed",
        "cancel_reason": null,
        "lines": body["lines"],
        "currency": body["currency"],
        "total_minor": 1000,
    });
    let mut orders = fake.orders.lock().unwrap();
    match orders.get(&id) {
        Some(existing) if existing["lines"] == order["lines"] => {
            (StatusCode::OK, Json(existing.clone()))
        }
        Some(_) => (
            StatusCode::CONFLICT,
            problem(Problem::conflict("other content")),
        ),
        None => {
            orders.insert(id, order.clone());
            (StatusCode::CREATED, Json(order))
        }
    }
}

async fn fake_get(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    match fake.orders.lock().unwrap().get(&id) {
        Some(order) => (StatusCode::OK, Json(order.clone())),
        None => (
            StatusCode::NOT_FOUND,
            problem(Problem::not_found("no such order")),
        ),
    }
}

async fn fake_cancel(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
) -> (StatusCode, Json<Value>) {
    let mut orders = fake.orders.lock().unwrap();
    let Some(order) = orders.get_mut(&id) else {
        return (
            StatusCode::NOT_FOUND,
            problem(Problem::not_found("no such order")),
        );
    };
    if order["status"] == "cancelled" {
        return (
            StatusCode::CONFLICT,
            problem(Problem::conflict("already cancelled")),
        );
    }
    order["status"] = json!("cancelled");
    order["cancel_reason"] = json!("customer_request");
    (StatusCode::ACCEPTED, Json(order.clone()))
}

async fn fake_admission(State(fake): State<Arc<Fake>>) -> (StatusCode, Json<Value>) {
    if fake.admission_failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
    }
    let open = *fake.open_sagas.lock().unwrap();
    (
        StatusCode::OK,
        Json(json!({"open_sagas": open, "oldest_open_secs": 1.5})),
    )
}

async fn fake_list(Query(query): Query<HashMap<String, String>>) -> Json<Value> {
    Json(json!([{ "order_id": query["order_id"], "status": "captured" }]))
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

async fn spawn_fake() -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake::default());
    let router = Router::new()
        .route("/orders", post(fake_place))
        .route("/orders/{id}", get(fake_get))
        .route("/orders/{id}/cancel", post(fake_cancel))
        .route("/payments", get(fake_list))
        .route("/shipments", get(fake_list))
        .route("/admission", get(fake_admission))
        .with_state(fake.clone());
    let credentials = Credentials::new(
        SecretString::from(SERVICE_TOKEN),
        SecretString::from("test-operator-token"),
    );
    let router = guard(router, Arc::new(credentials));
    let address = serve(router).await;
    (fake, format!("http://{address}"))
}

struct TestApp {
    address: String,
    metrics_address: String,
    client: reqwest::Client,
    fake: Arc<Fake>,
    db: TestDb,
    shutdown: CancellationToken,
}

/// A closed port: nothing answers there.
const NOWHERE: &str = "http://127.0.0.1:9";

async fn spawn_app(tune: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_sending(SERVICE_TOKEN, tune).await
}

/// [`spawn_app`] with the gateway sending `service_token` to the services.
async fn spawn_app_sending(service_token: &str, tune: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::create().await;
    let (fake, fake_url) = spawn_fake().await;
    let mut config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(SecretString::from(db.url.clone())),
        order_url: fake_url.clone(),
        payment_url: fake_url.clone(),
        shipping_url: fake_url,
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        jwt_issuer: ISSUER.into(),
        jwt_audience: AUDIENCE.into(),
        jwt_max_lifetime: MAX_LIFETIME,
        rate_per_sec: NonZeroU32::new(100).unwrap(),
        rate_burst: NonZeroU32::new(200).unwrap(),
        upstream_timeout_ms: 2000,
        breaker_window: 20,
        breaker_failures: 10,
        breaker_open_ms: 5000,
        max_in_flight: 128,
        max_open_sagas: 300,
        idempotency_retention: Duration::from_secs(24 * 3600),
    };
    tune(&mut config);
    let secrets = Secrets {
        jwt_secret: SecretString::from(SECRET),
        service_token: SecretString::from(service_token.to_owned()),
    };
    let app = Application::build(config, secrets)
        .await
        .expect("the gateway starts");
    let address = format!("http://127.0.0.1:{}", app.port());
    let metrics_address = format!("http://127.0.0.1:{}", app.metrics_port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until(shutdown.clone()));
    TestApp {
        address,
        metrics_address,
        client: reqwest::Client::new(),
        fake,
        db,
        shutdown,
    }
}

/// The keys the gateway under test signs and verifies with.
fn keys() -> JwtKeys {
    let policy = TokenPolicy {
        issuer: ISSUER.into(),
        audience: AUDIENCE.into(),
        max_lifetime: MAX_LIFETIME,
    };
    JwtKeys::new(&SecretString::from(SECRET), policy)
}

impl TestApp {
    fn token(&self, customer: &str) -> String {
        keys().issue(customer, Duration::from_secs(60)).unwrap()
    }

    fn post(&self, path: &str, customer: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.address))
            .bearer_auth(self.token(customer))
    }

    fn get(&self, path: &str, customer: &str) -> reqwest::RequestBuilder {
        self.client
            .get(format!("{}{path}", self.address))
            .bearer_auth(self.token(customer))
    }

    async fn place(&self, customer: &str, body: Value, key: Option<&str>) -> reqwest::Response {
        let mut request = self.post("/orders", customer).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.unwrap()
    }

    /// Places [`an_order`] for `customer` and returns its id.
    async fn placed_order_id(&self, customer: &str) -> String {
        let placed = json_of(self.place(customer, an_order(), None).await).await;
        placed["order_id"].as_str().expect("an order id").to_owned()
    }

    /// The Prometheus text of `/metrics` (on its own port).
    async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.metrics_address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.db.drop().await;
    }
}

fn an_order() -> Value {
    json!({"lines": [{"sku": "SKU-1", "quantity": 2}], "currency": "EUR"})
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("a JSON body")
}

/// The body of an error answer, which must be an RFC 9457 problem of the answer's status.
async fn problem_of(response: reqwest::Response) -> Value {
    assert_eq!(response.headers()["content-type"], PROBLEM_JSON);
    let status = response.status().as_u16();
    let body = json_of(response).await;
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:choreo:problem:")),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
    assert_eq!(body["status"], status, "{body}");
    assert!(body["detail"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn an_order_is_placed_for_the_tokens_customer_with_an_id_the_gateway_made() {
    let app = spawn_app(|_| {}).await;
    let response = app.place("cus_alice", an_order(), None).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body = json_of(response).await;
    let id = body["order_id"].as_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    assert_eq!(body["status"], "placed");
    assert_eq!(body["links"]["self"], format!("/orders/{id}"));
    assert_eq!(body["total_minor"], 1000);
    assert_eq!(
        app.fake.orders.lock().unwrap()[id]["customer_id"],
        "cus_alice"
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_is_a_4xx_json_error_never_a_5xx() {
    let app = spawn_app(|_| {}).await;
    let cases: Vec<(&str, &str, StatusCode, Option<&str>)> = vec![
        (
            "application/json",
            "{\"lines\": [",
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "application/json",
            r#"{"lines":[{"sku":"SKU-1","quantity":"two"}],"currency":"EUR"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lines[0].quantity"),
        ),
        (
            "application/json",
            r#"{"lines":[{"sku":"SKU-1","quantity":1}],"currency":"EUR","coupon":"x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("coupon"),
        ),
        (
            "application/json",
            r#"{"lines":[],"currency":"EUR"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lines"),
        ),
        (
            "application/json",
            r#"{"lines":[{"sku":"sku 1","quantity":1}],"currency":"EUR"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lines[0].sku"),
        ),
        (
            "application/json",
            r#"{"lines":[{"sku":"SKU-1","quantity":1001}],"currency":"eur"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("lines[0].quantity"),
        ),
        (
            "text/plain",
            "hello",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            None,
        ),
    ];
    for (content_type, body, status, field) in cases {
        let response = app
            .post("/orders", "cus_alice")
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        let json = problem_of(response).await;
        assert_eq!(json["field"].as_str(), field, "{body}: {json}");
    }
    let response = app
        .post("/orders", "cus_alice")
        .json(&an_order())
        .header("Idempotency-Key", "")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem_of(response).await["field"], "Idempotency-Key");
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_request_without_a_token_is_401_problem() {
    let app = spawn_app(|_| {}).await;
    let response = app
        .client
        .post(format!("{}/orders", app.address))
        .json(&an_order())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body = problem_of(response).await;
    assert_eq!(body["type"], "urn:choreo:problem:unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn a_token_for_another_audience_or_issuer_or_living_too_long_is_401() {
    let app = spawn_app(|_| {}).await;
    let other_audience = JwtKeys::new(
        &SecretString::from(SECRET),
        TokenPolicy {
            issuer: ISSUER.into(),
            audience: "another-api".into(),
            max_lifetime: MAX_LIFETIME,
        },
    );
    let other_issuer = JwtKeys::new(
        &SecretString::from(SECRET),
        TokenPolicy {
            issuer: "someone-else".into(),
            audience: AUDIENCE.into(),
            max_lifetime: MAX_LIFETIME,
        },
    );
    let long_lived = JwtKeys::new(
        &SecretString::from(SECRET),
        TokenPolicy {
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            max_lifetime: MAX_LIFETIME * 24,
        },
    );
    for (what, token) in [
        (
            "audience",
            other_audience.issue("cus_alice", Duration::from_secs(60)),
        ),
        (
            "issuer",
            other_issuer.issue("cus_alice", Duration::from_secs(60)),
        ),
        ("lifetime", long_lived.issue("cus_alice", MAX_LIFETIME * 2)),
    ] {
        let response = app
            .client
            .post(format!("{}/orders", app.address))
            .bearer_auth(token.unwrap())
            .json(&an_order())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer", "{what}");
        problem_of(response).await;
    }
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), 0);
    app.stop().await;
}

#[tokio::test]
async fn a_gateway_whose_service_token_is_refused_answers_503_never_401() {
    let app = spawn_app_sending("a-stale-service-token", |_| {}).await;
    let response = app.place("cus_alice", an_order(), None).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    problem_of(response).await;
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_sku_passes_through_as_the_order_service_said() {
    let app = spawn_app(|_| {}).await;
    let body = json!({"lines": [{"sku": "UNKNOWN", "quantity": 1}], "currency": "EUR"});
    let response = app.place("cus_alice", body, None).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = problem_of(response).await;
    assert_eq!(body["type"], "urn:choreo:problem:invalid-value");
    assert_eq!(body["detail"], "unknown sku UNKNOWN");
    app.stop().await;
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_first_answer_and_creates_one_order() {
    let app = spawn_app(|_| {}).await;
    let first = app.place("cus_alice", an_order(), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_body = first.bytes().await.unwrap();

    let again = app.place("cus_alice", an_order(), Some("key-1")).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), 1);
    assert_eq!(app.fake.orders.lock().unwrap().len(), 1);

    // Keys are per customer: bob's key-1 is another key.
    let bob = app.place("cus_bob", an_order(), Some("key-1")).await;
    assert!(bob.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.fake.orders.lock().unwrap().len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_422() {
    let app = spawn_app(|_| {}).await;
    app.place("cus_alice", an_order(), Some("key-2")).await;
    let other = json!({"lines": [{"sku": "SKU-2", "quantity": 1}], "currency": "EUR"});
    let response = app.place("cus_alice", other, Some("key-2")).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = problem_of(response).await;
    assert_eq!(body["type"], "urn:choreo:problem:idempotency-key-reused");
    assert!(body["detail"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_second_request_while_the_first_is_in_flight_is_409() {
    let app = spawn_app(|_| {}).await;
    app.fake.delay_ms.store(600, Ordering::SeqCst);
    let slow = app.place("cus_alice", an_order(), Some("key-3"));
    let eager = async {
        // Once the first request has reached the order service, it holds the key.
        while app.fake.place_calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        app.place("cus_alice", an_order(), Some("key-3")).await
    };
    let (slow, eager) = tokio::join!(slow, eager);
    assert_eq!(slow.status(), StatusCode::CREATED);
    assert_eq!(eager.status(), StatusCode::CONFLICT);
    assert!(eager.headers().contains_key("retry-after"));
    app.stop().await;
}

#[tokio::test]
async fn a_retry_after_an_upstream_failure_reuses_the_order_id() {
    let app = spawn_app(|_| {}).await;
    app.fake.failing.store(true, Ordering::SeqCst);
    let failed = app.place("cus_alice", an_order(), Some("key-4")).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    app.fake.failing.store(false, Ordering::SeqCst);
    let retried = app.place("cus_alice", an_order(), Some("key-4")).await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.fake.orders.lock().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app(|config| {
        config.rate_per_sec = NonZeroU32::new(1).unwrap();
        config.rate_burst = NonZeroU32::new(2).unwrap();
    })
    .await;
    let id = uuid::Uuid::now_v7();
    for _ in 0..2 {
        let response = app
            .get(&format!("/orders/{id}"), "cus_alice")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let limited = app
        .get(&format!("/orders/{id}"), "cus_alice")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(
        problem_of(limited).await["type"],
        "urn:choreo:problem:rate-limited"
    );
    // Another customer has a bucket of its own.
    let bob = app
        .get(&format!("/orders/{id}"), "cus_bob")
        .send()
        .await
        .unwrap();
    assert_eq!(bob.status(), StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn an_open_breaker_answers_503_fast_without_calling_the_upstream() {
    let app = spawn_app(|config| {
        config.breaker_failures = 2;
        config.breaker_open_ms = 30_000;
    })
    .await;
    app.fake.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let response = app.place("cus_alice", an_order(), None).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let started = Instant::now();
    let response = app.place("cus_alice", an_order(), None).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body = problem_of(response).await;
    assert_eq!(body["type"], "urn:choreo:problem:unavailable");
    assert!(body["detail"].as_str().unwrap().contains("order"));
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), 2);
    app.stop().await;
}

#[tokio::test]
async fn a_slow_upstream_is_cut_off_with_504() {
    let app = spawn_app(|config| config.upstream_timeout_ms = 150).await;
    app.fake.delay_ms.store(2000, Ordering::SeqCst);
    let started = Instant::now();
    let response = app.place("cus_alice", an_order(), None).await;
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(
        problem_of(response).await["type"],
        "urn:choreo:problem:timeout"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_order_is_shown_with_its_payments_and_shipments_to_its_owner_only() {
    let app = spawn_app(|_| {}).await;
    let id = app.placed_order_id("cus_alice").await;
    let id = id.as_str();

    let view = app
        .get(&format!("/orders/{id}"), "cus_alice")
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), StatusCode::OK);
    let view = json_of(view).await;
    assert_eq!(view["order"]["order_id"], id);
    assert_eq!(view["payments"][0]["order_id"], id);
    assert_eq!(view["shipments"][0]["order_id"], id);
    assert_eq!(view["degraded"], json!([]));

    let mallory = app
        .get(&format!("/orders/{id}"), "cus_mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(mallory.status(), StatusCode::NOT_FOUND);
    let cancel = app
        .post(&format!("/orders/{id}/cancel"), "cus_mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.fake.orders.lock().unwrap()[id]["status"], "placed");
    app.stop().await;
}

#[tokio::test]
async fn the_owner_cancels_once_and_then_gets_409() {
    let app = spawn_app(|_| {}).await;
    let id = app.placed_order_id("cus_alice").await;
    let id = id.as_str();
    let cancel = app
        .post(&format!("/orders/{id}/cancel"), "cus_alice")
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::ACCEPTED);
    assert_eq!(json_of(cancel).await["status"], "cancelled");
    let again = app
        .post(&format!("/orders/{id}/cancel"), "cus_alice")
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);
    app.stop().await;
}

#[tokio::test]
async fn an_order_is_still_shown_when_payment_is_down() {
    let app = spawn_app(|config| config.payment_url = NOWHERE.into()).await;
    let id = app.placed_order_id("cus_alice").await;
    let id = id.as_str();
    let view = app
        .get(&format!("/orders/{id}"), "cus_alice")
        .send()
        .await
        .unwrap();
    assert_eq!(view.status(), StatusCode::OK);
    let view = json_of(view).await;
    assert_eq!(view["degraded"], json!(["payment"]));
    assert_eq!(view["payments"], Value::Null);
    assert_eq!(view["shipments"][0]["order_id"], id);
    app.stop().await;
}

#[tokio::test]
async fn the_request_id_is_returned_and_forwarded_or_made() {
    let app = spawn_app(|_| {}).await;
    let response = app
        .post("/orders", "cus_alice")
        .header("x-request-id", "req-123")
        .json(&an_order())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-123");
    assert_eq!(
        app.fake.last_request_id.lock().unwrap().as_deref(),
        Some("req-123")
    );

    let made = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    app.stop().await;
}

#[tokio::test]
async fn the_operations_endpoints_and_the_api_document_are_served() {
    let app = spawn_app(|_| {}).await;
    app.place("cus_alice", an_order(), None).await;
    for path in ["/healthz", "/readyz"] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"route="/orders""#) && metrics.contains(r#"status="201""#),
        "{metrics}"
    );
    let public = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        StatusCode::NOT_FOUND,
        "/metrics is not on the public port"
    );
    let doc = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        json_of(doc).await["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_order_beyond_the_in_flight_bound_is_shed_at_once_with_503_and_retry_after() {
    let app = spawn_app(|config| config.max_in_flight = 1).await;
    app.fake.delay_ms.store(1500, Ordering::SeqCst);
    let first = {
        let request = app.post("/orders", "cus_alice").json(&an_order());
        tokio::spawn(async move { request.send().await.unwrap() })
    };
    while app.fake.place_calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let started = Instant::now();
    let shed = app.place("cus_bob", an_order(), Some("bob-1")).await;

    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    let body = problem_of(shed).await;
    assert_eq!(body["type"], "urn:choreo:problem:overloaded");
    assert!(body["detail"].as_str().unwrap().contains("busy"));
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), 1);
    assert_eq!(first.await.unwrap().status(), StatusCode::CREATED);
    // The slot is free again, and the shed request left its key unclaimed.
    let retried = app.place("cus_bob", an_order(), Some("bob-1")).await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"choreo_gateway_shed_total{reason="in_flight",service="gateway"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"choreo_gateway_in_flight{service="gateway"} 0"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn new_orders_are_shed_while_too_many_sagas_are_open_and_taken_again_after() {
    let app = spawn_app(|config| config.max_open_sagas = 300).await;
    *app.fake.open_sagas.lock().unwrap() = 450;
    let deadline = Instant::now() + Duration::from_secs(5);
    let shed = loop {
        let response = app.place("cus_alice", an_order(), None).await;
        if response.status() == StatusCode::SERVICE_UNAVAILABLE {
            break response;
        }
        assert!(Instant::now() < deadline, "never shed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(shed.headers()["retry-after"], "2");
    let calls = app.fake.place_calls.load(Ordering::SeqCst);
    // Reads are not shed.
    let id = uuid::Uuid::now_v7();
    let read = app.get(&format!("/orders/{id}"), "cus_alice").send().await;
    assert_eq!(read.unwrap().status(), StatusCode::NOT_FOUND);

    *app.fake.open_sagas.lock().unwrap() = 20;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let response = app.place("cus_alice", an_order(), None).await;
        if response.status() == StatusCode::CREATED {
            break;
        }
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "never taken again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.fake.place_calls.load(Ordering::SeqCst), calls + 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"choreo_gateway_open_sagas{service="gateway"} 20"#),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_unreadable_saga_backlog_sheds_nothing() {
    let app = spawn_app(|_| {}).await;
    app.fake.admission_failing.store(true, Ordering::SeqCst);
    *app.fake.open_sagas.lock().unwrap() = 100_000;
    tokio::time::sleep(Duration::from_millis(1200)).await;

    let response = app.place("cus_alice", an_order(), None).await;

    assert_eq!(response.status(), StatusCode::CREATED);
    app.stop().await;
}

#[tokio::test]
async fn idempotency_keys_older_than_the_retention_are_pruned_unless_a_request_holds_them() {
    // The application's own pruner keeps a month, so only the one below prunes these rows.
    let app =
        spawn_app(|config| config.idempotency_retention = Duration::from_secs(30 * 86_400)).await;
    let placed = app.place("cus_alice", an_order(), Some("fresh")).await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    for (key, locked_for_secs, answered) in [
        ("answered-1", None, true),
        ("answered-2", None, true),
        ("abandoned", Some(-60.0), false),
        ("held", Some(60.0), false),
    ] {
        sqlx::query(
            "insert into idempotency_keys
                 (customer_id, idempotency_key, request_hash, order_id, locked_until,
                  response_status, response_body, created_at)
             values ('cus_old', $1, '\\x00', gen_random_uuid(),
                     now() + make_interval(secs => $2), $3, $4, now() - interval '2 days')",
        )
        .bind(key)
        .bind(locked_for_secs)
        .bind(answered.then_some(201_i16))
        .bind(answered.then_some(b"{}".to_vec()))
        .execute(&app.db.pool)
        .await
        .unwrap();
    }
    let metrics = choreo::metrics::Metrics::new("gateway");
    let pruner = gateway::idempotency::pruner(
        app.db.pool.clone(),
        Duration::from_secs(24 * 3600),
        &metrics,
    )
    .unwrap();

    let cycle = pruner.cycle(&CancellationToken::new()).await.unwrap();

    assert_eq!((cycle.deleted, cycle.rows), (3, 2));
    let left: Vec<String> =
        sqlx::query_scalar("select idempotency_key from idempotency_keys order by 1")
            .fetch_all(&app.db.pool)
            .await
            .unwrap();
    assert_eq!(left, ["fresh", "held"]);
    let text = metrics.render();
    assert!(
        text.contains(r#"choreo_gateway_idempotency_keys_rows{service="gateway"} 2"#),
        "{text}"
    );
    assert!(
        text.contains(r#"choreo_gateway_idempotency_keys_pruned_total{service="gateway"} 3"#),
        "{text}"
    );
    app.stop().await;
}
