//! The origin benchmark's load generator (`bench/origin_bench.py`): a fixed
//! number of `GET /v1/recommendations` from `CONCURRENCY` workers over
//! loopback keep-alive connections, real shopper histories round-robin
//! (`k = 10`), then one JSON line of results. Stops by itself. The requests
//! go through the failover suite's generator (`e2e::load`).
//!
//! `loadgen URL HISTORIES_JSON CONCURRENCY REQUESTS`, `URL` ending in `/v1/recommendations`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::load::{self, LoadSpec};
use shared::request::canonical_query;
use shared::wire::ValidRequest;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, histories, concurrency, requests] = &args[..] else {
        eprintln!("usage: loadgen URL HISTORIES_JSON CONCURRENCY REQUESTS");
        std::process::exit(2);
    };
    let histories: Vec<Vec<String>> = serde_json::from_slice(&std::fs::read(histories).expect("histories file")).expect("JSON array of id arrays");
    let queries: Arc<Vec<String>> = Arc::new(
        histories
            .into_iter()
            .map(|history| format!("{url}?{}", canonical_query(&ValidRequest { history, k: 10, exclude_seen: true, ..Default::default() })))
            .collect(),
    );
    let (concurrency, requests): (usize, usize) = (concurrency.parse().expect("CONCURRENCY"), requests.parse().expect("REQUESTS"));
    let spec =
        LoadSpec { requests, concurrency, max_duration: Duration::from_secs(3_600), timeout: Duration::from_secs(30), think: Duration::ZERO, rate_per_s: None };
    let started = Instant::now();
    let outcomes = load::run(move |i| queries[i % queries.len()].clone(), spec, "x-rec-source").await;
    let wall = started.elapsed().as_secs_f64();
    let mut ok: Vec<f64> = outcomes.iter().filter(|o| o.status == 200).map(|o| o.latency_ms).collect();
    ok.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "concurrency": concurrency,
            "requests": requests,
            "ok": ok.len(),
            "errors": outcomes.len() - ok.len(),
            "p50_ms": load::percentile(&ok, 0.5),
            "p99_ms": load::percentile(&ok, 0.99),
            "rps": ok.len() as f64 / wall,
        })
    );
}
