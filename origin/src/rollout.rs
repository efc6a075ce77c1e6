//! The canary rollout controller (`origin rollout`): takes an approved
//! version from the registry to one region, judges it there against the
//! others on live traffic, then promotes it to every region or rolls it back.
//!
//! 1. `CANARY` := the version; the canary region's origin (`--registry-track
//!    canary`) loads it. Not serving it within `settle` (refused: corrupt,
//!    unloadable, failed warm-up) → rolled back.
//! 2. For `window`, the recommendation route's requests, 5xx answers and
//!    latency histogram are read from every origin's `/metrics` at the start
//!    and the end; the deltas give each origin's error ratio and p99 over the
//!    window (the histogram quantile as Prometheus' `histogram_quantile`
//!    computes it: linear within the bucket).
//! 3. The canary is worse when its error ratio exceeds the others' by more
//!    than `max_error_ratio_increase`, or its p99 exceeds both
//!    `max_p99_ratio` × and `p99_slack` + the others' — or when it saw fewer
//!    than `min_requests` (no evidence is no promotion).
//! 4. Worse: `CANARY` removed (the canary region reloads `CURRENT`), the
//!    version marked `bad` with the figures. Else: `CURRENT` := the version,
//!    `CANARY` removed, marked `promoted`; every region follows.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use registry::{Pointer, Registry, RegistryError, Status};
use serde::Serialize;

/// The route whose figures judge a canary.
pub const JUDGED_ROUTE: &str = "/v1/recommendations";

/// `origin rollout` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutConfig {
    /// The registry every region follows.
    #[arg(long, env = "EDGEREC_REGISTRY")]
    pub registry: PathBuf,
    /// Base URL of the canary region's origin (`--registry-track canary`).
    #[arg(long)]
    pub canary: String,
    /// Base URLs of the other regions' origins (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub others: Vec<String>,
    /// The origins' operator token (for `/metrics` and the detailed `/readyz`).
    #[arg(long, env = "EDGEREC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Version to roll out; default: the newest `approved` one.
    #[arg(long)]
    pub version: Option<String>,
    /// How long the canary serves before it is judged (s).
    #[arg(long, default_value_t = 60.0)]
    pub window_s: f64,
    /// How long a region may take to load a version (s).
    #[arg(long, default_value_t = 120.0)]
    pub settle_s: f64,
    /// Fewest canary requests in the window for a verdict.
    #[arg(long, default_value_t = 100)]
    pub min_requests: u64,
    /// Largest tolerated rise of the error ratio (5xx / requests) over the others', absolute.
    #[arg(long, default_value_t = 0.01)]
    pub max_error_ratio_increase: f64,
    /// Largest tolerated p99 as a multiple of the others' …
    #[arg(long, default_value_t = 1.5)]
    pub max_p99_ratio: f64,
    /// … unless within this many ms of it (sub-millisecond p99s differ by noise).
    #[arg(long, default_value_t = 10.0)]
    pub p99_slack_ms: f64,
}

/// One origin's figures over the window.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Figures {
    /// Recommendation requests answered.
    pub requests: f64,
    /// Of them, 5xx.
    pub errors: f64,
    /// `errors / requests` (0 without requests).
    pub error_ratio: f64,
    /// 99th percentile latency, ms (histogram quantile).
    pub p99_ms: f64,
}

/// What a rollout did; printed as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The version rolled out.
    pub version: String,
    /// The stable version before.
    pub previous: Option<String>,
    /// `promoted` or `rolled_back`.
    pub decision: &'static str,
    /// Why, with the figures.
    pub reason: String,
    /// The canary's figures over the window.
    pub canary: Figures,
    /// The other regions' figures, summed.
    pub others: Figures,
    /// From `CANARY` set to the canary region serving it, s.
    pub canary_load_s: f64,
    /// From the decision to every region serving the decided version, s.
    pub converge_s: f64,
}

/// Cumulative counters of the judged route at one moment.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    requests: f64,
    errors: f64,
    /// Upper bound (s) → cumulative count, summed over every status.
    buckets: BTreeMap<u64, f64>,
}

fn le_key(le: f64) -> u64 {
    // Bucket bounds as integer nanoseconds: a total order for the map (+Inf → u64::MAX).
    if le.is_finite() { (le * 1e9).round() as u64 } else { u64::MAX }
}

fn parse_snapshot(text: &str) -> anyhow::Result<Snapshot> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).context("parsing /metrics")?;
    let mut snap = Snapshot::default();
    for sample in scrape.samples {
        if sample.labels.get("route") != Some(JUDGED_ROUTE) {
            continue;
        }
        match (sample.metric.as_str(), sample.value) {
            ("http_requests_total", prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v)) => {
                snap.requests += v;
                if sample.labels.get("status").is_some_and(|s| s.starts_with('5')) {
                    snap.errors += v;
                }
            }
            ("http_request_duration_seconds", prometheus_parse::Value::Histogram(counts)) => {
                for c in counts {
                    *snap.buckets.entry(le_key(c.less_than)).or_default() += c.count;
                }
            }
            _ => {}
        }
    }
    Ok(snap)
}

/// The `q` quantile (0..1) of the requests between two cumulative histograms, seconds.
fn quantile(q: f64, before: &Snapshot, after: &Snapshot) -> f64 {
    let deltas: Vec<(f64, f64)> = after
        .buckets
        .iter()
        .map(|(&le, &n)| (if le == u64::MAX { f64::INFINITY } else { le as f64 / 1e9 }, n - before.buckets.get(&le).copied().unwrap_or(0.0)))
        .collect();
    let Some(&(_, total)) = deltas.last() else { return 0.0 };
    if total <= 0.0 {
        return 0.0;
    }
    let rank = q * total;
    let (mut lower_le, mut lower_n) = (0.0, 0.0);
    for &(le, n) in &deltas {
        if n >= rank {
            if le.is_infinite() {
                return lower_le; // as Prometheus: the highest finite bound
            }
            return lower_le + (le - lower_le) * (rank - lower_n) / (n - lower_n).max(f64::MIN_POSITIVE);
        }
        (lower_le, lower_n) = (le, n);
    }
    lower_le
}

impl Figures {
    fn new(requests: f64, errors: f64, p99_ms: f64) -> Self {
        Figures { requests, errors, error_ratio: if requests > 0.0 { errors / requests } else { 0.0 }, p99_ms }
    }
}

fn figures(before: &Snapshot, after: &Snapshot) -> Figures {
    Figures::new((after.requests - before.requests).max(0.0), (after.errors - before.errors).max(0.0), 1e3 * quantile(0.99, before, after))
}

/// Whether the canary is worse than the others, and why (module docs, step 3).
pub fn judge(cfg: &RolloutConfig, canary: &Figures, others: &Figures) -> Result<String, String> {
    let summary = format!(
        "canary: {} requests, error ratio {:.4}, p99 {:.1} ms; others: {} requests, error ratio {:.4}, p99 {:.1} ms",
        canary.requests, canary.error_ratio, canary.p99_ms, others.requests, others.error_ratio, others.p99_ms
    );
    if (canary.requests as u64) < cfg.min_requests {
        return Err(format!("too little canary traffic for a verdict (< {}): {summary}", cfg.min_requests));
    }
    if canary.error_ratio > others.error_ratio + cfg.max_error_ratio_increase {
        return Err(format!("error ratio worse by more than {}: {summary}", cfg.max_error_ratio_increase));
    }
    if canary.p99_ms > cfg.max_p99_ratio * others.p99_ms && canary.p99_ms > others.p99_ms + cfg.p99_slack_ms {
        return Err(format!("p99 over {}× and {} ms above the others': {summary}", cfg.max_p99_ratio, cfg.p99_slack_ms));
    }
    Ok(summary)
}

struct Client {
    http: reqwest::Client,
    token: String,
}

impl Client {
    async fn get(&self, url: &str) -> anyhow::Result<String> {
        let response = self.http.get(url).bearer_auth(&self.token).send().await.with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            bail!("GET {url}: {status} {body}");
        }
        Ok(body)
    }

    async fn snapshot(&self, base: &str) -> anyhow::Result<Snapshot> {
        parse_snapshot(&self.get(&format!("{base}/metrics")).await?)
    }

    /// The version `base` serves, and its last reload error.
    async fn serving(&self, base: &str) -> (Option<String>, Option<String>) {
        match self.get(&format!("{base}/readyz")).await.ok().and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok()) {
            Some(v) => (v["model"]["version"].as_str().map(str::to_string), v["registry"]["refused"][1].as_str().map(str::to_string)),
            None => (None, None),
        }
    }

    /// Waits until every origin of `bases` serves `version`; seconds taken.
    async fn converge(&self, bases: &[String], version: &str, limit: Duration) -> anyhow::Result<f64> {
        let started = Instant::now();
        loop {
            let mut all = true;
            for base in bases {
                all &= self.serving(base).await.0.as_deref() == Some(version);
            }
            if all {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > limit {
                bail!("not every region serves {version} after {:.0} s", limit.as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn sum(figs: &[Figures]) -> Figures {
    Figures::new(
        figs.iter().map(|f| f.requests).sum(),
        figs.iter().map(|f| f.errors).sum(),
        // The others' p99 as the worst of them: the canary must not be worse than any healthy region.
        figs.iter().map(|f| f.p99_ms).fold(0.0, f64::max),
    )
}

/// One rollout under way.
struct Rollout<'a> {
    cfg: &'a RolloutConfig,
    reg: Registry,
    client: Client,
    version: String,
    previous: Option<String>,
    settle: Duration,
}

impl Rollout<'_> {
    fn outcome(&self, decision: &'static str, reason: String, canary: Figures, others: Figures, canary_load_s: f64, converge_s: f64) -> Outcome {
        Outcome { version: self.version.clone(), previous: self.previous.clone(), decision, reason, canary, others, canary_load_s, converge_s }
    }

    /// Removes the canary, marks the version bad and waits for the canary
    /// region to serve the stable version again.
    async fn roll_back(&self, reason: String, canary: Figures, others: Figures, canary_load_s: f64) -> anyhow::Result<Outcome> {
        self.reg.set_pointer(Pointer::Canary, None)?;
        self.reg.set_status(&self.version, Status::Bad, &reason)?;
        tracing::warn!(version = self.version, reason, "canary rolled back");
        let converge_s = match &self.previous {
            Some(p) => self.client.converge(std::slice::from_ref(&self.cfg.canary), p, self.settle).await?,
            None => 0.0,
        };
        Ok(self.outcome("rolled_back", reason, canary, others, canary_load_s, converge_s))
    }

    async fn promote(&self, summary: String, canary: Figures, others: Figures, canary_load_s: f64) -> anyhow::Result<Outcome> {
        self.reg.set_pointer(Pointer::Stable, Some(&self.version))?;
        self.reg.set_pointer(Pointer::Canary, None)?;
        let reason = format!("promoted after {:.0} s as canary: {summary}", self.cfg.window_s);
        self.reg.set_status(&self.version, Status::Promoted, &reason)?;
        let all: Vec<String> = std::iter::once(self.cfg.canary.clone()).chain(self.cfg.others.iter().cloned()).collect();
        let converge_s = self.client.converge(&all, &self.version, self.settle).await?;
        Ok(self.outcome("promoted", reason, canary, others, canary_load_s, converge_s))
    }

    async fn judge_window(&self, canary_load_s: f64) -> anyhow::Result<Outcome> {
        let (cfg, client) = (self.cfg, &self.client);
        let mut before = vec![client.snapshot(&cfg.canary).await?];
        for o in &cfg.others {
            before.push(client.snapshot(o).await?);
        }
        tokio::time::sleep(Duration::from_secs_f64(cfg.window_s)).await;
        let mut figs = Vec::new();
        for (base, b) in std::iter::once(&cfg.canary).chain(&cfg.others).zip(&before) {
            figs.push(figures(b, &client.snapshot(base).await?));
        }
        let (canary, others) = (figs[0], sum(&figs[1..]));
        // The canary must still serve the version it is judged on.
        let still = client.serving(&cfg.canary).await.0;
        let verdict = if still.as_deref() == Some(self.version.as_str()) {
            judge(cfg, &canary, &others)
        } else {
            Err(format!("the canary serves {still:?}, not {}", self.version))
        };
        match verdict {
            Err(reason) => self.roll_back(reason, canary, others, canary_load_s).await,
            Ok(summary) => self.promote(summary, canary, others, canary_load_s).await,
        }
    }
}

/// Runs one rollout (module docs).
///
/// # Errors
/// When the registry has no such (approved) version, the version was refused
/// or marked bad (its record stays as it is), or an origin cannot be
/// reached during the window (the canary is then removed and the version left
/// as `canary` for an operator to judge).
pub async fn run(cfg: &RolloutConfig) -> anyhow::Result<Outcome> {
    let reg = Registry::existing(&cfg.registry).with_context(|| format!("no registry at {}", cfg.registry.display()))?;
    let version = match &cfg.version {
        Some(v) => v.clone(),
        None => reg.records()?.into_iter().rev().find(|r| r.status == Status::Approved).map(|r| r.version).context("no approved version to roll out")?,
    };
    let previous = reg.pointer(Pointer::Stable)?;
    if previous.as_deref() == Some(version.as_str()) {
        bail!("{version} is already the stable version");
    }
    let client = Client { http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?, token: cfg.admin_token.clone() };
    let rollout = Rollout { cfg, reg, client, version, previous, settle: Duration::from_secs_f64(cfg.settle_s) };
    if let Err(refused) = rollout.reg.set_pointer(Pointer::Canary, Some(&rollout.version)) {
        // A refused or bad version keeps its record and reason: nothing to roll out.
        if matches!(refused, RegistryError::NotServable { .. } | RegistryError::Unknown(_)) {
            return Err(refused.into());
        }
        // Corrupt or incomplete on disk: it never reaches a region.
        let reason = format!("refused as canary: {refused}");
        rollout.reg.set_status(&rollout.version, Status::Bad, &reason)?;
        return Ok(rollout.outcome("rolled_back", reason, Figures::default(), Figures::default(), 0.0, 0.0));
    }
    rollout.reg.set_status(&rollout.version, Status::Canary, &format!("canary at {}", cfg.canary))?;
    tracing::info!(version = rollout.version, canary = cfg.canary, "canary set");
    let canary_load_s = match rollout.client.converge(std::slice::from_ref(&cfg.canary), &rollout.version, rollout.settle).await {
        Ok(s) => s,
        Err(_) => {
            let why = rollout.client.serving(&cfg.canary).await.1.unwrap_or_else(|| "no reload error reported".into());
            let reason = format!("the canary did not serve it within {:.0} s: {why}", cfg.settle_s);
            return rollout.roll_back(reason, Figures::default(), Figures::default(), cfg.settle_s).await;
        }
    };
    let outcome = rollout.judge_window(canary_load_s).await;
    if outcome.is_err() {
        let _ = rollout.reg.set_pointer(Pointer::Canary, None);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# TYPE http_requests_total counter
http_requests_total{route="/v1/recommendations",method="POST",status="200"} 90
http_requests_total{route="/v1/recommendations",method="POST",status="503"} 10
http_requests_total{route="/healthz",method="GET",status="200"} 1000
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route="/v1/recommendations",method="POST",status="200",le="0.001"} 50
http_request_duration_seconds_bucket{route="/v1/recommendations",method="POST",status="200",le="0.01"} 90
http_request_duration_seconds_bucket{route="/v1/recommendations",method="POST",status="200",le="+Inf"} 90
http_request_duration_seconds_bucket{route="/v1/recommendations",method="POST",status="503",le="0.001"} 0
http_request_duration_seconds_bucket{route="/v1/recommendations",method="POST",status="503",le="0.01"} 0
http_request_duration_seconds_bucket{route="/v1/recommendations",method="POST",status="503",le="+Inf"} 10
http_request_duration_seconds_sum{route="/v1/recommendations",method="POST",status="200"} 0.3
http_request_duration_seconds_count{route="/v1/recommendations",method="POST",status="200"} 90
"#;

    fn cfg() -> RolloutConfig {
        RolloutConfig {
            registry: PathBuf::new(),
            canary: String::new(),
            others: vec![],
            admin_token: String::new(),
            version: None,
            window_s: 1.0,
            settle_s: 1.0,
            min_requests: 50,
            max_error_ratio_increase: 0.01,
            max_p99_ratio: 1.5,
            p99_slack_ms: 10.0,
        }
    }

    #[test]
    fn figures_come_from_the_judged_route_over_the_window() {
        let after = parse_snapshot(METRICS).unwrap();
        let f = figures(&Snapshot::default(), &after);
        assert_eq!((f.requests, f.errors), (100.0, 10.0), "the healthz requests are not counted");
        assert!((f.error_ratio - 0.1).abs() < 1e-12);
        // 99 of 100 fall in ≤ 10 ms only if the 503s count: they are in +Inf, so p99 is the highest finite bound.
        assert!((f.p99_ms - 10.0).abs() < 1e-9, "{}", f.p99_ms);
        // p50 interpolates within the first bucket: 50 of 50 at ≤ 1 ms.
        assert!((quantile(0.5, &Snapshot::default(), &after) - 0.001).abs() < 1e-9);
    }

    #[test]
    fn a_canary_worse_in_errors_or_latency_is_judged_worse_and_a_quiet_one_unproven() {
        let good = Figures { requests: 500.0, errors: 0.0, error_ratio: 0.0, p99_ms: 4.0 };
        assert!(judge(&cfg(), &good, &good).is_ok());
        let erring = Figures { errors: 25.0, error_ratio: 0.05, ..good };
        assert!(judge(&cfg(), &erring, &good).unwrap_err().contains("error ratio"));
        let slow = Figures { p99_ms: 40.0, ..good };
        assert!(judge(&cfg(), &slow, &good).unwrap_err().contains("p99"));
        let noisy = Figures { p99_ms: 9.0, ..good };
        assert!(judge(&cfg(), &noisy, &good).is_ok(), "2.25× of 4 ms is within the 10 ms slack");
        let quiet = Figures { requests: 10.0, ..good };
        assert!(judge(&cfg(), &quiet, &good).unwrap_err().contains("too little"));
    }
}
