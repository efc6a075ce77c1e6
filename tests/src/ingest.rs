//! Events against a real origin: batches of made-up events, the
//! acknowledgement latency of each, and the crash test — a SIGKILL in the
//! middle of a load, after which every acknowledged `event_id` must be in
//! the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use shared::events::Event;

/// `n` distinct events of shopper `shopper-{i % 97}`, ids `{tag}-{i}`, item ids out of 1,682.
pub fn events(tag: &str, n: usize, now_ms: i64) -> Vec<Event> {
    (0..n)
        .map(|i| Event {
            event_id: format!("{tag}-{i}"),
            user_id: Some(format!("shopper-{}", i % 97)),
            session_id: None,
            item_id: format!("{}", 1 + (i * 7919) % 1682),
            kind: if i % 10 == 0 { "cart".into() } else { "view".into() },
            time_ms: now_ms - (n - i) as i64,
            weight: 1.0,
        })
        .collect()
}

/// Milliseconds since the epoch now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

/// The `POST /v1/events` body of `events`.
pub fn body(events: &[Event]) -> String {
    json!({ "events": events }).to_string()
}

/// Posts one batch; `Ok(stored + duplicates)` on 200.
///
/// # Errors
/// The status or transport error, as text.
pub async fn post(client: &reqwest::Client, base: &str, events: &[Event]) -> Result<usize, String> {
    let r = client
        .post(format!("{base}/v1/events"))
        .header("content-type", "application/json")
        .body(body(events))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("HTTP {}", r.status()));
    }
    let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
    Ok((v["stored"].as_u64().unwrap_or(0) + v["duplicates"].as_u64().unwrap_or(0)) as usize)
}

/// What a crash run saw.
#[derive(Debug, Clone, Copy)]
pub struct CrashRun {
    /// Events the origin acknowledged before it died.
    pub acknowledged: usize,
    /// Of those, found in the store afterwards.
    pub found: usize,
    /// Batches sent in all (some unanswered when it died).
    pub sent_batches: usize,
}

/// Sends batches of `batch` events from `clients` concurrent clients to
/// `origin`, SIGKILLs it (`kill`) once `kill_after` events are
/// acknowledged, then asks `store` for every acknowledged id.
///
/// # Panics
/// If the store cannot be read.
pub async fn crash_run(base: &str, store_url: &str, batch: usize, clients: usize, kill_after: usize, kill: impl FnOnce()) -> CrashRun {
    let client = reqwest::Client::new();
    let acked: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tag = format!("crash-{}", now_ms());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base, acked, count, sent, stop, tag) =
            (client.clone(), base.to_string(), acked.clone(), count.clone(), sent.clone(), stop.clone(), tag.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let evs = events(&format!("{tag}-{c}-{n}"), batch, now_ms());
                n += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                match post(&client, &base, &evs).await {
                    Ok(_) => {
                        acked.lock().expect("lock").extend(evs.into_iter().map(|e| e.event_id));
                        count.fetch_add(batch, Ordering::Relaxed);
                    }
                    Err(_) => break, // the origin is gone
                }
            }
        }));
    }
    let started = Instant::now();
    while count.load(Ordering::Relaxed) < kill_after && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    kill();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let ids = acked.lock().expect("lock").clone();
    let url = store_url.to_string();
    let found = tokio::task::spawn_blocking(move || event_store::open(&url).and_then(|s| s.count_present(&ids)))
        .await
        .expect("store task")
        .unwrap_or_else(|e| panic!("reading {store_url} after the crash: {e}"));
    CrashRun { acknowledged: count.load(Ordering::Relaxed), found, sent_batches: sent.load(Ordering::Relaxed) }
}

/// The PostgreSQL server set-up started (`EDGEREC_PG_URL`).
pub fn pg_url() -> String {
    std::env::var("EDGEREC_PG_URL").unwrap_or_else(|_| "postgres://edgerec:edgerec@127.0.0.1:5432/edgerec".into())
}

/// A fresh database on it named after `tag`, as a store URL.
///
/// # Panics
/// When PostgreSQL is not reachable (set-up starts it).
pub fn pg_database(tag: &str) -> String {
    let name = format!("edgerec_{tag}_{}_{}", std::process::id(), now_ms() % 1_000_000_000);
    // The blocking client runs its own runtime: off any async caller's thread.
    let created = std::thread::spawn(move || event_store::postgres::create_database(&pg_url(), &name)).join().expect("create_database thread");
    created.unwrap_or_else(|e| panic!("PostgreSQL at {} (started by `cargo xtask setup`): {e}", pg_url()))
}
