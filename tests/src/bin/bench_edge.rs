//! Edge measurements for `docs/performance.md` (run by `cargo xtask bench-edge`):
//!
//! - the edge model's compute per request in workerd against native tract on
//!   the same model and histories, for the worker's wasm build beside the
//!   builds it replaced or could use (`xtask::edge::WASM_VARIANTS`), timed from
//!   outside workerd (`edge/profile/worker.mjs`);
//! - where that time goes, stage by stage and node by node of the graph,
//!   natively and in V8 (node), from `edge_profile::profile`;
//! - the limits: upload size (`wrangler deploy --dry-run`) against 64 MiB,
//!   start-up (model checks, parse and plan) against 1 s, wasm memory against 128 MB;
//! - first-request and warm latency of the real worker through `wrangler dev`
//!   (edge-only, so the edge model answers).
//!
//! Usage: `bench-edge <model-dir> <docs/performance.md>`; `xtask` builds
//! `target/edge-profile/<build>/{node,web}` first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use e2e::measure::{server_timing, stats, timed_get, today, upload_size};
use e2e::{Edge, chaos, repo};
use edge_profile::{EdgeFiles, Profile};
use shared::ModelSet;
use shared::contract::ModelKind;

const MARKER: &str = "<!-- edge measurements: cargo xtask bench-edge -->";
/// Timed requests per kind through wrangler dev.
const HTTP_REQUESTS: usize = 400;
/// Passes over the histories for each profile.
const PROFILE_PASSES: usize = 20;
/// Requests per timed call into the workerd benchmark worker.
const WORKERD_REQUESTS: usize = 2000;
/// Timed calls per figure in workerd (the median is kept).
const WORKERD_REPEATS: usize = 7;
/// The wasm builds, as `cargo xtask bench-edge` makes them (worker's first).
const BUILDS: [(&str, &str); 3] = [
    ("worker", "the worker's build: `opt-level = 3`, `+simd128`"),
    ("scalar-size", "the build before: `opt-level = \"z\"`, no SIMD"),
    ("relaxed-simd", "`opt-level = 3`, `+simd128,+relaxed-simd`"),
];
/// Cloudflare's limits (changelog 2026-09-04): upload, isolate memory, start-up.
const LIMIT_UPLOAD_MIB: f64 = 64.0;
const LIMIT_MEMORY_MB: f64 = 128.0;
const LIMIT_STARTUP_MS: f64 = 1000.0;

/// One build measured in workerd.
struct InWorkerd {
    /// Per request, ms (`None`: the build did not run, with why).
    compute_ms: Result<f64, String>,
    /// `/load`: checks, parse, optimize and plan, as the client saw it, ms.
    startup_ms: f64,
    /// Wasm linear memory after load and every timed request, bytes.
    memory: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, out_md) = match args.as_slice() {
        [_, dir, out] => (PathBuf::from(dir), PathBuf::from(out)),
        _ => bail!("usage: bench-edge <model-dir> <performance.md>"),
    };
    let hist = chaos::histories(&dir);
    let hist_file = std::env::temp_dir().join(format!("edgerec-bench-edge-{}.json", std::process::id()));
    std::fs::write(&hist_file, serde_json::to_vec(&hist)?)?;
    let read = |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("reading {name} in {}", dir.display()));
    let (manifest, catalog, onnx) = (read("manifest.json")?, read("edge_catalog.json")?, read("edge.onnx")?);

    // Native tract, in this process: the same code as the wasm profile.
    let clock_origin = Instant::now();
    let files = EdgeFiles { manifest: &manifest, catalog: &catalog, onnx: &onnx };
    let native = edge_profile::profile(&files, &hist, PROFILE_PASSES, &mut || clock_origin.elapsed().as_secs_f64() * 1e3)?;

    // Each wasm build in V8 (node) stage by stage, and in workerd whole.
    let mut in_node = Vec::new();
    let mut in_workerd = Vec::new();
    for (build, _) in BUILDS {
        in_node.push(node_profile(build, &dir, &hist_file));
        in_workerd.push(workerd_compute(build, &dir, &hist_file).await?);
    }
    let _ = std::fs::remove_file(&hist_file);

    // The real worker through wrangler dev, edge-only.
    let (raw_kib, gz_kib, size_line) = upload_size()?;
    let spawn = Instant::now();
    let edge = Edge::start(&[("ORIGIN_URL", "")]).await;
    let startup_s = spawn.elapsed().as_secs_f64();
    let client = reqwest::Client::new();
    let url = |h: &[String]| format!("{}/v1/recommendations?history={}&k=10", edge.url(), h.join(","));
    let (first_ms, first_source) = timed_get(&client, &url(&hist[0])).await?;
    anyhow::ensure!(first_source == "edge", "first answer came from {first_source}");
    let mut model_ms = Vec::with_capacity(HTTP_REQUESTS);
    let mut popular_ms = Vec::with_capacity(HTTP_REQUESTS);
    let mut cache_ms = 0.0;
    for i in 0..HTTP_REQUESTS {
        let started = Instant::now();
        let r = client.get(url(&hist[i % hist.len()])).send().await?;
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let (source, timing) = (header("x-rec-source"), header("server-timing"));
        let _ = r.bytes().await?;
        model_ms.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(source == "edge", "answer {i} came from {source}");
        cache_ms += server_timing(&timing, "cache").unwrap_or(0.0) / HTTP_REQUESTS as f64;
        // Same request shape, unknown ids: the worker skips the model (popular list).
        let (ms, source) = timed_get(&client, &format!("{}/v1/recommendations?history=no-such-item-{i}&k=10", edge.url())).await?;
        anyhow::ensure!(source == "popular", "unknown-id answer {i} came from {source}");
        popular_ms.push(ms);
    }
    drop(edge);
    let (m, p) = (stats(model_ms), stats(popular_ms));

    let mean_len = hist.iter().map(Vec::len).sum::<usize>() as f64 / hist.len() as f64;
    let set = ModelSet::load_dir(&dir, &[ModelKind::Edge])?;
    let entry = set.manifest.model(ModelKind::Edge)?;
    let worker = &in_workerd[0];
    let worker_ms = worker.compute_ms.clone().map_err(anyhow::Error::msg).context("the worker's own build did not run in workerd")?;
    let ratio = worker_ms / native.request_ms;

    let mut md = format!(
        "{MARKER}\n## Edge worker\n\n\
Measured {date} on this project's machine (2 cores, x86_64) by `cargo xtask bench-edge` (it builds the wasm \
profile and a release `bench-edge`, then runs `target/release/bench-edge {dir} {out}`). Model: `{dir}` version `{version}`, edge model over \
{n} items (`edge.onnx`, {edge_kb:.0} KB). Requests: the {users} real test users' histories of `parity.json` \
(mean {mean_len:.0} items), `k = 10`.\n\n\
**Edge model compute in workerd: {worker_ms:.3} ms per request, {ratio:.2}× native tract (goal ≤ 2×).**\n\n\
### Compute per request, in workerd and natively\n\n\
One request here is what the worker computes for a model answer: ids to model indices, the model run, \
the seen filter and top k, the JSON answer (`edge_profile::answer`). In workerd it is timed from outside: \
`edge/profile/worker.mjs` runs {wr} requests per call under `wrangler dev`, and a call of {wr} is set against \
a call of none (median of {rep} each), so HTTP and the clock that does not advance inside a Worker fall out.\n\n\
| build | in workerd, ms | vs native | start-up in workerd, ms | wasm memory, MB |\n|---|---|---|---|---|\n\
| native tract (this machine, release build; AVX2/FMA kernels) | {native_ms:.3} | 1.00× | {native_start:.0} | - |\n",
        date = today(),
        out = out_md.display(),
        dir = dir.display(),
        version = set.manifest.version,
        n = entry.n_items,
        edge_kb = set.manifest.files.get("edge.onnx").map_or(0.0, |f| f.bytes as f64 / 1e3),
        users = hist.len(),
        wr = WORKERD_REQUESTS,
        rep = WORKERD_REPEATS,
        native_ms = native.request_ms,
        native_start = native.startup_ms,
    );
    for ((_, label), w) in BUILDS.iter().zip(&in_workerd) {
        match &w.compute_ms {
            Ok(ms) => md += &format!("| {label} | {ms:.3} | {:.2}× | {:.0} | {:.1} |\n", ms / native.request_ms, w.startup_ms, w.memory as f64 / 1e6),
            Err(e) => md += &format!("| {label} | did not run: {e} | - | - | - |\n"),
        }
    }

    md += "\n### Where the time goes, per request (mean ms)\n\n\
Each stage timed with a clock read around it (`performance.now()` in V8, `Instant` natively), graph nodes \
through tract's `run_plan_with_eval`; the clock reads add a little to each. V8 here is node's (the engine \
workerd embeds, an older release).\n\n";
    md += "| stage | native |";
    for (build, _) in BUILDS {
        md += &format!(" {build} (V8) | vs native |");
    }
    md += "\n|---|---|";
    md += &"---|---|".repeat(BUILDS.len());
    md += "\n";
    for s in &native.stages {
        md += &format!("| {} | {:.4} |", s.name, s.ms);
        for p in &in_node {
            match p.as_ref().ok().and_then(|p| p.stages.iter().find(|w| w.name == s.name)) {
                Some(w) => md += &format!(" {:.4} | {:.2}× |", w.ms, w.ms / s.ms.max(1e-6)),
                None => md += " - | - |",
            }
        }
        md += "\n";
    }
    md += &format!("| whole request, no clock reads inside | {:.4} |", native.request_ms);
    for p in &in_node {
        match p {
            Ok(p) => md += &format!(" {:.4} | {:.2}× |", p.request_ms, p.request_ms / native.request_ms),
            Err(_) => md += " - | - |",
        }
    }
    md += "\n";
    if let Ok(w) = &in_node[0] {
        let total: f64 = w.stages.iter().map(|s| s.ms).sum();
        let mut top: Vec<_> = w.stages.iter().collect();
        top.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        let named: Vec<String> = top.iter().take(3).map(|s| format!("{} {:.0} %", s.name, 100.0 * s.ms / total.max(1e-9))).collect();
        md += &format!(
            "\n- Largest stages of the worker's build in V8, as shares of the staged total: {}. The sort in tract's `Topk` (every item's \
score sorted to keep the top 600) is scalar code on both sides, which is why wasm is at par with native here: the matrix \
products, where native has 256-bit kernels against wasm's 128-bit, are a small share of this model.\n",
            named.join(", ")
        );
    }
    for ((build, _), p) in BUILDS.iter().zip(&in_node) {
        if let Err(e) = p {
            md += &format!("\n- {build} did not run in node: {e}\n");
        }
    }

    md += &format!(
        "\n### Limits (Cloudflare Workers, every plan, changelog 2026-09-04)\n\n\
| what | value | limit |\n|---|---|---|\n\
| worker upload, raw | {raw_mib:.2} MiB | {LIMIT_UPLOAD_MIB:.0} MiB |\n\
| worker upload, gzip | {gz_mib:.2} MiB | - |\n\
| start-up: embedded files checked (sha256), model parsed and planned, in workerd | {start_ms:.0} ms | {LIMIT_STARTUP_MS:.0} ms |\n\
| wasm memory after start-up and {timed} requests | {mem:.1} MB | {LIMIT_MEMORY_MB:.0} MB |\n\n\
- `wrangler deploy --dry-run` said: `{size_line}`.\n\
- Start-up is the workerd benchmark's `/load` as the client saw it (the worker does the same work in its \
`#[event(start)]`). The worker embeds the whole catalog's ids too (`catalog_ids.bin`), which adds to its \
memory: see `docs/scale.md` for 10⁶ items (its \"model compute in workerd\" column is the older end-to-end \
difference of HTTP means, which also counts the Cache API round trip; not re-measured here).\n\n\
### Through `wrangler dev` (the real worker, edge-only)\n\n\
| what | value |\n|---|---|\n\
| `wrangler dev` start to first `/healthz` | {startup_s:.1} s |\n\
| first recommendation after start | {first_ms:.1} ms |\n\
| warm, edge model answers: p50 / p99 / mean | {mp50:.2} / {mp99:.2} / {mmean:.2} ms |\n\
| of which the Cache API lookup (`Server-Timing: cache`, mean) | {cache_ms:.2} ms |\n\
| warm, popular answers (unknown ids: no cache lookup, no model run): p50 / p99 / mean | {pp50:.2} / {pp99:.2} / {pmean:.2} ms |\n\n\
- The gap between the two warm lines is more than the model: a model answer also reads the Cache API \
(in `wrangler dev` a loopback round trip to miniflare; in production the colo's cache) and maps \
{mean_len:.0} ids, where the popular answer has one unknown id and no lookup. The model's own share is the \
workerd figure above.\n",
        raw_mib = raw_kib / 1024.0,
        gz_mib = gz_kib / 1024.0,
        start_ms = worker.startup_ms,
        timed = WORKERD_REQUESTS * (WORKERD_REPEATS + 1),
        mem = worker.memory as f64 / 1e6,
        mp50 = m.p50,
        mp99 = m.p99,
        mmean = m.mean,
        pp50 = p.p50,
        pp99 = p.p99,
        pmean = p.mean,
    );

    let existing = std::fs::read_to_string(&out_md).unwrap_or_default();
    let head = existing.split(MARKER).next().unwrap_or_default().trim_end();
    std::fs::write(&out_md, format!("{head}\n\n{md}"))?;
    println!("{md}");
    Ok(())
}

/// The wasm profile of `build` in node's V8 (relaxed SIMD enabled, as node 20
/// still gates it behind a flag).
fn node_profile(build: &str, dir: &Path, hist_file: &Path) -> Result<Profile, String> {
    let pkg = repo().join("target/edge-profile").join(build).join("node");
    let out = Command::new("node")
        .arg("--experimental-wasm-relaxed-simd")
        .arg(repo().join("edge/profile/run.cjs"))
        .args([pkg.as_os_str(), dir.as_os_str(), hist_file.as_os_str()])
        .arg(PROFILE_PASSES.to_string())
        .current_dir(repo())
        .output()
        .map_err(|e| format!("starting node: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().find(|l| l.contains("Error")).unwrap_or("node failed").trim().to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("unreadable profile: {e}"))
}

/// `build`'s compute per request in workerd: `edge/profile/worker.mjs` under
/// `wrangler dev`, timed from outside.
async fn workerd_compute(build: &str, dir: &Path, hist_file: &Path) -> anyhow::Result<InWorkerd> {
    let root = repo();
    let current = root.join("target/edge-profile/current");
    let _ = std::fs::remove_dir_all(&current);
    std::fs::create_dir_all(&current)?;
    let web = root.join("target/edge-profile").join(build).join("web");
    for f in ["edge_profile.js", "edge_profile_bg.wasm"] {
        std::fs::copy(web.join(f), current.join(f)).with_context(|| format!("{} (run `cargo xtask bench-edge`)", web.join(f).display()))?;
    }
    let (edge, _) = Edge::start_config("edge/profile/wrangler.toml", &[]).await;
    let client = reqwest::Client::new();
    for (part, file) in [
        ("manifest", dir.join("manifest.json")),
        ("catalog", dir.join("edge_catalog.json")),
        ("onnx", dir.join("edge.onnx")),
        ("histories", hist_file.to_path_buf()),
    ] {
        let r = client.post(format!("{}/upload?part={part}", edge.url())).body(std::fs::read(&file)?).send().await?;
        anyhow::ensure!(r.status().is_success(), "upload of {part}: {}", r.status());
    }
    let started = Instant::now();
    let r = client.get(format!("{}/load", edge.url())).send().await?;
    let startup_ms = started.elapsed().as_secs_f64() * 1e3;
    let (ok, body) = (r.status().is_success(), r.text().await?);
    if !ok {
        let why = body.lines().find(|l| l.contains("Error")).unwrap_or(&body).trim().chars().take(160).collect();
        return Ok(InWorkerd { compute_ms: Err(why), startup_ms, memory: 0 });
    }
    let mut memory: u64 = body.trim().parse().unwrap_or(0);
    let mut call = async |n: usize| -> anyhow::Result<f64> {
        let started = Instant::now();
        let r = client.get(format!("{}/requests?n={n}", edge.url())).send().await?;
        anyhow::ensure!(r.status().is_success(), "/requests?n={n}: {}", r.status());
        let body: serde_json::Value = r.json().await?;
        memory = memory.max(body["memory"].as_u64().unwrap_or(0));
        Ok(started.elapsed().as_secs_f64() * 1e3)
    };
    call(WORKERD_REQUESTS).await?; // warm-up, and the JIT's tier-up
    let (mut full, mut empty) = (Vec::new(), Vec::new());
    for _ in 0..WORKERD_REPEATS {
        full.push(call(WORKERD_REQUESTS).await?);
        empty.push(call(0).await?);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let compute_ms = (median(full) - median(empty)) / WORKERD_REQUESTS as f64;
    drop(edge);
    Ok(InWorkerd { compute_ms: Ok(compute_ms), startup_ms, memory })
}
