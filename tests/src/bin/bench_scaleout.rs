//! `bench-scaleout <model-dir> <out.md>` (run by `cargo xtask bench-scaleout`):
//! does adding origin replicas add capacity, and does a rolling restart lose
//! a request?
//!
//! Replicas are the origin's image under podman (`localhost/edgerec-origin:dev`),
//! each with a CPU limit of [`REPLICA_CPUS`] of one core (a CFS quota: what a
//! Kubernetes CPU limit sets), all pinned to core 1; this process (the load
//! generator) and `wrangler dev` use what is left of the two cores (at least
//! 1.7). On a 2-core machine that is the only way to see scale-out at all:
//! three replicas together hold 0.3 core, so ideal scaling stays within the
//! machine, and the one local workerd (a single isolate) keeps enough CPU
//! not to be the limit at the rates sent through it.
//! Straight to the replicas in turn (a perfect client-side balancer), a
//! closed loop measures what 1, 2 and 3 replicas serve; through the edge (its
//! balancer, P2C over peak-EWMA), the same open-loop offered load goes to
//! 1, 2 and 3 replicas. Then, under an open-loop load through the edge, each of three
//! replicas in turn is stopped as the kubelet stops a pod (SIGTERM: readiness
//! fails, the drain delay, in-flight requests finish, exit) and started again.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use e2e::load::{self, LoadSpec, Outcome};
use e2e::platform::{self, IMAGE_DEV, image_exists, podman_ok, podman_out};
use e2e::procs::{Edge, free_port};
use e2e::{chaos, measure};

/// CPU limit of one replica, cores.
const REPLICA_CPUS: f64 = 0.1;
/// CFS period of that limit, µs: 20 ms instead of podman's 100 ms (the quota must be ≥ 1 ms), so a
/// throttled replica waits at most milliseconds, not most of 100 ms.
const CPU_PERIOD_US: u32 = 20_000;
/// Requests in flight per replica in the direct (capacity) runs: enough to
/// keep one inference worker busy, few enough that queueing stays under the
/// origin's 250 ms request deadline.
const CONCURRENCY_PER_REPLICA: usize = 6;
/// Length of each throughput run.
const WINDOW: Duration = Duration::from_secs(20);
/// Highest open-loop rate sent through the edge, requests/s: one local
/// workerd (one isolate) runs the edge model beside every origin request and
/// writes the Cache API to disk, behind wrangler's proxy: at 156 req/s it,
/// not the replicas, was the limit (p99 0.5 s with three 0.1-core replicas
/// at podman's 100 ms CFS period that served 332 req/s directly); at
/// 100 req/s those three answered 92 %.
/// (With 0.05-core replicas instead, one replica's latency alone neared the
/// edge's deadline: 33 req/s direct, p99 300 ms.)
const MAX_EDGE_RATE: f64 = 100.0;
/// Offered load during the rolling restart, requests/s.
const RESTART_RATE: f64 = 50.0;

struct Replica {
    name: String,
    port: u16,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Starts replica `i` serving `model` (mounted read-only at /models).
fn start_replica(i: usize, model: &Path) -> Replica {
    let name = format!("edgerec-scaleout-{i}");
    let _ = podman_out(&["rm", "--force", &name]);
    let port = free_port();
    podman_ok(&[
        "run",
        "--detach",
        "--name",
        &name,
        "--read-only",
        "--cpu-period",
        &CPU_PERIOD_US.to_string(),
        "--cpu-quota",
        &((REPLICA_CPUS * f64::from(CPU_PERIOD_US)).round() as u32).to_string(),
        "--cpuset-cpus",
        "1",
        "--publish",
        &format!("127.0.0.1:{port}:8080"),
        "--volume",
        &format!("{}:/models:ro", model.display()),
        // One core's share: one inference worker and one async worker (more threads under a quota only queue).
        "--env",
        "EDGEREC_INFERENCE_WORKERS=1",
        "--env",
        "TOKIO_WORKER_THREADS=1",
        // The load comes from one address; the per-client limit is the edge's business here.
        "--env",
        "EDGEREC_RATE_LIMIT_PER_S=0",
        "--env",
        "EDGEREC_BACKEND=ort-cpu",
        IMAGE_DEV,
        "serve",
        "--models",
        "/models",
    ]);
    Replica { name, port }
}

async fn wait_ready(r: &Replica, limit: Duration) -> anyhow::Result<f64> {
    Ok(platform::wait_ready(&r.url(), limit).await.with_context(|| r.name.clone())?.as_secs_f64())
}

fn url(base: &str, h: &[String]) -> String {
    format!("{base}/v1/recommendations?history={}&k=10", h.join(","))
}

/// Histories for requests: request i gets parity case i mod P plus one item
/// of the catalog's head picked by i, so (almost) every request is a new
/// question: the edge's cache answers none of them and the replicas do the work.
struct Questions {
    cases: Vec<Vec<String>>,
    head: Vec<String>,
}

impl Questions {
    fn load(model: &Path) -> anyhow::Result<Questions> {
        let cases = chaos::histories(model);
        ensure!(!cases.is_empty(), "{}: parity.json has no histories", model.display());
        let catalog: serde_json::Value = serde_json::from_slice(&std::fs::read(model.join("catalog.json"))?)?;
        let head: Vec<String> =
            catalog["items"].as_array().context("catalog items")?.iter().take(20_000).filter_map(|i| i["id"].as_str().map(str::to_string)).collect();
        Ok(Questions { cases, head })
    }

    fn history(&self, i: usize) -> Vec<String> {
        let mut h = self.cases[i % self.cases.len()].clone();
        h.push(self.head[(i.wrapping_mul(7919) + i / self.cases.len()) % self.head.len()].clone());
        h
    }
}

struct Run {
    /// Requests answered per second.
    rps: f64,
    /// Of them, answered by an origin (not the edge's model, cache or list).
    origin_rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    good: f64,
    from_origin: f64,
}

/// `spec`'s load, request i to `bases[i mod n]`.
async fn drive(bases: Vec<String>, q: &Arc<Questions>, spec: LoadSpec, offset: usize) -> Run {
    let q = Arc::clone(q);
    let started = Instant::now();
    let n = bases.len();
    let outcomes = load::run(move |i| url(&bases[i % n], &q.history(offset + i)), spec, "x-rec-source").await;
    summarize(&outcomes, started.elapsed().as_secs_f64())
}

/// Closed loop at [`CONCURRENCY_PER_REPLICA`] × `replicas` for [`WINDOW`]: the replicas' capacity.
fn closed_loop(replicas: usize) -> LoadSpec {
    LoadSpec {
        requests: usize::MAX / 2,
        concurrency: CONCURRENCY_PER_REPLICA * replicas,
        max_duration: WINDOW,
        timeout: Duration::from_secs(10),
        think: Duration::ZERO,
        rate_per_s: None,
    }
}

/// Open loop at `rate` for [`WINDOW`]: the same offered load whatever answers.
fn open_loop(rate: f64) -> LoadSpec {
    LoadSpec {
        requests: usize::MAX / 2,
        concurrency: 256,
        max_duration: WINDOW,
        timeout: Duration::from_secs(10),
        think: Duration::ZERO,
        rate_per_s: Some(rate),
    }
}

/// A short warm-up (first model runs, connections).
fn warm_up() -> LoadSpec {
    LoadSpec { requests: 200, concurrency: 4, max_duration: Duration::from_secs(10), timeout: Duration::from_secs(10), think: Duration::ZERO, rate_per_s: None }
}

fn summarize(outcomes: &[Outcome], secs: f64) -> Run {
    let s = load::summarize(outcomes, 10);
    let origin = outcomes.iter().filter(|o| o.good(10) && o.source == "origin").count();
    Run {
        rps: s.sent as f64 / secs,
        origin_rps: origin as f64 / secs,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        good: s.good_share,
        from_origin: origin as f64 / s.sent.max(1) as f64,
    }
}

fn edge_origins(replicas: &[Replica]) -> String {
    let list: Vec<serde_json::Value> = replicas.iter().map(|r| serde_json::json!({ "name": r.name, "url": r.url(), "priority": 1 })).collect();
    serde_json::Value::Array(list).to_string()
}

async fn start_edge(replicas: &[Replica]) -> Edge {
    let origins = edge_origins(replicas);
    Edge::start(&[("ORIGINS", origins.as_str()), ("ORIGIN_URL", "")]).await
}

struct Restart {
    outcomes: Vec<Outcome>,
    secs: f64,
    per_replica: Vec<(String, f64, f64)>,
}

/// Stops and starts each replica in turn under open-loop load through the edge.
async fn rolling_restart(replicas: &[Replica], q: &Arc<Questions>) -> anyhow::Result<Restart> {
    let edge = start_edge(replicas).await;
    let _ = drive(vec![edge.url()], q, warm_up(), 50_000_000).await;
    let base = edge.url();
    let q = Arc::clone(q);
    // Long enough for every restart; the load is stopped when they are done.
    let spec = LoadSpec {
        requests: usize::MAX / 2,
        concurrency: 64,
        max_duration: Duration::from_secs(600),
        timeout: Duration::from_secs(10),
        think: Duration::ZERO,
        rate_per_s: Some(RESTART_RATE),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let started = Instant::now();
    let load = tokio::spawn(load::run_until(move |i| url(&base, &q.history(60_000_000 + i)), spec, "x-rec-source", stopped));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut per_replica = Vec::new();
    for r in replicas {
        let t = Instant::now();
        // What the kubelet does: SIGTERM, SIGKILL only after terminationGracePeriodSeconds (20).
        podman_ok(&["stop", "--time", "20", &r.name]);
        let stopped_s = t.elapsed().as_secs_f64();
        podman_ok(&["start", &r.name]);
        let ready_s = wait_ready(r, Duration::from_secs(120)).await?;
        per_replica.push((r.name.clone(), stopped_s, ready_s));
        eprintln!("bench-scaleout: {} drained and stopped in {stopped_s:.1} s, ready again {ready_s:.1} s after its start", r.name);
        // The edge re-admits it (half-open probe) before the next one goes.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = load.await?;
    Ok(Restart { outcomes, secs: started.elapsed().as_secs_f64(), per_replica })
}

/// One row; `ideal` for the edge is what n replicas could take of the offered load.
fn table_row(out: &mut String, n: usize, direct: &Run, edge: &Run, one_replica: f64, offered: f64) {
    let ideal_edge = offered.min(n as f64 * one_replica);
    let _ = writeln!(
        out,
        "| {n} | {:.1} | {:.0} | {:.1} % | {:.2} | {:.1} / {:.1} | {:.0} | {:.0} ({:.0} %) | {:.2} | {:.1} / {:.1} |",
        REPLICA_CPUS * n as f64,
        direct.rps * direct.good,
        100.0 * direct.good,
        direct.rps * direct.good / (one_replica * n as f64),
        direct.p50_ms,
        direct.p99_ms,
        offered,
        edge.origin_rps,
        100.0 * edge.from_origin,
        edge.origin_rps / ideal_edge,
        edge.p50_ms,
        edge.p99_ms,
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, model, out] = &args[..] else { bail!("usage: bench-scaleout <model-dir> <out.md>") };
    let model = std::fs::canonicalize(model).with_context(|| format!("{model}: not found (cargo xtask bench-scale --sizes 1e5 trains it)"))?;
    ensure!(image_exists(IMAGE_DEV), "{IMAGE_DEV} missing: cargo xtask image --debug");
    let q = Arc::new(Questions::load(&model)?);
    let items = serde_json::from_slice::<serde_json::Value>(&std::fs::read(model.join("manifest.json"))?)?["catalog_items"].as_u64().unwrap_or(0);
    let replicas: Vec<Replica> = (0..3).map(|i| start_replica(i, &model)).collect();
    let result = async {
        for r in &replicas {
            let s = wait_ready(r, Duration::from_secs(180)).await?;
            eprintln!("bench-scaleout: {} ready after {s:.1} s", r.name);
        }
        let mut rows: Vec<(usize, Run, Run)> = Vec::new();
        let mut offered = 0.0;
        for n in 1..=3 {
            let bases: Vec<String> = replicas[..n].iter().map(Replica::url).collect();
            // Warm every replica's model, then measure.
            let _ = drive(bases.clone(), &q, warm_up(), 10_000_000 * n).await;
            let direct = drive(bases.clone(), &q, closed_loop(n), 20_000_000 * n).await;
            if n == 1 {
                // 1.5 × what one replica serves: more than one can take, what two or three can.
                offered = (1.5 * direct.rps).round().min(MAX_EDGE_RATE);
            }
            let edge = start_edge(&replicas[..n]).await;
            let _ = drive(vec![edge.url()], &q, warm_up(), 30_000_000 * n).await;
            let through = drive(vec![edge.url()], &q, open_loop(offered), 40_000_000 * n).await;
            drop(edge);
            eprintln!(
                "bench-scaleout: {n} replica(s): direct {:.0} req/s p99 {:.1} ms; edge at {offered:.0} req/s offered: {:.0} answered by an origin, p99 {:.1} ms",
                direct.rps, direct.p99_ms, through.origin_rps, through.p99_ms
            );
            // Through the edge every request gets an answer (from an origin or the edge's own model);
            // direct, a saturated replica may answer 504 past its request deadline (counted in the table).
            ensure!(through.good == 1.0, "{n} replicas: only {:.2} % of the edge's answers were good", 100.0 * through.good);
            rows.push((n, direct, through));
        }
        let restart = rolling_restart(&replicas, &q).await?;
        anyhow::Ok((rows, restart, offered))
    }
    .await;
    for r in &replicas {
        let _ = podman_out(&["rm", "--force", &r.name]);
    }
    let (rows, restart, offered) = result?;
    let one_replica = rows[0].1.rps * rows[0].1.good;

    let mut md = String::new();
    let _ = writeln!(md, "# Scale-out and rolling restart\n");
    let _ = writeln!(
        md,
        "Measured {} on this project's machine (2 cores, 24 GiB) by `cargo xtask bench-scaleout` (`target/debug/bench-scaleout {} {out}`). \
         The origin replicas are the origin's image (`{IMAGE_DEV}`: the workspace's dev profile, optimized) under podman, each limited to **{REPLICA_CPUS} core** \
         (a CFS quota of {} µs per {CPU_PERIOD_US} µs period: what a Kubernetes CPU limit sets) with one inference worker and one async worker thread, all pinned to core 1; \
         the load generator (this binary) and `wrangler dev` (workerd, the edge) share what is left of both cores (≥ 1.7). The model is the synthetic {items}-item shop of `docs/scale.md` \
         (SASRec over the whole catalog, ONNX Runtime CPU), so the model, not HTTP, is the replicas' work. Each cell: {} s of load after a warm-up; every request a new \
         question (a parity case's history plus one head item picked by the request's number), so the edge's cache answers none.\n",
        measure::today(),
        model.display(),
        (REPLICA_CPUS * f64::from(CPU_PERIOD_US)).round(),
        WINDOW.as_secs(),
    );
    let _ = writeln!(
        md,
        "**Direct**: closed loop ({CONCURRENCY_PER_REPLICA} requests in flight per replica), request i to replica i mod n (a perfect client-side balancer): the replicas' own capacity, \
         counted as good answers (200, 10 items) per second — a saturated replica answers 504 past its 250 ms request deadline; *vs ideal* = good req/s ÷ \
         (n × the 1-replica good req/s). **Through the edge**: the same offered load at every n (open loop, 1.5 × the 1-replica capacity, at most {MAX_EDGE_RATE:.0} req/s) to the worker, \
         whose balancer spreads it over the replicas (one tier: P2C over peak-EWMA latency); what no replica answers within the deadline the edge answers from its own model. \
         *Answered by an origin* is the replicas' share; *vs ideal* = that ÷ min(offered, n × the 1-replica req/s). Every request through the edge got a 200 with 10 items.\n"
    );
    let _ = writeln!(
        md,
        "| replicas | CPU limit (cores) | direct good req/s | good | vs ideal | direct p50 / p99 ms | edge: offered req/s | answered by an origin, req/s | vs ideal | edge p50 / p99 ms |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for (n, direct, edge) in &rows {
        table_row(&mut md, *n, direct, edge, one_replica, offered);
    }
    let s = load::summarize(&restart.outcomes, 10);
    let failed = restart.outcomes.iter().filter(|o| !o.good(10)).count();
    let from_edge = restart.outcomes.iter().filter(|o| o.status == 200 && (o.source == "edge" || o.source == "popular")).count();
    let _ = writeln!(md, "\n## Rolling restart under load\n");
    let _ = writeln!(
        md,
        "Three replicas behind the edge, {RESTART_RATE:.0} requests/s (open loop) for {:.0} s. Each replica in turn: `podman stop --time 20` (SIGTERM; the image sets \
         `EDGEREC_SHUTDOWN_DELAY_MS=5000`: `/readyz` says 503 `draining` while it still answers, then it stops accepting and drains in-flight requests), `podman start`, \
         wait for `/readyz`, 3 s, next.\n",
        restart.secs
    );
    let _ = writeln!(md, "| replica | SIGTERM → exited | start → ready |");
    let _ = writeln!(md, "|---|---|---|");
    for (name, stopped, ready) in &restart.per_replica {
        let _ = writeln!(md, "| {name} | {stopped:.1} s | {ready:.1} s |");
    }
    let _ = writeln!(
        md,
        "\n**{failed} of {} requests failed** (not a 200 with 10 items); {from_edge} were answered by the edge's own model or list because no origin answered in time, \
         the rest by an origin or from the edge's cache of origin answers ({:?} by source); p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
        s.sent, s.sources, s.p50_ms, s.p99_ms, s.max_ms
    );
    std::fs::write(out, &md)?;
    println!("{md}");
    ensure!(failed == 0, "the rolling restart lost {failed} requests");
    Ok(())
}
