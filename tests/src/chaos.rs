//! The failover suite: one fault schedule and one load, run through the edge
//! (`wrangler dev` → fault proxy → origin) and through the peer (nginx →
//! the same proxy → origin), judged request by request.
//!
//! The short suite (`tests/e2e/chaos_short.rs`, in `cargo xtask test`) runs
//! every scenario for a few seconds and asserts the goals on the edge; the
//! full one (`cargo xtask chaos`) runs longer, adds origin overload, and writes
//! `docs/reliability.md`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::load::{self, LoadSpec, Outcome, Summary};
use crate::nginx::{self, Nginx};
use crate::procs::{Edge, Origin, free_port, repo};

/// The edge's and the peer's deadline for the origin, ms.
pub const DEADLINE_MS: u64 = 150;
/// Items per answer.
pub const K: usize = 10;

/// How long and how hard each scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Sizing {
    /// Wall time per scenario and target.
    pub duration: Duration,
    /// Requests in flight.
    pub concurrency: usize,
    /// The edge's breaker open period, ms (also the flapping period's unit).
    pub open_ms: u64,
    /// Requests per second sent to each front (open loop).
    pub rate_per_s: f64,
}

impl Sizing {
    /// A few seconds per scenario: `cargo xtask test`.
    pub fn short() -> Self {
        Sizing { duration: Duration::from_secs(3), concurrency: 8, open_ms: 1_000, rate_per_s: 80.0 }
    }
    /// The report's run.
    pub fn full() -> Self {
        Sizing { duration: Duration::from_secs(12), concurrency: 16, open_ms: 2_000, rate_per_s: 80.0 }
    }
}

/// What happens to the origin path during a scenario.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// One fault for the whole run.
    Constant(Fault),
    /// `Fault::Down` and `Fault::Pass` alternating every `period`.
    Flapping(Duration),
    /// Down for the first half, healthy for the second.
    Recovery,
    /// The origin restarts onto a new model version halfway.
    ModelSwap,
}

/// A named fault schedule.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name (report row, test message).
    pub name: &'static str,
    /// What it does, for the report.
    pub what: &'static str,
    /// The schedule.
    pub schedule: Schedule,
}

/// Every scenario of the suite, in report order.
pub fn scenarios(sizing: Sizing) -> Vec<Scenario> {
    let ms = Duration::from_millis;
    vec![
        Scenario { name: "baseline", what: "healthy origin", schedule: Schedule::Constant(Fault::Pass) },
        Scenario { name: "down", what: "origin connections closed unanswered (reset)", schedule: Schedule::Constant(Fault::Down) },
        Scenario { name: "refused", what: "nothing listens: connection refused", schedule: Schedule::Constant(Fault::Refuse) },
        Scenario { name: "blackhole", what: "accepts, never answers", schedule: Schedule::Constant(Fault::Blackhole) },
        Scenario { name: "slow", what: "every answer 400 ms late", schedule: Schedule::Constant(Fault::Delay(ms(400))) },
        Scenario { name: "jitter", what: "answers 50–400 ms late, uniformly", schedule: Schedule::Constant(Fault::Jitter(ms(50), ms(400))) },
        Scenario { name: "http-500", what: "every answer HTTP 500", schedule: Schedule::Constant(Fault::Status(500)) },
        Scenario { name: "http-503", what: "every answer HTTP 503", schedule: Schedule::Constant(Fault::Status(503)) },
        Scenario { name: "errors-50%", what: "half the answers HTTP 500", schedule: Schedule::Constant(Fault::RandomErrors(0.5)) },
        Scenario { name: "truncated", what: "answers cut in half (malformed JSON)", schedule: Schedule::Constant(Fault::Truncate) },
        Scenario { name: "flapping", what: "down/up every open period", schedule: Schedule::Flapping(ms(sizing.open_ms)) },
        Scenario { name: "recovery", what: "down, then back halfway", schedule: Schedule::Recovery },
        Scenario { name: "model-swap", what: "origin restarts onto a new model version halfway", schedule: Schedule::ModelSwap },
    ]
}

/// The query of request `i`: 30 % from a hot set of 20 pages, the rest
/// distinct prefixes of real test users' histories (mostly cache misses).
/// A non-empty `salt` makes each run's questions its own, so no cache is warm
/// from an earlier run: the run's number (one per distinct salt) of extra
/// copies of the history's newest item. Duplicates weigh in the models, so the
/// edge keeps them in its cache key; a junk id would not do any more, since
/// the edge drops unknown ids from the key.
pub fn query(histories: &[Vec<String>], i: usize, salt: &str) -> String {
    let repeats = run_number(salt);
    let (user, len) = if i % 10 < 3 {
        (i % 20, usize::MAX)
    } else {
        let u = (i.wrapping_mul(7_919)) % histories.len();
        (u, 1 + (i / histories.len()) % histories[u].len().max(1))
    };
    let h = &histories[user % histories.len()];
    let start = h.len().saturating_sub(len.min(shared::contract::MAX_HISTORY - repeats));
    let mut ids: Vec<&str> = h[start..].iter().map(String::as_str).collect();
    if let Some(&newest) = ids.last() {
        ids.extend(std::iter::repeat_n(newest, repeats));
    }
    format!("history={}&k={K}", ids.join(","))
}

/// 0 for no salt, else a number per distinct salt in this process (1, 2, …).
fn run_number(salt: &str) -> usize {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static RUNS: OnceLock<Mutex<HashMap<String, usize>>> = OnceLock::new();
    if salt.is_empty() {
        return 0;
    }
    let mut runs = RUNS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    let next = runs.len() + 1;
    *runs.entry(salt.to_string()).or_insert(next)
}

/// Real test users' histories from `parity.json`.
///
/// # Panics
/// If the file is missing or malformed.
pub fn histories(model_dir: &Path) -> Vec<Vec<String>> {
    let parity: serde_json::Value = serde_json::from_slice(&std::fs::read(model_dir.join("parity.json")).expect("parity.json")).expect("JSON");
    parity["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["history"].as_array().expect("history").iter().map(|v| v.as_str().expect("id").to_string()).collect::<Vec<_>>())
        .filter(|h: &Vec<String>| !h.is_empty())
        .collect()
}

/// Which front is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The edge worker.
    Edge,
    /// nginx.
    Nginx,
}

/// One scenario's result on one front.
#[derive(Debug, Clone)]
pub struct Run {
    /// Scenario name.
    pub scenario: &'static str,
    /// Front.
    pub front: Front,
    /// Every request.
    pub outcomes: Vec<Outcome>,
    /// The figures.
    pub summary: Summary,
    /// When the origin path became healthy again, ms after the start (recovery, flapping's last up).
    pub healthy_at_ms: Option<f64>,
}

impl Run {
    /// ms from `healthy_at_ms` to the first answer that came from the origin.
    pub fn failback_ms(&self) -> Option<f64> {
        let at = self.healthy_at_ms?;
        self.outcomes.iter().filter(|o| o.sent_at_ms >= at && o.source == "origin").map(|o| o.sent_at_ms + o.latency_ms - at).reduce(f64::min)
    }

    /// Whether origin answers switched model version once and never back.
    pub fn versions_monotone(&self) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut by_time: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.source == "origin" && !o.version.is_empty()).collect();
        by_time.sort_by(|a, b| (a.sent_at_ms + a.latency_ms).total_cmp(&(b.sent_at_ms + b.latency_ms)));
        for o in by_time {
            if seen.last() != Some(&o.version.as_str()) {
                if seen.contains(&o.version.as_str()) {
                    return false;
                }
                seen.push(&o.version);
            }
        }
        true
    }
}

/// Everything a suite run needs, started once.
pub struct Rig {
    /// The real origin.
    pub origin: Origin,
    /// Port the origin listens on (kept across restarts).
    pub origin_port: u16,
    /// Proxy between both fronts and the origin.
    pub proxy: FaultProxy,
    /// The edge under test.
    pub edge: Edge,
    /// The edge with no origin at all (the edge-only baseline).
    pub edge_only: Edge,
    /// The peer.
    pub nginx: Nginx,
    /// Test users' histories.
    pub histories: Arc<Vec<Vec<String>>>,
    /// A copy of the model directory with a new version, for the swap.
    pub swapped_models: PathBuf,
    sizing: Sizing,
}

/// Unmeasured requests to each edge before the first run.
const WARM_UP_REQUESTS: usize = 40;

impl Rig {
    /// Starts origin, proxy, both edges and nginx.
    pub async fn start(sizing: Sizing) -> Rig {
        let models = repo().join("models/movielens");
        let origin_port = free_port();
        let origin = Origin::start_with(origin_port, &models, &[]).await;
        let proxy = FaultProxy::start(&origin.url()).await;
        let open = sizing.open_ms.to_string();
        let edge = Edge::start(&[("ORIGIN_URL", &proxy.url()), ("BREAKER_OPEN_MS", &open), ("BREAKER_MAX_OPEN_MS", &open)]).await;
        let edge_only = Edge::start(&[("ORIGIN_URL", "")]).await;
        let nginx = Nginx::start(&proxy.addr.to_string(), DEADLINE_MS).await;
        let swapped_models = swapped_copy(&models);
        let histories = Arc::new(histories(&models));
        // Warm-up, not measured: the isolates build their models and V8 tiers
        // the wasm up on the first requests, which a measured run should not pay.
        let client = reqwest::Client::new();
        for front in [&edge, &edge_only] {
            for i in 0..WARM_UP_REQUESTS {
                let _ = client.get(format!("{}/v1/recommendations?{}", front.url(), query(&histories, i, "warm-up"))).send().await;
            }
        }
        Rig { origin, origin_port, proxy, edge, edge_only, nginx, histories, swapped_models, sizing }
    }

    /// Runs `scenario` on `front`.
    pub async fn run(&mut self, scenario: &Scenario, front: Front) -> Run {
        self.proxy.set(Fault::Pass);
        // The previous scenario may have left the edge's breaker open: let it
        // probe its way closed (in-band, as in production) before measuring.
        close_breaker(&self.edge, &self.histories, self.sizing.open_ms).await;
        let base = match front {
            Front::Edge => self.edge.url(),
            Front::Nginx => self.nginx.url(),
        };
        let hist = Arc::clone(&self.histories);
        let salt = format!("{}-{front:?}-{}", scenario.name, std::process::id());
        let url = move |i: usize| format!("{base}/v1/recommendations?{}", query(&hist, i, &salt));
        let spec = self.spec();
        let header = match front {
            Front::Edge => "x-rec-source",
            Front::Nginx => "x-cache-status",
        };
        let started = Instant::now();
        let load = tokio::spawn(load::run(url, spec, header));
        let half = self.sizing.duration / 2;
        let mut healthy_at_ms = None;
        match &scenario.schedule {
            Schedule::Constant(Fault::Pass) => {}
            Schedule::Constant(f) => {
                // A quarter of healthy traffic first: the outage hits caches warmed as in production.
                tokio::time::sleep(self.sizing.duration / 4).await;
                self.proxy.set(f.clone());
            }
            Schedule::Flapping(period) => {
                let mut up = false;
                while started.elapsed() + *period < self.sizing.duration {
                    self.proxy.set(if up { Fault::Pass } else { Fault::Down });
                    if up {
                        healthy_at_ms = Some(started.elapsed().as_secs_f64() * 1e3);
                    }
                    tokio::time::sleep(*period).await;
                    up = !up;
                }
            }
            Schedule::Recovery => {
                self.proxy.set(Fault::Down);
                tokio::time::sleep(half).await;
                self.proxy.set(Fault::Pass);
                healthy_at_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            }
            Schedule::ModelSwap => {
                tokio::time::sleep(half).await;
                self.origin.kill();
                self.origin = Origin::start_with(self.origin_port, &self.swapped_models, &[]).await;
                healthy_at_ms = Some(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        let mut outcomes = load.await.expect("load task");
        self.proxy.set(Fault::Pass);
        if front == Front::Nginx {
            for o in &mut outcomes {
                o.source = nginx::source_of(&o.source).to_string();
            }
        }
        if matches!(scenario.schedule, Schedule::ModelSwap) {
            // Back to the original model for the next front.
            self.origin.kill();
            self.origin = Origin::start_with(self.origin_port, &repo().join("models/movielens"), &[]).await;
        }
        let summary = load::summarize(&outcomes, K);
        Run { scenario: scenario.name, front, outcomes, summary, healthy_at_ms }
    }

    /// The same requests at the same rate for every scenario and front.
    fn spec(&self) -> LoadSpec {
        let requests = (self.sizing.rate_per_s * self.sizing.duration.as_secs_f64()) as usize;
        LoadSpec {
            requests,
            concurrency: self.sizing.concurrency,
            max_duration: self.sizing.duration * 3,
            timeout: Duration::from_secs(5),
            think: Duration::ZERO,
            rate_per_s: Some(self.sizing.rate_per_s),
        }
    }

    /// The edge-only baseline under the same load (no origin configured).
    pub async fn edge_only_baseline(&self) -> Summary {
        let hist = Arc::clone(&self.histories);
        let base = self.edge_only.url();
        let salt = format!("edge-only-{}", std::process::id());
        let url = move |i: usize| format!("{base}/v1/recommendations?{}", query(&hist, i, &salt));
        load::summarize(&load::run(url, self.spec(), "x-rec-source").await, K)
    }
}

/// `models/movielens` copied to a temporary directory with a new manifest
/// version (the files and their sha256 are unchanged): a "new model" the
/// origin can restart onto.
/// Waits until `edge`'s breaker is closed, sending a fresh query now and
/// then so a half-open breaker gets its probe.
///
/// # Panics
/// If it is not closed within a few open periods.
pub async fn close_breaker(edge: &Edge, histories: &[Vec<String>], open_ms: u64) {
    let client = reqwest::Client::new();
    let limit = Instant::now() + Duration::from_millis(4 * open_ms + 10_000);
    for i in 0.. {
        let health: serde_json::Value = match client.get(format!("{}/healthz", edge.url())).send().await {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        if health["breaker"] == "closed" {
            return;
        }
        assert!(Instant::now() < limit, "the edge's breaker did not close: {health}");
        let _ = client.get(format!("{}/v1/recommendations?{}", edge.url(), query(histories, i, "close-breaker"))).send().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn swapped_copy(models: &Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgerec-swap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("swap dir");
    for entry in std::fs::read_dir(models).expect("models dir").flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy model file");
    }
    let manifest_path = dir.join("manifest.json");
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest")).expect("JSON");
    let version = format!("{}-swapped", manifest["version"].as_str().unwrap_or("model"));
    manifest["version"] = serde_json::Value::String(version);
    std::fs::write(&manifest_path, serde_json::to_vec_pretty(&manifest).expect("JSON")).expect("write manifest");
    dir
}

/// The worst server-side total (`Server-Timing`) among `outcomes`, ms:
/// no request may wait on a failing origin past the deadline.
pub fn worst_server_total(outcomes: &[Outcome]) -> f64 {
    outcomes.iter().filter_map(|o| o.server_total_ms).fold(0.0, f64::max)
}

/// Figures after the breaker opened: the second half of the run.
pub fn second_half(run: &Run) -> Summary {
    let half = run.outcomes.len() / 2;
    load::summarize(&run.outcomes[half..], K)
}

/// Origin overload: straight at the origin (no edge), `factor` × its measured
/// capacity in requests in flight, then back to normal.
#[derive(Debug, Clone)]
pub struct Overload {
    /// Closed-loop requests/s at concurrency 8 (its capacity here).
    pub capacity_rps: f64,
    /// The overload run.
    pub overload: Summary,
    /// p99 of the 503s, ms.
    pub shed_p99_ms: f64,
    /// p99 of the accepted (200) answers, ms.
    pub accepted_p99_ms: f64,
    /// Origin RSS before, at the peak of the first burst, after it, and after a second identical burst, KiB.
    pub rss_kib: (u64, u64, u64, u64),
    /// The first request after the overload.
    pub recovered: bool,
}

/// Measures [`Overload`] on a fresh origin with `--max-concurrency 32`.
pub async fn overload(duration: Duration, factor: usize) -> Overload {
    let models = repo().join("models/movielens");
    let port = free_port();
    let origin = Origin::start_with(port, &models, &["--max-concurrency", "32"]).await;
    let hist = Arc::new(histories(&models));
    let base = origin.url();
    let mk = |hist: Arc<Vec<Vec<String>>>, base: String| move |i: usize| format!("{base}/v1/recommendations?{}", query(&hist, i, ""));
    let cap_spec =
        LoadSpec { requests: 1_000_000, concurrency: 8, max_duration: duration, timeout: Duration::from_secs(5), think: Duration::ZERO, rate_per_s: None };
    let started = Instant::now();
    let cap = load::run(mk(Arc::clone(&hist), base.clone()), cap_spec, "x-rec-source").await;
    let capacity_rps = cap.len() as f64 / started.elapsed().as_secs_f64();
    let before = origin.rss_kib().unwrap_or(0);
    // Far more in flight than it admits: it must shed the excess quickly.
    let spec = LoadSpec {
        requests: 1_000_000,
        concurrency: 32 * factor,
        max_duration: duration,
        timeout: Duration::from_secs(5),
        think: Duration::ZERO,
        rate_per_s: None,
    };
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampler = {
        let (peak, pid) = (Arc::clone(&peak), origin.pid());
        tokio::spawn(async move {
            loop {
                if let Some(r) = crate::procs::rss_kib(pid) {
                    peak.fetch_max(r, std::sync::atomic::Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let outcomes = load::run(mk(Arc::clone(&hist), base.clone()), spec, "x-rec-source").await;
    sampler.abort();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = origin.rss_kib().unwrap_or(0);
    // The same burst again: memory that a burst leaves behind must be reused, not added to.
    load::run(mk(Arc::clone(&hist), base.clone()), spec, "x-rec-source").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_again = origin.rss_kib().unwrap_or(0);
    let recovered = reqwest::get(format!("{base}/v1/recommendations?history=50,172&k=10")).await.is_ok_and(|r| r.status() == 200);
    let lat = |status: u16| {
        let mut v: Vec<f64> = outcomes.iter().filter(|o| o.status == status).map(|o| o.latency_ms).collect();
        v.sort_by(f64::total_cmp);
        load::percentile(&v, 0.99)
    };
    Overload {
        capacity_rps,
        shed_p99_ms: lat(503),
        accepted_p99_ms: lat(200),
        overload: load::summarize(&outcomes, K),
        rss_kib: (before, peak.load(std::sync::atomic::Ordering::SeqCst), after, after_again),
        recovered,
    }
}
