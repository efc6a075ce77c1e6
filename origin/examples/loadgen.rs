//! A bounded HTTP load generator for the origin benchmark: a fixed number of
//! requests from `concurrency` workers against loopback, real shopper
//! histories round-robin, then one JSON line of results. Stops by itself.
//!
//! `cargo run --release -p origin --example loadgen -- URL HISTORIES_JSON CONCURRENCY REQUESTS`

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, histories, concurrency, requests] = &args[..] else {
        eprintln!("usage: loadgen URL HISTORIES_JSON CONCURRENCY REQUESTS");
        std::process::exit(2);
    };
    let histories: Vec<Vec<String>> = serde_json::from_slice(&std::fs::read(histories).expect("histories file")).expect("JSON array of id arrays");
    let bodies: Arc<Vec<String>> = Arc::new(histories.iter().map(|h| serde_json::json!({"history": h, "k": 10}).to_string()).collect());
    let (concurrency, requests): (usize, usize) = (concurrency.parse().unwrap(), requests.parse().unwrap());
    let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, bodies, next) = (client.clone(), url.clone(), bodies.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    return (latencies, errors);
                }
                let t = Instant::now();
                let ok = match client.post(&url).header("content-type", "application/json").body(bodies[i % bodies.len()].clone()).send().await {
                    Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(t.elapsed().as_secs_f64() * 1e3);
                } else {
                    errors += 1;
                }
            }
        }));
    }
    let mut all = Vec::with_capacity(requests);
    let mut errors = 0;
    for w in workers {
        let (l, e) = w.await.unwrap();
        all.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let pct = |p: f64| if all.is_empty() { f64::NAN } else { all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1] };
    println!(
        "{}",
        serde_json::json!({"concurrency": concurrency, "requests": requests, "ok": all.len(), "errors": errors, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "rps": all.len() as f64 / wall})
    );
}
