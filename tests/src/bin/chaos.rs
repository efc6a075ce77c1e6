//! The full failover suite (`cargo xtask chaos`): every fault scenario through
//! the edge and through nginx, origin overload, and an origin soak; writes
//! `docs/reliability.md`.
//!
//! Usage: `chaos <docs/reliability.md> [soak seconds, default 600]`.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use e2e::chaos::{self, DEADLINE_MS, Front, Rig, Run, Sizing};
use e2e::load::{self, LoadSpec, Summary};
use e2e::procs::{Origin, free_port, repo, rss_kib};

fn row(front: &str, s: &Summary, extra: &str) -> String {
    format!(
        "| {front} | {} | {:.2} % | {} | {:.1} | {:.1} | {:.1} | {extra} |\n",
        s.sent,
        100.0 * s.good_share,
        s.source_shares(),
        s.p50_ms,
        s.p99_ms,
        s.max_ms
    )
}

fn goals(ours: &Run, edge_only: &Summary, sizing: Sizing) -> String {
    let mut notes = Vec::new();
    let worst = chaos::worst_server_total(&ours.outcomes);
    if ["down", "refused", "blackhole", "slow", "jitter", "http-500", "http-503", "truncated"].contains(&ours.scenario) {
        notes.push(format!("longest wait at the edge {worst:.0} ms (goal ≤ {} ms)", DEADLINE_MS + 20));
        if ours.scenario != "jitter" {
            let open = chaos::second_half(ours);
            notes.push(format!(
                "breaker open: p99 {:.1} ms vs edge-only {:.1} ms ({:+.1} ms; goal ≤ +5 ms)",
                open.p99_ms,
                edge_only.p99_ms,
                open.p99_ms - edge_only.p99_ms
            ));
        }
    }
    if let Some(ms) = ours.failback_ms() {
        notes.push(format!("back on the origin {ms:.0} ms after it recovered (goal ≤ open period {} ms + one probe)", sizing.open_ms));
    }
    if ours.scenario == "model-swap" {
        notes.push(format!("versions switched cleanly: {}", if ours.versions_monotone() { "yes" } else { "NO" }));
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
    let edge_only = rig.edge_only_baseline().await;
    let mut doc = String::new();
    let date = std::process::Command::new("date").args(["-u", "+%Y-%m-%d"]).output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())?;
    writeln!(
        doc,
        "# Reliability under faults\n\nMeasured {date} on this project's machine (2 cores, x86_64) by `cargo xtask chaos` \
(it runs `target/debug/chaos {out} {soak_secs}`; the short version of the same suite, a few seconds per scenario with \
the goals asserted, is `tests/e2e/chaos_short.rs` in `cargo xtask test`).\n\n\
Set-up, all on loopback: the origin (`origin serve --backend tract`, MovieLens full model) behind a fault-injecting \
proxy (`tests/src/fault_proxy.rs`); in front of the proxy either **edge** — the worker under `wrangler dev` (workerd), \
origin deadline {DEADLINE_MS} ms, breaker after 5 failures, open {open} ms — or **nginx** {nginx} — a caching reverse \
proxy with `proxy_cache_use_stale error timeout http_500 http_502 http_503 http_504 updating`, \
`proxy_next_upstream error timeout http_500 http_503`, the same {DEADLINE_MS} ms timeouts, 60 s cache validity \
(`tests/src/nginx.rs`). Each scenario sends the same {n} requests through one front, then the other — open loop at {rate} requests/s for \
{secs} s, at most {c} in flight (bounded Rust client, `tests/src/load.rs`) — under the same fault schedule; a constant fault starts after the first quarter of healthy traffic, so it meets caches warmed as in production. Queries: 30 % \
from a hot set of 20 pages, 70 % distinct prefixes of 100 real test users' histories, `k = 10`, each run's queries \
made distinct per run by a run-specific number of repeats of the newest item (duplicates are part of the edge's cache key; junk ids no longer are), so no cache is warm from an earlier run (hot pages repeat within a run).\n\n\
*good* = HTTP 200 with exactly 10 items. Sources: the edge's `x-rec-source`; nginx's `X-Cache-Status` mapped to \
origin (MISS/EXPIRED), cache (HIT/UPDATING), stale-cache (STALE), `-` (no answer).\n\n\
Edge-only baseline (worker with no origin, same load): {eo} requests, p50 {eo50:.1} ms, p99 {eo99:.1} ms.\n",
        open = sizing.open_ms,
        nginx = String::from_utf8_lossy(&std::process::Command::new("/usr/sbin/nginx").arg("-v").output()?.stderr).trim().replace("nginx version: ", "("),
        secs = sizing.duration.as_secs(),
        n = (sizing.rate_per_s * sizing.duration.as_secs_f64()) as usize,
        rate = sizing.rate_per_s,
        c = sizing.concurrency,
        eo = edge_only.sent,
        eo50 = edge_only.p50_ms,
        eo99 = edge_only.p99_ms,
    )?;
    let mut summary_rows = String::new();
    for scenario in chaos::scenarios(sizing) {
        eprintln!("chaos: {} …", scenario.name);
        let ours = rig.run(&scenario, Front::Edge).await;
        let peer = rig.run(&scenario, Front::Nginx).await;
        writeln!(doc, "## {} — {}\n", scenario.name, scenario.what)?;
        doc.push_str("| front | requests | good | sources | p50 ms | p99 ms | max ms | notes |\n|---|---|---|---|---|---|---|---|\n");
        doc.push_str(&row("edge", &ours.summary, &goals(&ours, &edge_only, sizing)));
        let peer_note = peer.failback_ms().map(|ms| format!("back on the origin after {ms:.0} ms")).unwrap_or_default();
        doc.push_str(&row("nginx", &peer.summary, &peer_note));
        doc.push('\n');
        writeln!(
            summary_rows,
            "| {} | {:.2} % | {:.2} % | {:.1} | {:.1} |",
            scenario.name,
            100.0 * ours.summary.good_share,
            100.0 * peer.summary.good_share,
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
        &format!("\n## Summary\n\n| scenario | edge good | nginx good | edge p99 ms | nginx p99 ms |\n|---|---|---|---|---|\n{summary_rows}\n## "),
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
