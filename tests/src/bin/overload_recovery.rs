//! How long an origin takes to answer promptly again after a burst whose
//! callers give up at the edge's deadline (hardening #11, item 12).
//!
//! `cargo run -p e2e --bin overload-recovery [-- ORIGIN_BIN ...]` starts each
//! origin binary given (default `target/debug/origin`) on the MovieLens
//! model with one inference worker, measures a probe's latency at rest, sends
//! 600 concurrent requests with 400-item histories whose client gives up
//! after 150 ms (as the edge does), then probes every 20 ms and prints, per
//! binary, when probes were answered within 3× the resting latency again.

use std::time::{Duration, Instant};

use e2e::procs::free_port;
use e2e::{Origin, repo};

const BURST: usize = 600;
const GIVE_UP: Duration = Duration::from_millis(150);

async fn probe(client: &reqwest::Client, url: &str) -> Duration {
    let t = Instant::now();
    let ok = client.get(url).send().await.is_ok_and(|r| r.status() == 200);
    assert!(ok, "probe failed");
    t.elapsed()
}

async fn measure(bin: &str) -> (Duration, Duration, Duration, usize) {
    // SAFETY: single-threaded set-up, before any origin starts.
    unsafe { std::env::set_var("EDGEREC_ORIGIN_BIN", bin) };
    let origin = Origin::start_with(free_port(), &repo().join("models/movielens"), &["--inference-workers", "1", "--max-concurrency", "2048"]).await;
    let probe_url = format!("{}/v1/recommendations?history=50,172&k=10", origin.url());
    let ids: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
    let heavy = format!("{}/v1/recommendations?history={}&k=50", origin.url(), ids.join(","));
    let client = reqwest::Client::new();
    let mut rest = Vec::new();
    for _ in 0..20 {
        rest.push(probe(&client, &probe_url).await);
    }
    rest.sort();
    let at_rest = rest[rest.len() / 2];
    let impatient = reqwest::Client::builder().timeout(GIVE_UP).build().expect("client");
    let burst: Vec<_> = (0..BURST)
        .map(|_| {
            let (c, u) = (impatient.clone(), heavy.clone());
            tokio::spawn(async move { c.get(u).send().await.is_ok_and(|r| r.status() == 200) })
        })
        .collect();
    let mut answered = 0;
    for b in burst {
        answered += usize::from(b.await.unwrap_or(false));
    }
    let gave_up = Instant::now();
    let mut worst = Duration::ZERO;
    let recovered = loop {
        let lat = probe(&client, &probe_url).await;
        worst = worst.max(lat);
        if lat <= at_rest * 3 || gave_up.elapsed() > Duration::from_secs(120) {
            break gave_up.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    (at_rest, recovered, worst, answered)
}

#[tokio::main]
async fn main() {
    let bins: Vec<String> = std::env::args().skip(1).collect();
    let bins = if bins.is_empty() { vec![repo().join("target/debug/origin").display().to_string()] } else { bins };
    println!("| origin binary | probe at rest | burst answered in time | prompt again after the burst | slowest probe meanwhile |");
    println!("|---|---|---|---|---|");
    for bin in bins {
        let (rest, recovered, worst, answered) = measure(&bin).await;
        println!(
            "| `{bin}` | {:.1} ms | {answered} of {BURST} | {:.2} s | {:.0} ms |",
            rest.as_secs_f64() * 1e3,
            recovered.as_secs_f64(),
            worst.as_secs_f64() * 1e3
        );
    }
}
