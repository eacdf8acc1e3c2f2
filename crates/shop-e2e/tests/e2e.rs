//! The whole shop on the local stack (`scripts/shop up`): a seeded mix of 1,000 orders through
//! the gateway (in stock, out of stock, declined, flaky provider, customer cancel, timeout),
//! then the saga's invariants checked from the services' own data and from the topics (see
//! `shop_e2e::scenario`).
//!
//! `SHOP_E2E_ORDERS` and `SHOP_E2E_SEED` change the size and the mix.

use std::time::{Duration, Instant};

use shop_e2e::client::Shop;
use shop_e2e::mix::plan;
use shop_e2e::scenario::Run;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_orders_end_by_their_deadlines_with_every_invariant_holding() {
    let shop = Shop::from_env().expect("the shop's addresses");
    shop.ensure_running().await.expect("the shop is running");
    let orders: usize = env_or("SHOP_E2E_ORDERS", 1000);
    let seed: u64 = env_or("SHOP_E2E_SEED", 20_261_127);
    let run = Run::prepare(&shop).await.expect("the run's stock");

    let started = Instant::now();
    let started_at = chrono::Utc::now() - chrono::Duration::seconds(1);
    let planned = plan(seed, orders, &run.tag, &run.skus);
    let placed = run.place(planned, None).await.expect("every order placed");
    let secs = started.elapsed().as_secs_f64();
    println!(
        "placed {} orders in {secs:.1} s ({:.0}/s)",
        placed.len(),
        placed.len() as f64 / secs
    );

    let settled = run
        .settle(&placed, Duration::from_secs(240))
        .await
        .expect("every saga settles");
    println!(
        "every saga settled {:.1} s after the first order",
        started.elapsed().as_secs_f64()
    );

    // The gateway's aggregate view agrees for a sample.
    for p in placed.iter().step_by(97) {
        let (status, view) = shop.view(&p.token, &p.order_id).await.unwrap();
        assert_eq!(status.as_u16(), 200, "{view}");
        assert_eq!(
            view["order"]["status"],
            settled[&p.order_id].order["status"]
        );
    }

    let report = run
        .check(&placed, &settled, true)
        .await
        .expect("every invariant holds");
    println!("outcomes by kind: {:?}", report.outcomes);
    println!(
        "{} messages on the topics for this run, {} distinct events",
        report.messages, report.distinct_events
    );

    // Replaying the run through the shipping service's own handlers, into a fresh database,
    // gives the state the live shipping service reached (`shipping replay --diff-against`).
    let shipping_topics = [<shop_events::OrderConfirmed as choreo::avro::Event>::TOPIC];
    replay_matches_the_live_service("shipping", &shipping_topics, &run.tag, started_at).await;
}

/// Dumps everything on the service's topics since `since` (`choreo replay dump`), replays the
/// file through the service's own handlers into a fresh database (`<service> replay`) and
/// compares it with the live service's database: no differences.
async fn replay_matches_the_live_service(
    service: &str,
    topics: &[&str],
    tag: &str,
    since: chrono::DateTime<chrono::Utc>,
) {
    let exe = std::env::current_exe().unwrap();
    let bin = |name: &str| {
        let path = exe
            .parent()
            .and_then(|deps| deps.parent())
            .unwrap()
            .join(name);
        assert!(
            path.is_file(),
            "{} is missing: cargo build -p choreo-cli -p {service}",
            path.display()
        );
        path
    };
    let admin = std::env::var("PG_ADMIN_URL").expect("PG_ADMIN_URL");
    let live = std::env::var(format!("DATABASE_URL_{}", service.to_uppercase()))
        .expect("the live database");
    let name = format!("replay_e2e_{}_{}", service, tag.to_lowercase());
    let fresh = choreo::db::with_database(&admin, &name);
    let file = std::env::temp_dir().join(format!("{name}.jsonl"));
    let mut dump = vec!["replay".to_owned(), "dump".into()];
    for topic in topics {
        dump.extend(["--topic".to_owned(), (*topic).to_owned()]);
    }
    dump.extend([
        "--from-time".to_owned(),
        since.to_rfc3339(),
        "--output".into(),
        file.display().to_string(),
    ]);
    let replay: Vec<String> = [
        "replay",
        "--input",
        &file.display().to_string(),
        "--database-url",
        &fresh,
        "--create",
        "--diff-against",
        &live,
    ]
    .map(str::to_owned)
    .to_vec();
    let (choreo, service_bin) = (bin("choreo"), bin(service));
    let (dumped, output) = tokio::task::spawn_blocking(move || {
        let dumped = std::process::Command::new(choreo).args(dump).output()?;
        let output = std::process::Command::new(service_bin)
            .args(replay)
            .output()?;
        std::io::Result::Ok((dumped, output))
    })
    .await
    .unwrap()
    .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(
        dumped.status.success(),
        "choreo replay dump: {}\n{}",
        dumped.status,
        String::from_utf8_lossy(&dumped.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut pg: sqlx::PgConnection = sqlx::Connection::connect(&admin).await.unwrap();
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut pg)
        .await
        .unwrap();
    assert!(
        output.status.success() && stdout.contains("no differences"),
        "{service} replay: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "{service} replay: {}",
        stdout.lines().last().unwrap_or_default()
    );
}
