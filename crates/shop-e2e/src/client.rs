//! A client of the running shop: the public gateway (with tokens it signs itself, as a developer
//! would with `scripts/shop token`) and, for setup and checks, the services' internal APIs.
//! Addresses come from `.stack/shop.env`, which `scripts/shop up` writes, and so do the files of
//! the secrets (`GATEWAY_JWT_SECRET_FILE` to sign tokens, `OPERATOR_TOKEN_FILE` for the
//! services' internal APIs, which every internal call sends).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use choreo::secret::{ExposeSecret, SecretString};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The shop's addresses and a client for them.
/// An HTTP answer: status, JSON body (`null` when not JSON) and `Retry-After`, if given in seconds.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<Duration>,
}

#[derive(Clone)]
pub struct Shop {
    pub http: reqwest::Client,
    pub gateway: String,
    pub order: String,
    pub inventory: String,
    pub payment: String,
    pub shipping: String,
    pub provider: String,
    keys: gateway::auth::JwtKeys,
    /// Sent on every call to a service's internal API.
    operator_token: SecretString,
}

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| {
        format!("{name} is not set: run scripts/shop up (it writes .stack/shop.env)")
    })
}

impl Shop {
    /// Reads the addresses from the environment, or else from `.stack/shop.env` beside the
    /// stack's env file.
    pub fn from_env() -> anyhow::Result<Self> {
        if let Some(stack_env) = choreo::config::load_env_file() {
            let shop_env: PathBuf = stack_env.with_file_name("shop.env");
            if shop_env.is_file() {
                dotenvy::from_path(&shop_env)
                    .with_context(|| format!("reading {}", shop_env.display()))?;
            }
        }
        let secret = choreo::secret::required("GATEWAY_JWT_SECRET")?;
        let policy = gateway::config::Config::token_policy_from_env()?;
        let operator_token = choreo::secret::required("OPERATOR_TOKEN")?;
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(256)
                .build()?,
            gateway: var("GATEWAY_URL")?,
            order: var("ORDER_URL")?,
            inventory: var("INVENTORY_URL")?,
            payment: var("PAYMENT_URL")?,
            shipping: var("SHIPPING_URL")?,
            provider: var("PROVIDER_URL")?,
            keys: gateway::auth::JwtKeys::new(&secret, policy),
            operator_token,
        })
    }

    /// Fails with a clear message unless every part answers its readiness check.
    pub async fn ensure_running(&self) -> anyhow::Result<()> {
        let checks = [
            (&self.gateway, "/readyz"),
            (&self.order, "/readyz"),
            (&self.inventory, "/readyz"),
            (&self.payment, "/readyz"),
            (&self.shipping, "/readyz"),
            (&self.provider, "/healthz"),
        ];
        for (base, path) in checks {
            let ok = self
                .http
                .get(format!("{base}{path}"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !ok {
                bail!("{base}{path} does not answer: start the shop with scripts/shop up");
            }
        }
        Ok(())
    }

    /// A gateway token for customer `subject`, valid as long as the gateway allows (an hour by
    /// default).
    pub fn token(&self, subject: &str) -> String {
        self.keys
            .issue(subject, self.keys.policy().max_lifetime)
            .expect("a token")
    }

    /// The operator token, for a call to a service's internal API.
    fn operator(&self) -> Option<&str> {
        Some(self.operator_token.expose_secret())
    }

    /// `request` with the operator token (the provider simulator's `/admin/faults`).
    pub fn as_operator(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(self.operator_token.expose_secret())
    }

    /// Sends a JSON request; the status and the body (JSON, or `null` when there is none).
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let answer = self.answer(method, url, token, headers, body).await?;
        Ok((answer.status, answer.body))
    }

    /// [`Shop::call`] with the whole answer (its `Retry-After` too).
    pub async fn answer(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.with_context(|| url.to_owned())?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = response.bytes().await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            retry_after,
        })
    }

    /// `POST /orders` through the gateway.
    pub async fn place(
        &self,
        token: &str,
        lines: &[(String, u32)],
        idempotency_key: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let answer = self.place_answer(token, lines, idempotency_key).await?;
        Ok((answer.status, answer.body))
    }

    /// [`Shop::place`] with the whole answer (a shed order's `Retry-After` too).
    pub async fn place_answer(
        &self,
        token: &str,
        lines: &[(String, u32)],
        idempotency_key: &str,
    ) -> anyhow::Result<Answer> {
        let lines: Vec<Value> = lines
            .iter()
            .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
            .collect();
        let body = json!({"lines": lines, "currency": "EUR"});
        let url = format!("{}/orders", self.gateway);
        self.answer(
            Method::POST,
            &url,
            Some(token),
            &[("idempotency-key", idempotency_key)],
            Some(&body),
        )
        .await
    }

    /// `POST /orders/{id}/cancel` through the gateway.
    pub async fn cancel(&self, token: &str, order_id: &str) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}/orders/{order_id}/cancel", self.gateway);
        self.call(Method::POST, &url, Some(token), &[], None).await
    }

    /// `GET /orders/{id}` through the gateway (order, payments, shipments).
    pub async fn view(&self, token: &str, order_id: &str) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}/orders/{order_id}", self.gateway);
        self.call(Method::GET, &url, Some(token), &[], None).await
    }

    /// A GET on an internal service that must answer 2xx.
    pub async fn get(&self, url: String) -> anyhow::Result<Value> {
        let (status, body) = self
            .call(Method::GET, &url, self.operator(), &[], None)
            .await?;
        if !status.is_success() {
            bail!("GET {url}: {status} {body}");
        }
        Ok(body)
    }

    /// The order as the order service holds it, with its timeline.
    pub async fn order(&self, order_id: &str) -> anyhow::Result<Value> {
        self.get(format!("{}/orders/{order_id}", self.order)).await
    }

    pub async fn payments(&self, order_id: &str) -> anyhow::Result<Vec<Value>> {
        list(
            self.get(format!("{}/payments?order_id={order_id}", self.payment))
                .await?,
        )
    }

    pub async fn shipments(&self, order_id: &str) -> anyhow::Result<Vec<Value>> {
        list(
            self.get(format!("{}/shipments?order_id={order_id}", self.shipping))
                .await?,
        )
    }

    pub async fn reservations(&self, order_id: &str) -> anyhow::Result<Vec<Value>> {
        list(
            self.get(format!(
                "{}/reservations?order_id={order_id}",
                self.inventory
            ))
            .await?,
        )
    }

    pub async fn stock(&self, sku: &str) -> anyhow::Result<Value> {
        self.get(format!("{}/stock/{sku}", self.inventory)).await
    }

    /// Puts `sku` in the catalogue at `unit_price_minor` EUR and receives `quantity` units.
    pub async fn stock_up(
        &self,
        sku: &str,
        unit_price_minor: i64,
        quantity: i64,
    ) -> anyhow::Result<()> {
        let price = json!({"currency": "EUR", "unit_price_minor": unit_price_minor});
        let url = format!("{}/catalog/{sku}", self.order);
        let (status, body) = self
            .call(Method::PUT, &url, self.operator(), &[], Some(&price))
            .await?;
        if !status.is_success() {
            bail!("PUT {url}: {status} {body}");
        }
        if quantity > 0 {
            let url = format!("{}/stock/{sku}/receipts", self.inventory);
            let (status, body) = self
                .call(
                    Method::POST,
                    &url,
                    self.operator(),
                    &[],
                    Some(&json!({"quantity": quantity})),
                )
                .await?;
            if !status.is_success() {
                bail!("POST {url}: {status} {body}");
            }
        }
        Ok(())
    }
}

fn list(value: Value) -> anyhow::Result<Vec<Value>> {
    match value {
        Value::Array(items) => Ok(items),
        other => bail!("expected a JSON array, got {other}"),
    }
}
