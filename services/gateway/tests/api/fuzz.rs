//! The gateway under fire: thousands of generated malformed, oversized, wrongly typed and
//! hostile requests (broken JSON, huge numbers, deep nesting, non-UTF-8, hostile headers,
//! forged, expired and unsigned tokens, the wrong issuer or audience, a future `nbf`, a lifetime
//! over the maximum) from a fixed seed, so a failure replays. Each must get the 4xx its
//! problem kind says (413 for an oversized body, 401 for any token trouble, 400/415/422 for a
//! body), never a 5xx and never a dropped connection (a panic); afterwards the gateway still
//! places a good order.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as Cases, RngAlgorithm, TestRng, TestRunner};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{an_order, keys, spawn_app, AUDIENCE, ISSUER, MAX_LIFETIME, PROBLEM_JSON, SECRET};

/// The seed every run draws its cases from.
const SEED: [u8; 32] = *b"choreo-gateway-fuzz-seed-0000001";
/// How many requests are in flight at once.
const CONCURRENCY: usize = 16;
/// What axum takes at most in a body (its default limit).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// One hostile request and the statuses it may get.
#[derive(Debug, Clone)]
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Vec<u8>,
    expect: &'static [u16],
    /// Whether the answer must be a problem body (the gateway's own refusals are).
    problem: bool,
}

impl Case {
    fn post(
        what: &'static str,
        token: Option<&str>,
        body: Vec<u8>,
        expect: &'static [u16],
    ) -> Self {
        let mut headers = vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))];
        if let Some(token) = token {
            headers.push((AUTHORIZATION, bearer(token)));
        }
        Self {
            what,
            method: Method::POST,
            path: "/orders".into(),
            headers,
            body,
            expect,
            problem: true,
        }
    }
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("a visible token")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn good_token() -> String {
    keys().issue("cus_fuzz", Duration::from_secs(600)).unwrap()
}

fn order_bytes() -> Vec<u8> {
    an_order().to_string().into_bytes()
}

/// Signs `claims` (any JSON) with `secret` and `alg`.
fn sign(claims: &Value, secret: &str, alg: jsonwebtoken::Algorithm) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// `{"alg":"none","typ":"JWT"}`, base64url.
const ALG_NONE: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

/// A token spoiled in one of many ways; every one must be 401.
fn bad_token() -> impl Strategy<Value = Case> {
    let good_claims = |now: u64| {
        json!({"sub": "cus_fuzz", "iss": ISSUER, "aud": AUDIENCE,
               "iat": now, "nbf": now, "exp": now + 60})
    };
    let spoiled = (
        0u8..15,
        "[a-zA-Z0-9 _.-]{0,40}",
        1u64..1_000_000_000,
        any::<u64>(),
    )
        .prop_map(move |(how, text, n, huge)| {
            let now = now();
            let mut claims = good_claims(now);
            let mut secret = SECRET.to_owned();
            let mut alg = jsonwebtoken::Algorithm::HS256;
            match how {
                0 => secret = format!("forged-{text}-{n}"),
                1 => {
                    claims["iat"] = json!(now - 600 - n % 3000);
                    claims["exp"] = json!(now - 1 - n % 500);
                    claims["nbf"] = json!(now - 600 - n % 3000);
                }
                2 => claims["nbf"] = json!(now + 1 + n),
                3 => claims["iss"] = json!(format!("x{text}")),
                4 => claims["aud"] = json!(format!("x{text}")),
                5 => claims["exp"] = json!(now + MAX_LIFETIME.as_secs() + 1 + n % 1_000_000),
                6 => {
                    claims.as_object_mut().unwrap().remove("exp");
                }
                7 => {
                    claims.as_object_mut().unwrap().remove("iat");
                }
                8 => claims["iat"] = json!(now + 1 + n),
                9 => alg = jsonwebtoken::Algorithm::HS512,
                10 => claims["exp"] = json!(huge.max(now + MAX_LIFETIME.as_secs() + 1)),
                11 => claims["exp"] = json!(1e300),
                12 => claims["aud"] = json!([format!("x{text}")]),
                13 => claims["sub"] = json!(""),
                _ => {}
            }
            let token = if how == 14 {
                // Unsigned (alg=none) over the good claims.
                let good = sign(&claims, SECRET, jsonwebtoken::Algorithm::HS256);
                let payload = good.split('.').nth(1).unwrap().to_owned();
                format!("{ALG_NONE}.{payload}.")
            } else {
                sign(&claims, &secret, alg)
            };
            Case::post("spoiled token", Some(&token), order_bytes(), &[401])
        });
    let garbage = "[!-~]{0,300}"
        .prop_map(|text| Case::post("garbage token", Some(&text), order_bytes(), &[401]));
    let header = prop_oneof![
        Just(None),
        "[ -~]{0,100}".prop_map(|t| Some(t.into_bytes())),
        prop::collection::vec(prop_oneof![0x80u8..=0xFF, 0x20u8..0x7F], 1..200).prop_map(Some),
    ]
    .prop_map(|value| {
        let mut case = Case::post("hostile Authorization header", None, order_bytes(), &[401]);
        if let Some(bytes) = value {
            // Never a good one by chance: the secret signs no header made of random bytes.
            case.headers
                .push((AUTHORIZATION, HeaderValue::from_bytes(&bytes).unwrap()));
        }
        case
    });
    prop_oneof![6 => spoiled, 2 => garbage, 2 => header]
}

/// Any JSON value, nested a little.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value that is no string.
fn not_a_string() -> impl Strategy<Value = Value> {
    arb_json().prop_filter("not a string", |v| !v.is_string())
}

/// A value that is no quantity (no integer from 1 up).
fn not_a_quantity() -> impl Strategy<Value = Value> {
    arb_json().prop_filter("not a quantity", |v| v.as_u64().is_none_or(|q| q == 0))
}

/// A number written out too large for any integer type, or malformed.
fn huge_number() -> impl Strategy<Value = String> {
    prop_oneof![
        "[1-9][0-9]{20,400}",
        "-[1-9][0-9]{20,400}",
        "[1-9]e[3-9][0-9]{2,5}",
        "[0-9]{1,5}\\.[0-9]{1,30}",
        Just("-0".to_owned()),
        Just("1e-400".to_owned()),
    ]
}

/// A body with a good token that the gateway must refuse as it is: 400 or 422.
fn bad_body() -> impl Strategy<Value = Case> {
    let valid = order_bytes();
    let truncated = (0..valid.len()).prop_map(move |at| valid[..at].to_vec());
    let random = prop::collection::vec(any::<u8>(), 0..512);
    let non_utf8 = prop::collection::vec(0x80u8..=0xFF, 1..16).prop_map(|bytes| {
        let mut body = br#"{"lines":[{"sku":""#.to_vec();
        body.extend(bytes);
        body.extend(br#"","quantity":1}],"currency":"EUR"}"#);
        body
    });
    let wrong_types = (not_a_string(), not_a_quantity(), not_a_string(), 0u8..4).prop_map(
        |(sku, quantity, currency, which)| {
            let body = match which {
                0 => json!({"lines": [{"sku": sku, "quantity": 1}], "currency": "EUR"}),
                1 => json!({"lines": [{"sku": "SKU-1", "quantity": quantity}], "currency": "EUR"}),
                2 => json!({"lines": [{"sku": "SKU-1", "quantity": 1}], "currency": currency}),
                _ => json!({"lines": quantity, "currency": "EUR"}),
            };
            body.to_string().into_bytes()
        },
    );
    let huge = huge_number().prop_map(|n| {
        format!(r#"{{"lines":[{{"sku":"SKU-1","quantity":{n}}}],"currency":"EUR"}}"#).into_bytes()
    });
    let deep =
        (100usize..50_000, any::<bool>(), any::<bool>()).prop_map(|(depth, inside, objects)| {
            let (open, close) = if objects {
                (r#"{"a":"#, "}")
            } else {
                ("[", "]")
            };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            if inside {
                format!(r#"{{"lines":{nested},"currency":"EUR"}}"#).into_bytes()
            } else {
                nested.into_bytes()
            }
        });
    let random_json = arb_json().prop_map(|v| v.to_string().into_bytes());
    let token = good_token();
    prop_oneof![
        (truncated, Just("truncated JSON")),
        (random, Just("random bytes")),
        (non_utf8, Just("non-UTF-8 JSON")),
        (wrong_types, Just("wrongly typed field")),
        (huge, Just("huge number")),
        (deep, Just("deep nesting")),
        (random_json, Just("random JSON")),
    ]
    .prop_map(move |(body, what)| Case::post(what, Some(&token), body, &[400, 422]))
}

/// A good body the gateway must refuse for its media type, its `Idempotency-Key` or its
/// method, or an id in a path that names no order.
fn bad_envelope() -> impl Strategy<Value = Case> {
    let token = good_token();
    let media = {
        let token = token.clone();
        prop_oneof![
            Just(None),
            Just(Some("text/plain".to_owned())),
            Just(Some("application/xml".to_owned())),
            Just(Some("application/x-www-form-urlencoded".to_owned())),
            "[a-z]{1,12}/[a-z]{1,12}".prop_map(Some),
        ]
        .prop_map(move |content_type| {
            let mut case = Case::post("wrong media type", Some(&token), order_bytes(), &[415]);
            case.headers.retain(|(name, _)| name != CONTENT_TYPE);
            if let Some(content_type) = content_type {
                let value = HeaderValue::from_str(&content_type).unwrap();
                case.headers.push((CONTENT_TYPE, value));
            }
            case
        })
    };
    let key = {
        let token = token.clone();
        prop_oneof![
            "[!-~]{256,400}".prop_map(String::into_bytes),
            "[!-~]{1,10} [!-~]{1,10}".prop_map(String::into_bytes),
            prop::collection::vec(0x80u8..=0xFF, 1..40),
        ]
        // (A space at either end is no hostility: HTTP strips it.)
        .prop_map(move |bytes| {
            let mut case = Case::post(
                "hostile Idempotency-Key",
                Some(&token),
                order_bytes(),
                &[422],
            );
            let value = HeaderValue::from_bytes(&bytes).unwrap();
            case.headers
                .push((HeaderName::from_static("idempotency-key"), value));
            case
        })
    };
    let path = {
        let token = token.clone();
        // (Not starting with a dot: clients resolve `.` and `..` segments.)
        ("[A-Za-z0-9_~-][A-Za-z0-9_.~-]{0,199}", any::<bool>()).prop_map(move |(id, cancel)| {
            let (method, path) = if cancel {
                (Method::POST, format!("/orders/{id}/cancel"))
            } else {
                (Method::GET, format!("/orders/{id}"))
            };
            Case {
                what: "no such order",
                method,
                path,
                headers: vec![(AUTHORIZATION, bearer(&token))],
                body: Vec::new(),
                expect: &[404],
                problem: true,
            }
        })
    };
    let method = prop_oneof![Just(Method::PUT), Just(Method::DELETE), Just(Method::PATCH)]
        .prop_map(move |method| Case {
            what: "method not allowed",
            method,
            path: "/orders".into(),
            headers: vec![(AUTHORIZATION, bearer(&token))],
            body: order_bytes(),
            expect: &[405],
            problem: false,
        });
    prop_oneof![3 => media, 3 => key, 3 => path, 1 => method]
}

/// Bodies just over the limit, in JSON and not: 413.
fn oversized() -> Vec<Case> {
    let token = good_token();
    [1, 4096, BODY_LIMIT / 2]
        .into_iter()
        .map(|over| {
            let filler = "A".repeat(BODY_LIMIT + over);
            let body =
                format!(r#"{{"lines":[{{"sku":"{filler}","quantity":1}}],"currency":"EUR"}}"#);
            Case::post("oversized body", Some(&token), body.into_bytes(), &[413])
        })
        .collect()
}

/// `count` cases drawn from `strategy` by `runner`.
fn draw<S: Strategy<Value = Case>>(
    runner: &mut TestRunner,
    strategy: S,
    count: usize,
) -> Vec<Case> {
    (0..count)
        .map(|_| strategy.new_tree(runner).expect("a case").current())
        .collect()
}

async fn send(client: &reqwest::Client, address: &str, case: &Case) -> Result<(), String> {
    let mut request = client.request(case.method.clone(), format!("{address}{}", case.path));
    for (name, value) in &case.headers {
        request = request.header(name, value);
    }
    let response = request
        .body(case.body.clone())
        .send()
        .await
        .map_err(|e| format!("{}: no answer ({e}); {case:?}", case.what))?;
    let status = response.status();
    let content_type = response.headers().get(CONTENT_TYPE).cloned();
    let www_authenticate = response.headers().get("www-authenticate").cloned();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("{}: {e}", case.what))?;
    let shown = || {
        let mut case = case.clone();
        case.body.truncate(300);
        format!(
            "{} got {status}: {}; {case:?}",
            case.what,
            String::from_utf8_lossy(&body[..body.len().min(300)])
        )
    };
    if status.is_server_error() || !case.expect.contains(&status.as_u16()) {
        return Err(shown());
    }
    if case.problem {
        let problem: Value = serde_json::from_slice(&body).map_err(|_| shown())?;
        if content_type.as_ref().and_then(|v| v.to_str().ok()) != Some(PROBLEM_JSON)
            || problem["status"] != status.as_u16()
        {
            return Err(shown());
        }
    }
    if status == StatusCode::UNAUTHORIZED && www_authenticate.is_none() {
        return Err(shown());
    }
    Ok(())
}

#[tokio::test]
async fn thousands_of_hostile_requests_get_the_right_4xx_and_the_gateway_still_serves() {
    let app = spawn_app(|config| {
        config.rate_per_sec = std::num::NonZeroU32::new(1_000_000).unwrap();
        config.rate_burst = std::num::NonZeroU32::new(1_000_000).unwrap();
    })
    .await;
    let mut runner = TestRunner::new_with_rng(
        Cases::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let mut cases = draw(&mut runner, bad_token(), 2000);
    cases.extend(draw(&mut runner, bad_body(), 2500));
    cases.extend(draw(&mut runner, bad_envelope(), 1000));
    cases.extend(oversized());
    let total = cases.len();
    let cases = Arc::new(cases);

    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONCURRENCY {
        let (cases, address, client) = (cases.clone(), app.address.clone(), app.client.clone());
        workers.spawn(async move {
            let mut failures = Vec::new();
            for case in cases.iter().skip(worker).step_by(CONCURRENCY) {
                if let Err(failure) = send(&client, &address, case).await {
                    failures.push(failure);
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = workers.join_next().await {
        failures.extend(done.expect("a worker"));
    }
    assert!(
        failures.is_empty(),
        "{} of {total} hostile requests were answered wrongly; the first: {:#?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );

    let placed = app.place("cus_alice", an_order(), None).await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let health = app
        .client
        .get(format!("{}/healthz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    app.stop().await;
}
