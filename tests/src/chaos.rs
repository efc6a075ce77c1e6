//! The failover suite: two regions — origin A (priority 1) and origin B
//! (priority 2), each a real `origin` process behind its own fault proxy —
//! and one load, run through the edge (`wrangler dev`, `ORIGINS` = A, B)
//! and through the peer (nginx with `server A; server B backup;` → the same
//! proxies), judged request by request: valid answers, answers from the full
//! model, which region served, latency, and the quality of what was served
//! (NDCG@10 against the held-out items of the users behind the queries).
//! One scenario puts A and B in one tier as replicas instead.
//!
//! The short suite (`tests/e2e/chaos_short.rs`, in `cargo xtask test`) runs
//! every scenario for a few seconds and asserts the goals on the edge; the
//! full one (`cargo xtask chaos`) runs longer, adds origin overload and a
//! soak, and writes `docs/reliability.md`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fault_proxy::{Fault, FaultProxy};
use crate::load::{self, LoadSpec, Outcome, Summary};
use crate::nginx::{self, Nginx};
use crate::procs::{Edge, Origin, free_port, repo};
use crate::quality::{self, Targets};

/// The edge's and the peer's deadline for the origins, ms.
pub const DEADLINE_MS: u64 = 150;
/// Items per answer, and the NDCG cutoff of the quality column.
pub const K: usize = 10;
/// The edge's hedging budget in this suite (its default), % of requests.
pub const HEDGE_BUDGET_PCT: f64 = 10.0;

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

/// What happens to the regions during a scenario.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// This fault on A (B healthy), after a healthy first quarter.
    OnA(Fault),
    /// This fault on A and B, after a healthy first quarter.
    OnBoth(Fault),
    /// A down and up, alternating every `period`.
    FlappingA(Duration),
    /// A down for the first half, healthy for the second.
    RecoveryA,
    /// A restarts onto a new model version halfway; B keeps the old one.
    ModelSwapA,
}

/// How the two origins are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A priority 1, B priority 2 (nginx: B is `backup`).
    Regions,
    /// A and B in one tier (nginx: two equal servers).
    Replicas,
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
    /// Regions or replicas.
    pub topology: Topology,
}

/// Scenarios where A fails in some way and B is healthy: the goals are
/// every valid request answered, ≥ 99 % from the full model, and no wait
/// past the deadline (+ 20 ms).
pub const A_FAULTS: &[&str] = &["down", "refused", "blackhole", "slow", "jitter", "http-500", "http-503", "errors-50%", "truncated", "flapping"];

/// Every scenario of the suite, in report order.
pub fn scenarios(sizing: Sizing) -> Vec<Scenario> {
    let ms = Duration::from_millis;
    let regions = |name, what, schedule| Scenario { name, what, schedule, topology: Topology::Regions };
    vec![
        regions("baseline", "both regions healthy", Schedule::OnA(Fault::Pass)),
        regions("down", "A's connections closed unanswered (reset)", Schedule::OnA(Fault::Down)),
        regions("refused", "nothing listens at A: connection refused", Schedule::OnA(Fault::Refuse)),
        regions("blackhole", "A accepts, never answers", Schedule::OnA(Fault::Blackhole)),
        regions("slow", "every answer from A 400 ms late", Schedule::OnA(Fault::Delay(ms(400)))),
        regions("jitter", "A's answers 50–400 ms late, uniformly", Schedule::OnA(Fault::Jitter(ms(50), ms(400)))),
        regions("http-500", "every answer from A HTTP 500", Schedule::OnA(Fault::Status(500))),
        regions("http-503", "every answer from A HTTP 503", Schedule::OnA(Fault::Status(503))),
        regions("errors-50%", "half of A's answers HTTP 500", Schedule::OnA(Fault::RandomErrors(0.5))),
        regions("truncated", "A's answers cut in half (malformed JSON)", Schedule::OnA(Fault::Truncate)),
        regions("flapping", "A down/up every open period", Schedule::FlappingA(ms(sizing.open_ms))),
        regions("tail-slow", "5 % of A's answers 300 ms late (hedging)", Schedule::OnA(Fault::TailDelay(0.05, ms(300)))),
        regions("both-down", "A and B down: the edge model's turn", Schedule::OnBoth(Fault::Down)),
        regions("recovery", "A down, then back halfway (failback)", Schedule::RecoveryA),
        regions("model-swap", "A restarts onto a new model version halfway; B keeps the old one", Schedule::ModelSwapA),
        Scenario {
            name: "replica-slow",
            what: "A and B as replicas in one tier; A 100 ms slower",
            schedule: Schedule::OnA(Fault::Delay(ms(100))),
            topology: Topology::Replicas,
        },
    ]
}

/// Which user's history and how much of it request `i` asks with: 30 %
/// from a hot set of 20 pages (whole histories), the rest distinct prefixes.
fn pick(histories: &[Vec<String>], i: usize) -> (usize, usize) {
    if i % 10 < 3 {
        ((i % 20) % histories.len(), usize::MAX)
    } else {
        let u = (i.wrapping_mul(7_919)) % histories.len();
        (u, 1 + (i / histories.len()) % histories[u].len().max(1))
    }
}

/// The index of the user behind request `i` (into [`Cases::histories`]).
pub fn user_of(histories: &[Vec<String>], i: usize) -> usize {
    pick(histories, i).0
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
    let (user, len) = pick(histories, i);
    let h = &histories[user];
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

/// Real test users from `parity.json`: their ids and histories (non-empty), aligned.
pub struct Cases {
    /// External user ids.
    pub users: Vec<String>,
    /// Their histories, oldest first.
    pub histories: Vec<Vec<String>>,
}

/// The test users of `parity.json`.
///
/// # Panics
/// If the file is missing or malformed.
pub fn cases(model_dir: &Path) -> Cases {
    let parity: serde_json::Value = serde_json::from_slice(&std::fs::read(model_dir.join("parity.json")).expect("parity.json")).expect("JSON");
    let (users, histories) = parity["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let h: Vec<String> = c["history"].as_array().expect("history").iter().map(|v| v.as_str().expect("id").to_string()).collect();
            (c["user"].as_str().expect("user").to_string(), h)
        })
        .filter(|(_, h)| !h.is_empty())
        .unzip();
    Cases { users, histories }
}

/// Real test users' histories from `parity.json`.
///
/// # Panics
/// If the file is missing or malformed.
pub fn histories(model_dir: &Path) -> Vec<Vec<String>> {
    cases(model_dir).histories
}

/// Which front is under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    /// The edge worker.
    Edge,
    /// nginx.
    Nginx,
}

/// Hedging counters of the edge over one run (from `/healthz`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Hedging {
    /// Requests that asked an origin.
    pub requests: u64,
    /// Hedged requests sent.
    pub hedges: u64,
    /// Hedged requests whose answer was served.
    pub won: u64,
    /// Hedges refused by the budget.
    pub over_budget: u64,
}

impl Hedging {
    /// Extra origin requests from hedging, % of requests that asked an origin.
    pub fn extra_load_pct(&self) -> f64 {
        100.0 * self.hedges as f64 / self.requests.max(1) as f64
    }
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
    /// When the fault began, ms after the start (constant faults: after the healthy quarter).
    pub fault_at_ms: f64,
    /// When A became healthy again, ms after the start (recovery, flapping's last up, the swap).
    pub healthy_at_ms: Option<f64>,
    /// Mean NDCG@10 of every request (0 for a request without a valid answer).
    pub quality: f64,
    /// The edge's hedging counters over the run.
    pub hedging: Option<Hedging>,
    /// The edge's `/healthz` said the regions' model versions differ (model-swap only).
    pub mismatch_seen: Option<bool>,
}

impl Run {
    /// ms from `healthy_at_ms` to the first answer that came from A.
    pub fn failback_ms(&self) -> Option<f64> {
        let at = self.healthy_at_ms?;
        self.outcomes
            .iter()
            .filter(|o| o.sent_at_ms >= at && o.source == "origin" && o.origin == "a")
            .map(|o| o.sent_at_ms + o.latency_ms - at)
            .reduce(f64::min)
    }

    /// Share of the origin answers sent from `after_ms` on that came from `origin`.
    pub fn share_from(&self, origin: &str, after_ms: f64) -> f64 {
        let answered: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.sent_at_ms >= after_ms && o.source == "origin").collect();
        answered.iter().filter(|o| o.origin == origin).count() as f64 / answered.len().max(1) as f64
    }

    /// Share of all requests answered well by the full model: a good
    /// answer from an origin or from a cache of origin answers.
    pub fn full_model_share(&self) -> f64 {
        let full = self.outcomes.iter().filter(|o| o.good(K) && matches!(o.source.as_str(), "origin" | "cache" | "stale-cache")).count();
        full as f64 / self.outcomes.len().max(1) as f64
    }

    /// Whether A's answers switched model version once and never back.
    pub fn versions_monotone(&self) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut by_time: Vec<&Outcome> = self.outcomes.iter().filter(|o| o.source == "origin" && o.origin == "a" && !o.version.is_empty()).collect();
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

/// One region: a real origin process behind its fault proxy.
pub struct Region {
    /// The origin.
    pub origin: Origin,
    /// Its port (kept across restarts).
    pub port: u16,
    /// The proxy in front of it.
    pub proxy: FaultProxy,
}

impl Region {
    async fn start(models: &Path) -> Region {
        let port = free_port();
        let origin = Origin::start_with(port, models, &[]).await;
        let proxy = FaultProxy::start(&origin.url()).await;
        Region { origin, port, proxy }
    }

    async fn restart_with(&mut self, models: &Path) {
        self.origin.kill();
        self.origin = Origin::start_with(self.port, models, &[]).await;
    }
}

/// `ORIGINS` for the edge: A and B behind their proxies, B at `b_priority`.
fn origins_var(a: &Region, b: &Region, b_priority: u32) -> String {
    serde_json::json!([
        {"name": "a", "url": a.proxy.url(), "priority": 1},
        {"name": "b", "url": b.proxy.url(), "priority": b_priority},
    ])
    .to_string()
}

/// Everything a suite run needs, started once.
pub struct Rig {
    /// Region A (priority 1).
    pub a: Region,
    /// Region B (priority 2, or A's fellow replica).
    pub b: Region,
    /// The edge under test: A, then B.
    pub edge: Edge,
    /// The edge with A and B as replicas in one tier.
    pub edge_replicas: Edge,
    /// The edge with no origin at all (the edge-only baseline).
    pub edge_only: Edge,
    /// The peer: `server A; server B backup;`.
    pub nginx: Nginx,
    /// The peer with A and B as equal servers.
    pub nginx_replicas: Nginx,
    /// Test users and their histories.
    pub cases: Arc<Cases>,
    /// Held-out items per user, for the quality column.
    pub targets: Arc<Targets>,
    /// A copy of the model directory with a new version, for the swap.
    pub swapped_models: PathBuf,
    sizing: Sizing,
}

/// Unmeasured requests to each edge before the first run.
const WARM_UP_REQUESTS: usize = 40;

impl Rig {
    /// Starts both regions, the three edges and both nginx peers.
    pub async fn start(sizing: Sizing) -> Rig {
        let models = repo().join("models/movielens");
        let (a, b) = (Region::start(&models).await, Region::start(&models).await);
        let open = sizing.open_ms.to_string();
        let breaker = [("BREAKER_OPEN_MS", open.as_str()), ("BREAKER_MAX_OPEN_MS", open.as_str())];
        let (regions, replicas) = (origins_var(&a, &b, 2), origins_var(&a, &b, 1));
        // wrangler.toml's local ORIGIN_URL is cleared: the edge refuses both at once.
        let edge = Edge::start(&[&[("ORIGINS", regions.as_str()), ("ORIGIN_URL", "")][..], &breaker].concat()).await;
        let edge_replicas = Edge::start(&[&[("ORIGINS", replicas.as_str()), ("ORIGIN_URL", "")][..], &breaker].concat()).await;
        let edge_only = Edge::start(&[("ORIGIN_URL", "")]).await;
        let nginx = start_nginx(&a, &b, Topology::Regions).await;
        let nginx_replicas = start_nginx(&a, &b, Topology::Replicas).await;
        let swapped_models = swapped_copy(&models);
        let cases = Arc::new(cases(&models));
        let targets = Arc::new(quality::movielens_targets(&repo().join("data/ml-100k/ml-100k.inter")));
        // Warm-up, not measured: the isolates build their models and V8 tiers
        // the wasm up on the first requests, which a measured run should not pay.
        let client = reqwest::Client::new();
        for front in [&edge, &edge_replicas, &edge_only] {
            for i in 0..WARM_UP_REQUESTS {
                let _ = client.get(format!("{}/v1/recommendations?{}", front.url(), query(&cases.histories, i, "warm-up"))).send().await;
            }
        }
        Rig { a, b, edge, edge_replicas, edge_only, nginx, nginx_replicas, cases, targets, swapped_models, sizing }
    }

    async fn restart_nginx(&mut self, topology: Topology) {
        let fresh = start_nginx(&self.a, &self.b, topology).await;
        match topology {
            Topology::Regions => self.nginx = fresh,
            Topology::Replicas => self.nginx_replicas = fresh,
        }
    }

    fn set_all(&self, fault: Fault) {
        self.a.proxy.set(fault.clone());
        self.b.proxy.set(fault);
    }

    /// Runs `scenario` on `front`.
    pub async fn run(&mut self, scenario: &Scenario, front: Front) -> Run {
        self.set_all(Fault::Pass);
        if front == Front::Nginx {
            // A fresh peer per run, as the edge's breakers are closed before each: nginx
            // keeps a server it saw fail out for `fail_timeout` (30 s), which would carry
            // one scenario's outage into the next.
            self.restart_nginx(scenario.topology).await;
        }
        let edge = if scenario.topology == Topology::Replicas { &self.edge_replicas } else { &self.edge };
        // The previous scenario may have left a breaker open: let the edge
        // probe its way closed (in-band, as in production) before measuring.
        close_breakers(edge, &self.cases.histories, self.sizing.open_ms).await;
        let base = match (front, scenario.topology) {
            (Front::Edge, _) => edge.url(),
            (Front::Nginx, Topology::Regions) => self.nginx.url(),
            (Front::Nginx, Topology::Replicas) => self.nginx_replicas.url(),
        };
        let hedging_before = hedging(edge).await;
        let cases = Arc::clone(&self.cases);
        // The same questions through both fronts (each has its own cache), new ones per scenario.
        let salt = format!("{}-{}", scenario.name, std::process::id());
        let url = move |i: usize| format!("{base}/v1/recommendations?{}", query(&cases.histories, i, &salt));
        let spec = self.spec();
        let header = match front {
            Front::Edge => "x-rec-source",
            Front::Nginx => "x-cache-status",
        };
        let started = Instant::now();
        let load = tokio::spawn(load::run(url, spec, header));
        let half = self.sizing.duration / 2;
        let quarter = self.sizing.duration / 4;
        let elapsed_ms = || started.elapsed().as_secs_f64() * 1e3;
        let mut healthy_at_ms = None;
        let mut fault_at_ms = 0.0;
        let mut mismatch_seen = None;
        match &scenario.schedule {
            Schedule::OnA(Fault::Pass) => {}
            Schedule::OnA(f) | Schedule::OnBoth(f) => {
                // A quarter of healthy traffic first: the outage hits caches warmed as in production.
                tokio::time::sleep(quarter).await;
                fault_at_ms = elapsed_ms();
                self.a.proxy.set(f.clone());
                if matches!(scenario.schedule, Schedule::OnBoth(_)) {
                    self.b.proxy.set(f.clone());
                }
            }
            Schedule::FlappingA(period) => {
                let mut up = false;
                while started.elapsed() + *period < self.sizing.duration {
                    self.a.proxy.set(if up { Fault::Pass } else { Fault::Down });
                    if up {
                        healthy_at_ms = Some(elapsed_ms());
                    }
                    tokio::time::sleep(*period).await;
                    up = !up;
                }
            }
            Schedule::RecoveryA => {
                self.a.proxy.set(Fault::Down);
                tokio::time::sleep(half).await;
                self.a.proxy.set(Fault::Pass);
                healthy_at_ms = Some(elapsed_ms());
            }
            Schedule::ModelSwapA => {
                tokio::time::sleep(half).await;
                fault_at_ms = elapsed_ms();
                self.a.restart_with(&self.swapped_models).await;
                healthy_at_ms = Some(elapsed_ms());
            }
        }
        let mut outcomes = load.await.expect("load task");
        if matches!(scenario.schedule, Schedule::ModelSwapA) {
            if front == Front::Edge {
                let h = health(edge).await;
                mismatch_seen = Some(h["origin_versions"] == "mismatch");
            }
            // Back to the original model for the next run.
            self.a.restart_with(&repo().join("models/movielens")).await;
        }
        self.set_all(Fault::Pass);
        if front == Front::Nginx {
            let (pa, pb) = (self.a.proxy.addr.to_string(), self.b.proxy.addr.to_string());
            for o in &mut outcomes {
                o.source = nginx::source_of(&o.source).to_string();
                // `$upstream_addr` lists every server tried; the last one answered.
                let last = o.origin.rsplit(", ").next().unwrap_or_default().to_string();
                o.origin = if last == pa {
                    "a".into()
                } else if last == pb {
                    "b".into()
                } else {
                    String::new()
                };
            }
        }
        let hedging = match front {
            Front::Edge => {
                let after = hedging(edge).await;
                Some(Hedging {
                    requests: after.requests - hedging_before.requests,
                    hedges: after.hedges - hedging_before.hedges,
                    won: after.won - hedging_before.won,
                    over_budget: after.over_budget - hedging_before.over_budget,
                })
            }
            Front::Nginx => None,
        };
        let summary = load::summarize(&outcomes, K);
        let quality = self.quality(&outcomes);
        Run { scenario: scenario.name, front, outcomes, summary, fault_at_ms, healthy_at_ms, quality, hedging, mismatch_seen }
    }

    /// Mean NDCG@10 over `outcomes` against the held-out items of each query's user.
    pub fn quality(&self, outcomes: &[Outcome]) -> f64 {
        let none = HashSet::new();
        let total: f64 = outcomes
            .iter()
            .map(|o| {
                let user = &self.cases.users[user_of(&self.cases.histories, o.index)];
                if o.good(K) { quality::ndcg_at(&o.item_ids, self.targets.get(user).unwrap_or(&none), K) } else { 0.0 }
            })
            .sum();
        total / outcomes.len().max(1) as f64
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

    /// The edge-only baseline under the same load (no origin configured),
    /// with its quality.
    pub async fn edge_only_baseline(&self) -> (Summary, f64) {
        let cases = Arc::clone(&self.cases);
        let base = self.edge_only.url();
        let salt = format!("edge-only-{}", std::process::id());
        let url = move |i: usize| format!("{base}/v1/recommendations?{}", query(&cases.histories, i, &salt));
        let outcomes = load::run(url, self.spec(), "x-rec-source").await;
        (load::summarize(&outcomes, K), self.quality(&outcomes))
    }
}

/// The peer in front of A and B: `server A; server B backup;` for regions,
/// two equal servers for replicas.
async fn start_nginx(a: &Region, b: &Region, topology: Topology) -> Nginx {
    let (pa, pb) = (a.proxy.addr.to_string(), b.proxy.addr.to_string());
    let b_flags = if topology == Topology::Regions { "backup" } else { "" };
    Nginx::start_upstreams(&[(&pa, ""), (&pb, b_flags)], DEADLINE_MS).await
}

/// The edge's `/healthz`.
pub async fn health(edge: &Edge) -> serde_json::Value {
    match reqwest::get(format!("{}/healthz", edge.url())).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

async fn hedging(edge: &Edge) -> Hedging {
    let h = health(edge).await;
    let n = |k: &str| h["hedging"]["stats"][k].as_u64().unwrap_or(0);
    Hedging { requests: n("requests"), hedges: n("hedges"), won: n("hedges_won"), over_budget: n("hedges_over_budget") }
}

/// Waits until every origin's breaker at `edge` is closed (ramps done),
/// sending a fresh query now and then so a half-open breaker gets its probe.
///
/// # Panics
/// If they are not closed within a few open periods.
pub async fn close_breakers(edge: &Edge, histories: &[Vec<String>], open_ms: u64) {
    let client = reqwest::Client::new();
    let limit = Instant::now() + Duration::from_millis(4 * open_ms + 10_000);
    for i in 0.. {
        let h = health(edge).await;
        let states: Vec<&str> = h["origins"].as_array().map(|a| a.iter().filter_map(|o| o["state"].as_str()).collect()).unwrap_or_default();
        if !states.is_empty() && states.iter().all(|s| *s == "closed") {
            return;
        }
        assert!(Instant::now() < limit, "the edge's breakers did not close: {h}");
        let _ = client.get(format!("{}/v1/recommendations?{}", edge.url(), query(histories, i, "close-breaker"))).send().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `models/movielens` copied to a temporary directory with a new manifest
/// version (the files and their sha256 are unchanged): a "new model" an
/// origin can restart onto.
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

/// The 99th percentile of the server-side totals (`Server-Timing`) among
/// `outcomes`, ms: the edge's own view of its latency, without the client's
/// and the OS scheduler's share.
pub fn server_p99(outcomes: &[Outcome]) -> f64 {
    let mut v: Vec<f64> = outcomes.iter().filter_map(|o| o.server_total_ms).collect();
    v.sort_by(f64::total_cmp);
    load::percentile(&v, 0.99)
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
