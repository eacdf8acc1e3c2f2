//! Each order is one distributed trace: a few orders of each ending (shipped, declined by the
//! provider, cancelled by the customer, cancelled at the deadline), each placed with a sampled
//! W3C `traceparent` of its own, and the spans the services exported, read back from the OTLP
//! sink (`otlp-sink`, which `scripts/test` starts and names in `SHOP_E2E_SPANS`):
//!
//! - every span that carries an order (its Kafka key) is in the trace its client started;
//! - a shipped order's ShipmentScheduled was created at the end of one chain of parents that
//!   starts at the gateway and runs gateway -> order -> inventory -> payment -> order ->
//!   shipping, through the payment worker's `charge`;
//! - a timed-out order's OrderCancelled is in its trace, under the order service's `deadline`;
//! - on the topics, every event of these orders but OrderPlaced names, as its causation_id, an
//!   event of the same order.
//!
//! It prints the trace of the first shipped order as a tree. The services must export with the
//! parent-based sampler (`scripts/test` sets `OTEL_TRACES_SAMPLER=parentbased_traceidratio` and
//! ratio 0, so only these orders are traced).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use reqwest::Method;
use serde_json::{json, Value};
use shop_e2e::client::Shop;
use shop_e2e::mix::{plan, Kind, Planned};
use shop_e2e::otlp::{fetch_spans, SpanQuery, SpanRecord};
use shop_e2e::scenario::{Placed, Run, Settled};
use shop_e2e::spans::Trace;
use shop_e2e::topics::{marks, read_between, Seen, SHOP_TOPICS};

/// The path a shipped order's ShipmentScheduled took, by service.
const SHIPPED_PATH: [&str; 6] = [
    "gateway",
    "order",
    "inventory",
    "payment",
    "order",
    "shipping",
];

/// One traced order: what was placed and the context its client sent.
struct Traced {
    placed: Placed,
    trace_id: String,
    /// The client's span id in the `traceparent` of the placing request.
    client_span: String,
}

fn random_hex(digits: usize) -> String {
    uuid::Uuid::new_v4().simple().to_string()[..digits].to_owned()
}

fn traceparent(trace_id: &str) -> (String, String) {
    let span = random_hex(16);
    (format!("00-{trace_id}-{span}-01"), span)
}

/// Places `plan` through the gateway with a sampled `traceparent` of its own; a customer-cancel
/// order is cancelled right after, in the same trace.
async fn place_traced(shop: &Shop, plan: Planned) -> anyhow::Result<Traced> {
    let token = shop.token(&plan.customer);
    let trace_id = random_hex(32);
    let (header, client_span) = traceparent(&trace_id);
    let lines: Vec<Value> = plan
        .lines
        .iter()
        .map(|(sku, q)| json!({"sku": sku, "quantity": q}))
        .collect();
    let key = uuid::Uuid::now_v7().to_string();
    let answer = shop
        .answer(
            Method::POST,
            &format!("{}/orders", shop.gateway),
            Some(&token),
            &[("idempotency-key", &key), ("traceparent", &header)],
            Some(&json!({"lines": lines, "currency": "EUR"})),
        )
        .await?;
    ensure!(
        answer.status.as_u16() == 201,
        "placing {plan:?}: {} {}",
        answer.status,
        answer.body
    );
    let order_id = answer.body["order_id"]
        .as_str()
        .context("an order id")?
        .to_owned();
    if plan.kind == Kind::CustomerCancel {
        let (header, _) = traceparent(&trace_id);
        let url = format!("{}/orders/{order_id}/cancel", shop.gateway);
        let (status, body) = shop
            .call(
                Method::POST,
                &url,
                Some(&token),
                &[("traceparent", &header)],
                None,
            )
            .await?;
        ensure!(
            matches!(status.as_u16(), 202 | 409),
            "cancel: {status} {body}"
        );
    }
    Ok(Traced {
        placed: Placed {
            plan,
            order_id,
            token,
        },
        trace_id,
        client_span,
    })
}

/// Polls `check` every 200 ms until it gives a value, or fails after `limit` with the last
/// reason it gave for "not yet".
async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let give_up = Instant::now() + limit;
    loop {
        let why = match check().await? {
            Ok(value) => return Ok(value),
            Err(why) => why,
        };
        if Instant::now() > give_up {
            bail!("{what}: not after {limit:?}: {why}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn event_type_is(span: &SpanRecord, name: &str) -> bool {
    span.name.starts_with("create ")
        && span
            .attribute("choreo.event_type")
            .is_some_and(|t| t.rsplit('.').next() == Some(name))
}

/// The `create` span of the order's `event` (its short name) in the trace, with its chain of
/// parents once every parent up to the client's span has arrived.
async fn chain_of(
    sink: &str,
    http: &reqwest::Client,
    order: &Traced,
    event: &str,
    limit: Duration,
) -> anyhow::Result<Trace> {
    let query = SpanQuery {
        trace_id: Some(order.trace_id.clone()),
        key: None,
    };
    until(
        &format!("the {event} of order {}", order.placed.order_id),
        limit,
        || async {
            let trace = Trace::new(fetch_spans(http, sink, &query).await?);
            let Some(create) = trace.spans().iter().find(|s| event_type_is(s, event)) else {
                return Ok(Err(format!(
                    "no create span of {event} in trace {} ({} spans)",
                    order.trace_id,
                    trace.spans().len()
                )));
            };
            let chain = trace.chain(create);
            match chain.missing_parent {
                None => Ok(Ok(trace.clone())),
                Some(p) if p == order.client_span => Ok(Ok(trace.clone())),
                Some(_) => Ok(Err(chain.describe())),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_order_is_one_trace_from_the_gateway_through_every_service() {
    let sink = std::env::var("SHOP_E2E_SPANS").expect(
        "SHOP_E2E_SPANS is not set: run this test through scripts/test, which starts otlp-sink, \
         the shop exporting its spans to it, and names the sink in SHOP_E2E_SPANS",
    );
    let shop = Shop::from_env().expect("the shop's addresses");
    shop.ensure_running().await.expect("the shop is running");
    let http = shop.http.clone();
    let health = http.get(format!("{sink}/healthz")).send().await;
    assert!(
        health.is_ok_and(|r| r.status().is_success()),
        "the OTLP sink at {sink} does not answer /healthz"
    );
    let run = Run::prepare(&shop).await.expect("the run's stock");

    // Two orders that ship, and one of each other ending, in the mix's own shapes.
    let wanted = [
        (Kind::InStock, 2),
        (Kind::Declined, 1),
        (Kind::CustomerCancel, 1),
        (Kind::Timeout, 1),
    ];
    let mix = plan(20_261_205, 400, &run.tag, &run.skus);
    let chosen: Vec<Planned> = wanted
        .iter()
        .flat_map(|(kind, n)| mix.iter().filter(|p| p.kind == *kind).take(*n).cloned())
        .collect();
    let mut orders = Vec::new();
    for planned in chosen {
        orders.push(place_traced(&shop, planned).await.expect("an order placed"));
    }
    let placed: Vec<Placed> = orders.iter().map(|o| o.placed.clone()).collect();
    let settled = run
        .settle(&placed, Duration::from_secs(120))
        .await
        .expect("every saga settles");
    let ending = |o: &Traced| -> &Settled { &settled[&o.placed.order_id] };
    for order in &orders {
        let s = ending(order);
        println!(
            "{:?} order {} ended {} {} (trace {})",
            order.placed.plan.kind,
            order.placed.order_id,
            s.order["status"],
            s.order["cancel_reason"],
            order.trace_id
        );
    }

    // The events of these orders on the topics.
    let kafka = run.kafka.clone();
    let before = run.before.clone();
    let seen: Vec<Seen> = tokio::task::spawn_blocking(move || {
        let after = marks(&kafka, SHOP_TOPICS)?;
        read_between(&kafka, &before, &after)
    })
    .await
    .unwrap()
    .expect("the topics read");
    let mut events: HashMap<&str, Vec<&Seen>> = HashMap::new();
    for event in &seen {
        events.entry(event.key.as_str()).or_default().push(event);
    }

    let mut failures: Vec<String> = Vec::new();

    // (d) Every event but OrderPlaced names an event of its own order as its cause.
    for order in &orders {
        let id = order.placed.order_id.as_str();
        let mine = events.get(id).cloned().unwrap_or_default();
        let ids: HashSet<&str> = mine.iter().map(|e| e.event_id.as_str()).collect();
        if !mine.iter().any(|e| e.event_type.ends_with(".OrderPlaced")) {
            failures.push(format!("order {id}: no OrderPlaced on the topics"));
        }
        for e in mine
            .iter()
            .filter(|e| !e.event_type.ends_with(".OrderPlaced"))
        {
            if !e.causation_id.as_deref().is_some_and(|c| ids.contains(c)) {
                failures.push(format!(
                    "order {id}: {} {} has causation_id {:?}, not an event of the order",
                    e.event_type, e.event_id, e.causation_id
                ));
            }
        }
    }

    // Every event's create span arrives (the exporters batch every 200 ms).
    let arrived = until(
        "the create span of every event",
        Duration::from_secs(45),
        || {
            let (http, sink, orders, events) = (&http, &sink, &orders, &events);
            async move {
                let mut missing = Vec::new();
                for order in orders {
                    let id = &order.placed.order_id;
                    let query = SpanQuery {
                        trace_id: None,
                        key: Some(id.clone()),
                    };
                    let spans = fetch_spans(http, sink, &query).await?;
                    let created: HashSet<&str> = spans
                        .iter()
                        .filter(|s| s.name.starts_with("create "))
                        .filter_map(|s| s.attribute("messaging.message.id"))
                        .collect();
                    for e in events.get(id.as_str()).into_iter().flatten() {
                        if !created.contains(e.event_id.as_str()) {
                            missing.push(format!("{} of order {id}", e.event_type));
                        }
                    }
                }
                Ok(if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!("no create span yet for {}", missing.join(", ")))
                })
            }
        },
    )
    .await;
    if let Err(e) = arrived {
        failures.push(format!("{e:#}"));
    }

    // (a) Every span that carries an order is in the trace its client started.
    for order in &orders {
        let id = &order.placed.order_id;
        let query = SpanQuery {
            trace_id: None,
            key: Some(id.clone()),
        };
        let spans = fetch_spans(&http, &sink, &query).await.expect("the spans");
        if spans.is_empty() {
            failures.push(format!("order {id}: no span carries its key"));
        }
        for s in spans.iter().filter(|s| s.trace_id != order.trace_id) {
            failures.push(format!(
                "order {id}: {}:{} is in trace {}, not the client's {}",
                s.service, s.name, s.trace_id, order.trace_id
            ));
        }
    }

    // (b) A shipped order: gateway -> order -> inventory -> payment -> order -> shipping, with
    // the payment worker's charge on the way.
    let shipped: Vec<&Traced> = orders
        .iter()
        .filter(|o| o.placed.plan.kind == Kind::InStock)
        .collect();
    let mut printed = false;
    for order in shipped {
        let id = &order.placed.order_id;
        let limit = Duration::from_secs(30);
        let trace = match chain_of(&sink, &http, order, "ShipmentScheduled", limit).await {
            Ok(trace) => trace,
            Err(e) => {
                failures.push(format!("(b) {e:#}"));
                continue;
            }
        };
        if !printed {
            println!(
                "\ntrace {} of order {id} (offset, duration, service, span):\n{}",
                order.trace_id,
                trace.render()
            );
            printed = true;
        }
        let create = trace
            .spans()
            .iter()
            .find(|s| event_type_is(s, "ShipmentScheduled"))
            .unwrap();
        let chain = trace.chain(create);
        let top = chain.spans.last().unwrap();
        if !(top.service == "gateway" && top.kind == "server" && top.name == "POST /orders") {
            failures.push(format!(
                "(b) order {id}: the chain does not start at the gateway's server span \
                 `POST /orders`: {}",
                chain.describe()
            ));
        }
        if chain.services() != SHIPPED_PATH {
            failures.push(format!(
                "(b) order {id}: services {:?}, expected {SHIPPED_PATH:?}: {}",
                chain.services(),
                chain.describe()
            ));
        }
        if !chain.has("charge") {
            failures.push(format!(
                "(b) order {id}: no payment worker 'charge' span on the way: {}",
                chain.describe()
            ));
        }
    }

    // (c) A timed-out order: its OrderCancelled is in its trace, under the deadline.
    for order in orders
        .iter()
        .filter(|o| o.placed.plan.kind == Kind::Timeout)
    {
        let id = &order.placed.order_id;
        let limit = Duration::from_secs(30);
        match chain_of(&sink, &http, order, "OrderCancelled", limit).await {
            Ok(trace) => {
                println!(
                    "\ntrace {} of the timed-out order {id}:\n{}",
                    order.trace_id,
                    trace.render()
                );
                let create = trace
                    .spans()
                    .iter()
                    .find(|s| event_type_is(s, "OrderCancelled"))
                    .unwrap();
                let chain = trace.chain(create);
                if !chain.has("deadline") {
                    failures.push(format!(
                        "(c) order {id}: no 'deadline' span above its OrderCancelled: {}",
                        chain.describe()
                    ));
                }
            }
            Err(e) => failures.push(format!("(c) {e:#}")),
        }
    }

    let stats: Value = http
        .get(format!("{sink}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    println!("sink: {stats}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
