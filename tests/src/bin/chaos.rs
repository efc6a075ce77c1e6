//! The full failover suite (`cargo xtask chaos`): every fault scenario through
//! the edge and through nginx, origin overload, and an origin soak; writes
//! `docs/reliability.md`.
//!
//! Usage: `chaos <docs/reliability.md> [soak seconds, default 600]`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use e2e::chaos::{self, A_FAULTS, DEADLINE_MS, Front, HEDGE_BUDGET_PCT, Rig, Run, Sizing};
use e2e::load::{self, LoadSpec, Summary};
use e2e::procs::{Origin, free_port, repo, rss_kib};

fn row(front: &str, run: &Run, extra: &str) -> String {
    let s = &run.summary;
    format!(
        "| {front} | {} | {:.2} % | {:.2} % | {:.0} % | {:.3} | {} | {:.1} | {:.1} | {:.1} | {extra} |\n",
        s.sent,
        100.0 * s.good_share,
        100.0 * run.full_model_share(),
        100.0 * run.share_from("b", 0.0),
        run.quality,
        s.source_shares(),
        s.p50_ms,
        s.p99_ms,
        s.max_ms
    )
}

fn goals(ours: &Run, edge_only: &Summary, healthy_p99: f64, sizing: Sizing) -> String {
    let mut notes = Vec::new();
    let worst = chaos::worst_server_total(&ours.outcomes);
    if A_FAULTS.contains(&ours.scenario) {
        notes.push(format!("from the full model {:.2} % (goal ≥ 99 %)", 100.0 * ours.full_model_share()));
        notes.push(format!("longest wait at the edge {worst:.0} ms (goal ≤ {} ms)", DEADLINE_MS + 20));
    }
    if let Some(h) = ours.hedging
        && h.hedges > 0
    {
        notes.push(format!(
            "hedged {} of {} origin requests ({:.1} %, budget {HEDGE_BUDGET_PCT} %), {} won, {} over budget",
            h.hedges,
            h.requests,
            h.extra_load_pct(),
            h.won,
            h.over_budget
        ));
    }
    match ours.scenario {
        "tail-slow" => {
            notes.push(format!("the edge's own p99 (Server-Timing) {:.1} ms vs healthy {healthy_p99:.1} ms (goal ≤ +20 ms)", chaos::server_p99(&ours.outcomes)))
        }
        "both-down" => {
            let open = load::summarize(&ours.outcomes[ours.outcomes.len() * 3 / 4..], chaos::K);
            notes.push(format!("breakers open: p99 {:.1} ms vs edge-only {:.1} ms ({:+.1} ms)", open.p99_ms, edge_only.p99_ms, open.p99_ms - edge_only.p99_ms));
        }
        "recovery" => {
            if let Some(ms) = ours.failback_ms() {
                notes.push(format!("first answer from A {ms:.0} ms after it recovered"));
            }
            let at = ours.healthy_at_ms.unwrap_or(0.0) + (sizing.open_ms + DEADLINE_MS) as f64;
            notes.push(format!(
                "{:.1} % on A from one open period ({} ms) plus one probe after it recovered (goal ≥ 95 %)",
                100.0 * ours.share_from("a", at),
                sizing.open_ms
            ));
        }
        "model-swap" => notes.push(format!(
            "A's versions switched cleanly: {}; /healthz showed the mismatch: {}",
            if ours.versions_monotone() { "yes" } else { "NO" },
            if ours.mismatch_seen == Some(true) { "yes" } else { "NO" }
        )),
        "replica-slow" => {
            notes.push(format!("{:.1} % on the fast replica B once A slowed (goal ≥ 80 %)", 100.0 * ours.share_from("b", ours.fault_at_ms + 500.0)))
        }
        _ => {}
    }
    notes.join("; ")
}

/// Origin at moderate load for `secs`, RSS sampled every second.
async fn soak(secs: u64) -> (Summary, Vec<(f64, u64)>) {
    let models = repo().join("models/movielens");
    let origin = Origin::start_with(free_port(), &models, &[]).await;
    let hist = std::sync::Arc::new(chaos::histories(&models));
    let base = origin.url();
    let url = move |i: usize| format!("{base}/v1/recommendations?{}", chaos::query(&hist, i, ""));
    // Moderate: 4 clients, each pausing 5 ms between requests.
    let spec = LoadSpec {
        requests: usize::MAX,
        concurrency: 4,
        max_duration: Duration::from_secs(secs),
        timeout: Duration::from_secs(5),
        think: Duration::from_millis(5),
        rate_per_s: None,
    };
    let pid = origin.pid();
    let started = Instant::now();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        while started.elapsed() < Duration::from_secs(secs) {
            if let Some(r) = rss_kib(pid) {
                samples.push((started.elapsed().as_secs_f64(), r));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        samples
    });
    let outcomes = load::run(url, spec, "x-rec-source").await;
    let samples = sampler.await.expect("sampler");
    (load::summarize(&outcomes, chaos::K), samples)
}

/// Least-squares slope of RSS over time, KiB per minute.
fn slope_kib_per_min(samples: &[(f64, u64)]) -> f64 {
    let n = samples.len() as f64;
    let (mx, my) = (samples.iter().map(|s| s.0).sum::<f64>() / n, samples.iter().map(|s| s.1 as f64).sum::<f64>() / n);
    let cov: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 as f64 - my)).sum();
    let var: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var * 60.0 }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let out = args.get(1).cloned().unwrap_or_else(|| "docs/reliability.md".into());
    let soak_secs: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(600);
    let sizing = Sizing::full();
    let mut rig = Rig::start(sizing).await;
    let (edge_only, edge_only_quality) = rig.edge_only_baseline().await;
    let mut doc = String::new();
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())?;
    writeln!(
        doc,
        "# Reliability under faults\n\nMeasured {date} on this project's machine (2 cores, x86_64) by `cargo xtask chaos` \
(it runs `target/debug/chaos {out} {soak_secs}`; the short version of the same suite, a few seconds per scenario with \
the goals asserted, is `tests/e2e/chaos_short.rs` in `cargo xtask test`).\n\n\
Set-up, all on loopback: two regions, **A** and **B**, each a real origin (`origin serve --backend tract`, MovieLens \
full model) behind its own fault-injecting proxy (`tests/src/fault_proxy.rs`). In front of the proxies either **edge** — \
the worker under `wrangler dev` (workerd) with `ORIGINS` = A (priority 1), B (priority 2); deadline {DEADLINE_MS} ms, \
A's share of it {try_ms} ms while B could still be asked, hedging at the origin's p90 (at least 10 ms) within a \
{HEDGE_BUDGET_PCT} % budget, breaker (ejection) after 5 failures, open {open} ms — or **nginx** {nginx} — \
`upstream {{ server A; server B backup; }}` (`max_fails=5 fail_timeout=30s`), `proxy_next_upstream error timeout http_500 http_503`, \
the same {DEADLINE_MS} ms timeouts, `proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504 updating`, \
60 s cache validity (`tests/src/nginx.rs`). The replica scenario puts A and B in one tier instead (edge: both priority 1; \
nginx: two equal servers). Each scenario sends the same {n} requests through one front, then the other — open loop at \
{rate} requests/s for {secs} s, at most {c} in flight (bounded Rust client, `tests/src/load.rs`) — under the same fault \
schedule; a constant fault starts after the first quarter of healthy traffic, so it meets caches warmed as in production. \
Queries: 30 % from a hot set of 20 pages, 70 % distinct prefixes of 100 real test users' histories, `k = 10`, each \
run's queries made distinct per run by a run-specific number of repeats of the newest item (duplicates are part of the \
edge's cache key), so no cache is warm from an earlier run (hot pages repeat within a run).\n\n\
Columns: *good* = HTTP 200 with exactly 10 items; *full model* = good answers from an origin or from a cache of origin \
answers (the edge's `cache`/`stale-cache`, nginx's HIT/STALE); *from B* = answers that B served (`x-rec-origin`, nginx's \
`$upstream_addr`); *NDCG@10* = mean over all requests of the served list against the held-out test items of the user \
behind the query (MovieLens' last 20 % per user, as the trainer cuts it; a request without a valid answer scores 0), \
so \"answered\" and \"answered well\" are both on the table. Sources: the edge's `x-rec-source`; nginx's \
`X-Cache-Status` mapped to origin (MISS/EXPIRED), cache (HIT/UPDATING), stale-cache (STALE), `-` (no answer).\n\n\
Edge-only baseline (worker with no origin, same load): {eo} requests, p50 {eo50:.1} ms, p99 {eo99:.1} ms, NDCG@10 {eoq:.3}.\n",
        open = sizing.open_ms,
        try_ms = DEADLINE_MS / 2,
        nginx = String::from_utf8_lossy(&std::process::Command::new("/usr/sbin/nginx").arg("-v").output()?.stderr).trim().replace("nginx version: ", "("),
        secs = sizing.duration.as_secs(),
        n = (sizing.rate_per_s * sizing.duration.as_secs_f64()) as usize,
        rate = sizing.rate_per_s,
        c = sizing.concurrency,
        eo = edge_only.sent,
        eo50 = edge_only.p50_ms,
        eo99 = edge_only.p99_ms,
        eoq = edge_only_quality,
    )?;
    let mut summary_rows = String::new();
    let mut healthy_p99 = f64::NAN;
    for scenario in chaos::scenarios(sizing) {
        eprintln!("chaos: {} …", scenario.name);
        let ours = rig.run(&scenario, Front::Edge).await;
        let peer = rig.run(&scenario, Front::Nginx).await;
        if scenario.name == "baseline" {
            healthy_p99 = chaos::server_p99(&ours.outcomes);
        }
        writeln!(doc, "## {} — {}\n", scenario.name, scenario.what)?;
        doc.push_str("| front | requests | good | full model | from B | NDCG@10 | sources | p50 ms | p99 ms | max ms | notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        doc.push_str(&row("edge", &ours, &goals(&ours, &edge_only, healthy_p99, sizing)));
        let peer_note = match scenario.name {
            "recovery" => peer.failback_ms().map(|ms| format!("first answer from A {ms:.0} ms after it recovered")).unwrap_or_default(),
            "replica-slow" => format!("{:.1} % on the fast replica B once A slowed", 100.0 * peer.share_from("b", peer.fault_at_ms + 500.0)),
            _ => String::new(),
        };
        doc.push_str(&row("nginx", &peer, &peer_note));
        doc.push('\n');
        writeln!(
            summary_rows,
            "| {} | {:.2} % | {:.2} % | {:.2} % | {:.2} % | {:.3} | {:.3} | {:.1} | {:.1} |",
            scenario.name,
            100.0 * ours.summary.good_share,
            100.0 * peer.summary.good_share,
            100.0 * ours.full_model_share(),
            100.0 * peer.full_model_share(),
            ours.quality,
            peer.quality,
            ours.summary.p99_ms,
            peer.summary.p99_ms
        )?;
    }
    drop(rig);

    eprintln!("chaos: overload …");
    let o = chaos::overload(Duration::from_secs(10), 4).await;
    writeln!(
        doc,
        "## Origin overload — {:.0}× its capacity straight at the origin\n\n\
Capacity measured first: {:.0} requests/s closed-loop at concurrency 8. Then {} clients in flight (4× the \
`--max-concurrency 32` the origin admits) for 10 s.\n\n\
| requests | statuses | p99 of 503s ms | p99 of 200s ms | RSS before / peak / after / after a second burst MiB | answers after the load |\n|---|---|---|---|---|---|\n\
| {} | {:?} | {:.1} | {:.1} | {:.0} / {:.0} / {:.0} / {:.0} | {} |\n",
        4,
        o.capacity_rps,
        32 * 4,
        o.overload.sent,
        o.overload.statuses,
        o.shed_p99_ms,
        o.accepted_p99_ms,
        o.rss_kib.0 as f64 / 1024.0,
        o.rss_kib.1 as f64 / 1024.0,
        o.rss_kib.2 as f64 / 1024.0,
        o.rss_kib.3 as f64 / 1024.0,
        if o.recovered { "yes" } else { "no" },
    )?;

    if soak_secs > 0 {
        eprintln!("chaos: soak {soak_secs} s …");
        let (s, samples) = soak(soak_secs).await;
        let first = samples.first().map_or(0, |x| x.1);
        let last = samples.last().map_or(0, |x| x.1);
        let max = samples.iter().map(|x| x.1).max().unwrap_or(0);
        let second_half = &samples[samples.len() / 2..];
        // RSS once a minute (or ten times for a short soak), to tell warm-up from a leak.
        let step = (samples.len() / 10).max(1);
        let series: Vec<String> = samples.iter().step_by(step).map(|(t, r)| format!("{t:.0} s: {:.1}", *r as f64 / 1024.0)).collect();
        writeln!(
            doc,
            "## Soak — origin at moderate load for {soak_secs} s\n\n4 clients, 5 ms pause between requests, RSS sampled every second.\n\n\
| requests | good | p50 ms | p99 ms | RSS first / max / last MiB | RSS trend, whole run | RSS trend, second half |\n|---|---|---|---|---|---|---|\n\
| {} | {:.2} % | {:.1} | {:.1} | {:.1} / {:.1} / {:.1} | {:+.1} KiB/min | {:+.1} KiB/min |\n\nRSS over time (MiB): {}.\n",
            s.sent,
            100.0 * s.good_share,
            s.p50_ms,
            s.p99_ms,
            first as f64 / 1024.0,
            max as f64 / 1024.0,
            last as f64 / 1024.0,
            slope_kib_per_min(&samples),
            slope_kib_per_min(second_half),
            series.join(", "),
        )?;
    }
    let doc = doc.replacen(
        "\n## ",
        &format!(
            "\n## Summary\n\n| scenario | edge good | nginx good | edge full model | nginx full model | edge NDCG@10 | nginx NDCG@10 | edge p99 ms | nginx p99 ms |\n|---|---|---|---|---|---|---|---|---|\n{summary_rows}\n## "
        ),
        1,
    );
    // Hand-written findings below the marker survive a new run.
    let kept = std::fs::read_to_string(&out).ok().and_then(|old| old.find(NOTES_MARKER).map(|at| old[at..].to_string()));
    let doc = match kept {
        Some(notes) => format!("{doc}\n{notes}"),
        None => doc,
    };
    std::fs::write(&out, &doc)?;
    println!("{doc}");
    Ok(())
}

/// Where the measured part of the report ends and the kept notes begin.
const NOTES_MARKER: &str = "<!-- notes below are kept across runs of cargo xtask chaos -->";
