//! A bounded load generator: a fixed number of requests at a fixed
//! concurrency, stopped early at a wall-clock limit, over loopback keep-alive
//! connections. Every request's latency, status and answer source are kept so
//! a scenario can be judged request by request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How much load, and for at most how long.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Requests to send in all.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Stop sending after this long, even if `requests` were not all sent.
    pub max_duration: Duration,
    /// Per-request client timeout (a request past it counts as failed).
    pub timeout: Duration,
    /// Pause between one worker's requests (0 = closed loop at full speed).
    pub think: Duration,
    /// Open loop: request `i` is sent `i / rate` seconds after the start
    /// (never more than `concurrency` in flight), so every front under test
    /// gets the same requests at the same times however fast it answers.
    pub rate_per_s: Option<f64>,
}

/// One request's fate.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request's number `i` (what `url(i)` was called with).
    pub index: usize,
    /// When it was sent, ms after the run started.
    pub sent_at_ms: f64,
    /// Round trip, ms.
    pub latency_ms: f64,
    /// HTTP status, 0 for a transport error or client timeout.
    pub status: u16,
    /// `source` of the answer (`x-rec-source`), or the peer's cache status.
    pub source: String,
    /// Items in the answer (0 when not a recommendation answer).
    pub items: usize,
    /// Their ids, in rank order.
    pub item_ids: Vec<String>,
    /// Which origin served it: the edge's `x-rec-origin`, or the peer's
    /// `x-upstream` (nginx's `$upstream_addr`); empty when none did.
    pub origin: String,
    /// `model.version` of the answer, when it has one.
    pub version: String,
    /// `total;dur` of `Server-Timing` (the edge's own view), ms.
    pub server_total_ms: Option<f64>,
}

impl Outcome {
    /// A 200 with exactly `k` items.
    pub fn good(&self, k: usize) -> bool {
        self.status == 200 && self.items == k
    }
}

/// Sends `spec.requests` requests to `url(i)`; returns outcomes in send order.
/// `source_header` names the header that tells where an answer came from.
pub async fn run(url: impl Fn(usize) -> String + Send + Sync + 'static, spec: LoadSpec, source_header: &'static str) -> Vec<Outcome> {
    run_until(url, spec, source_header, Arc::new(AtomicBool::new(false))).await
}

/// [`run`], also stopping (no request sent after) once `stop` is set: for a
/// load that lasts as long as a scenario does.
pub async fn run_until(
    url: impl Fn(usize) -> String + Send + Sync + 'static,
    spec: LoadSpec,
    source_header: &'static str,
    stop: Arc<AtomicBool>,
) -> Vec<Outcome> {
    let client = reqwest::Client::builder().timeout(spec.timeout).pool_max_idle_per_host(spec.concurrency).build().expect("client");
    let url = Arc::new(url);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..spec.concurrency {
        let (client, url, next, stop) = (client.clone(), Arc::clone(&url), Arc::clone(&next), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= spec.requests || started.elapsed() >= spec.max_duration {
                    return out;
                }
                if let Some(rate) = spec.rate_per_s {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if stop.load(Ordering::Relaxed) {
                    return out;
                }
                let sent = Instant::now();
                let sent_at_ms = (sent - started).as_secs_f64() * 1e3;
                let outcome = match client.get(url(i)).send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let source = r.headers().get(source_header).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                        let server_total_ms =
                            r.headers().get("server-timing").and_then(|v| v.to_str().ok()).and_then(|t| crate::measure::server_timing(t, "total"));
                        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
                        let origin = [header("x-rec-origin"), header("x-upstream")].into_iter().find(|h| !h.is_empty()).unwrap_or_default();
                        let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
                        let item_ids: Vec<String> =
                            body["items"].as_array().map(|a| a.iter().filter_map(|i| i["item_id"].as_str().map(str::to_owned)).collect()).unwrap_or_default();
                        let items = body["items"].as_array().map_or(0, Vec::len);
                        let version = body["model"]["version"].as_str().unwrap_or_default().to_string();
                        let latency_ms = sent.elapsed().as_secs_f64() * 1e3;
                        Outcome { index: i, sent_at_ms, latency_ms, status, source, items, item_ids, origin, version, server_total_ms }
                    }
                    Err(_) => Outcome {
                        index: i,
                        item_ids: Vec::new(),
                        origin: String::new(),
                        sent_at_ms,
                        latency_ms: sent.elapsed().as_secs_f64() * 1e3,
                        status: 0,
                        source: String::new(),
                        items: 0,
                        version: String::new(),
                        server_total_ms: None,
                    },
                };
                out.push((i, outcome));
                if !spec.think.is_zero() {
                    tokio::time::sleep(spec.think).await;
                }
            }
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("load worker"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

/// Figures over a set of outcomes.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Requests sent.
    pub sent: usize,
    /// Share answered 200 with `k` items.
    pub good_share: f64,
    /// Requests per source.
    pub sources: BTreeMap<String, usize>,
    /// Requests per status (0 = transport error).
    pub statuses: BTreeMap<u16, usize>,
    /// Latency percentiles of all requests, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Nearest-rank percentile of sorted `v` (`p` in 0..=1).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Summarizes `outcomes` for answers of `k` items.
pub fn summarize(outcomes: &[Outcome], k: usize) -> Summary {
    let mut lat: Vec<f64> = outcomes.iter().map(|o| o.latency_ms).collect();
    lat.sort_by(f64::total_cmp);
    let mut sources = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for o in outcomes {
        *sources.entry(if o.source.is_empty() { "-".to_string() } else { o.source.clone() }).or_insert(0) += 1;
        *statuses.entry(o.status).or_insert(0) += 1;
    }
    Summary {
        sent: outcomes.len(),
        good_share: outcomes.iter().filter(|o| o.good(k)).count() as f64 / outcomes.len().max(1) as f64,
        sources,
        statuses,
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(f64::NAN),
    }
}

impl Summary {
    /// `origin 80 %, edge 20 %` style.
    pub fn source_shares(&self) -> String {
        self.sources.iter().map(|(s, n)| format!("{s} {:.0} %", 100.0 * *n as f64 / self.sent.max(1) as f64)).collect::<Vec<_>>().join(", ")
    }
}
