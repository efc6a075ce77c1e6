//! The serving half of the scale benchmark (`cargo xtask bench-scale`,
//! `docs/scale.md`).
//!
//! ```text
//! bench-scale measure <model-dir>              # origin and worker on one trained size → <model-dir>/serving.json
//! bench-scale report <scale.md> <model-dir>…  # the table from each size's report.json and serving.json
//! ```
//!
//! `measure` needs the worker built with this model directory embedded
//! (`EDGEREC_MODEL_DIR=<model-dir> cargo xtask build-edge`; xtask does it).
//! Origin: ONNX Runtime on the CPU, `k = 10`, the parity users' real
//! histories, closed loop at concurrency 1 and 32 over loopback keep-alive.
//! Worker: upload size (`wrangler deploy --dry-run`), the first `/healthz`
//! after `wrangler dev` starts, its coverage figures, and the edge model's
//! compute per request in workerd (mean model answer − mean popular answer)
//! beside native tract on the same histories.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use e2e::measure::{native_recommend_ms, stats, timed_get, today, upload_size};
use e2e::{Edge, Origin, chaos, load, procs};
use serde_json::{Value, json};
use shared::ModelSet;
use shared::catalog::{CATALOG_IDS_FILE, CatalogIds, EDGE_CATALOG_FILE};
use shared::contract::ModelKind;

/// Requests per origin load level.
const ORIGIN_REQUESTS: [(usize, usize); 2] = [(1, 400), (32, 3_000)];
/// Timed requests per kind through wrangler dev.
const EDGE_REQUESTS: usize = 200;
/// Passes over the histories for native tract.
const NATIVE_PASSES: usize = 10;
/// Cloudflare Workers limits (2026): bundle after the 2026-09-04 change, isolate memory, start-up.
const BUNDLE_LIMIT_MIB: f64 = 64.0;
const STARTUP_LIMIT_MS: f64 = 1_000.0;

fn history_url(base: &str, h: &[String]) -> String {
    format!("{base}/v1/recommendations?history={}&k=10", h.join(","))
}

async fn measure_origin(dir: &Path, hist: &[Vec<String>]) -> anyhow::Result<Value> {
    let Some(lib) = procs::ort_lib() else { bail!("no libonnxruntime.so: run `cargo xtask setup`") };
    let lib = lib.to_string_lossy().to_string();
    let port = procs::free_port();
    let started = Instant::now();
    let origin = Origin::start_with(port, dir, &["--backend", "ort-cpu", "--ort-lib", &lib]).await;
    let ready_s = started.elapsed().as_secs_f64();
    let client = reqwest::Client::new();
    for h in hist.iter().take(20) {
        let (_, source) = timed_get(&client, &history_url(&origin.url(), h)).await?;
        anyhow::ensure!(source.is_empty() || source == "origin", "warm-up answer from {source}");
    }
    let mut levels = Vec::new();
    for (concurrency, requests) in ORIGIN_REQUESTS {
        let (base, hist) = (origin.url(), hist.to_vec());
        let spec = load::LoadSpec {
            requests,
            concurrency,
            max_duration: Duration::from_secs(120),
            timeout: Duration::from_secs(10),
            think: Duration::ZERO,
            rate_per_s: None,
        };
        let started = Instant::now();
        let outcomes = load::run(move |i| history_url(&base, &hist[i % hist.len()]), spec, "x-rec-source").await;
        let secs = started.elapsed().as_secs_f64();
        let s = load::summarize(&outcomes, 10);
        anyhow::ensure!(s.good_share == 1.0, "origin at concurrency {concurrency}: only {:.1} % good answers ({:?})", 100.0 * s.good_share, s.statuses);
        levels.push(json!({ "concurrency": concurrency, "requests": s.sent, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms, "rps": s.sent as f64 / secs }));
    }
    let rss_mib = origin.rss_kib().map(|k| k as f64 / 1024.0);
    Ok(json!({ "backend": "ort-cpu", "ready_s": ready_s, "rss_mib": rss_mib, "levels": levels }))
}

async fn measure_edge(dir: &Path, hist: &[Vec<String>]) -> anyhow::Result<Value> {
    // What the worker does at start-up, natively: verify and parse the embedded files, plan the model.
    let load_started = Instant::now();
    let set = ModelSet::load_with_catalog(|name| std::fs::read(dir.join(name)), &[ModelKind::Edge], EDGE_CATALOG_FILE)?;
    let ids_bytes = std::fs::read(dir.join(CATALOG_IDS_FILE))?;
    set.manifest.verify(CATALOG_IDS_FILE, &ids_bytes)?;
    let ids = CatalogIds::from_bytes(&ids_bytes)?;
    let native_load_ms = load_started.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(ids.len() == set.manifest.catalog_items, "catalog_ids.bin has {} ids, the manifest {}", ids.len(), set.manifest.catalog_items);
    let model = &set.models[0];
    let native_ms = native_recommend_ms(model, hist, NATIVE_PASSES)?;
    let (raw_kib, gz_kib, _) = upload_size()?;
    let spawned = Instant::now();
    let (edge, first_healthz) = Edge::start_timed(&[("ORIGIN_URL", "")]).await;
    let ready_s = spawned.elapsed().as_secs_f64();
    let client = reqwest::Client::new();
    let health: Value = client.get(format!("{}/healthz", edge.url())).send().await?.json().await?;
    anyhow::ensure!(health["status"] == "ok", "worker /healthz: {health}");
    let (first_ms, first_source) = timed_get(&client, &history_url(&edge.url(), &hist[0])).await?;
    anyhow::ensure!(first_source == "edge" || first_source == "popular", "first answer came from {first_source}");
    let (mut model_ms, mut popular_ms, mut edge_answers) = (Vec::new(), Vec::new(), 0);
    for i in 0..EDGE_REQUESTS {
        let (ms, source) = timed_get(&client, &history_url(&edge.url(), &hist[i % hist.len()])).await?;
        edge_answers += usize::from(source == "edge");
        model_ms.push(ms);
        let (ms, source) = timed_get(&client, &format!("{}/v1/recommendations?history=no-such-item-{i}&k=10", edge.url())).await?;
        anyhow::ensure!(source == "popular", "unknown-id answer {i} came from {source}");
        popular_ms.push(ms);
    }
    let workerd_rss_mib = workerd_rss_kib().map(|k| k as f64 / 1024.0);
    drop(edge);
    let (m, p) = (stats(model_ms), stats(popular_ms));
    Ok(json!({
        "upload_raw_kib": raw_kib,
        "upload_gzip_kib": gz_kib,
        "wrangler_ready_s": ready_s,
        "first_healthz_ms": first_healthz.as_secs_f64() * 1e3,
        "first_recommendation_ms": first_ms,
        "healthz_model": health["model"],
        "edge_answer_share": edge_answers as f64 / EDGE_REQUESTS as f64,
        "workerd_rss_mib": workerd_rss_mib,
        "warm_p50_ms": m.p50,
        "warm_p99_ms": m.p99,
        "workerd_compute_ms": m.mean - p.mean,
        "native_compute_ms": native_ms,
        "native_load_ms": native_load_ms,
    }))
}

/// Resident memory of the largest `workerd` process (the runtime with the
/// worker's isolate in it: an upper bound of the isolate's memory), KiB.
fn workerd_rss_kib() -> Option<u64> {
    let out = std::process::Command::new("pgrep").args(["-f", "workerd"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|pid| procs::rss_kib(pid.trim().parse().ok()?)).max()
}

async fn measure(dir: &Path) -> anyhow::Result<()> {
    let hist = chaos::histories(dir);
    anyhow::ensure!(!hist.is_empty(), "{}: parity.json has no histories", dir.display());
    let origin = measure_origin(dir, &hist).await.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    eprintln!("bench-scale: origin {origin}");
    let edge = measure_edge(dir, &hist).await.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    eprintln!("bench-scale: edge {edge}");
    std::fs::write(dir.join("serving.json"), serde_json::to_vec_pretty(&json!({ "origin": origin, "edge": edge }))?)?;
    Ok(())
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1u64 << 20) as f64)
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// One size's rows: training, quality, origin, edge, and the report's notes
/// as bullets (why EASE was not trained, how many users were scored); or why it has none.
fn size_rows(dir: &Path) -> [String; 5] {
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let failed = |why: String| [format!("| {name} | {why} | | | | | |"), String::new(), String::new(), String::new(), String::new()];
    if let Ok(why) = std::fs::read_to_string(dir.join("FAILED")) {
        return failed(format!("did not train: {}", why.trim()));
    }
    let (Some(report), Some(manifest)) = (read_json(&dir.join("report.json")), read_json(&dir.join("manifest.json"))) else {
        return failed("no report.json / manifest.json".into());
    };
    let serving = read_json(&dir.join("serving.json")).unwrap_or(Value::Null);
    let rows = report["rows"].as_array().cloned().unwrap_or_default();
    let ndcg =
        |label: &str| rows.iter().find(|r| r["model"].as_str().is_some_and(|m| m.contains(label))).map_or("–".into(), |r| f(&r["metrics"]["ndcg_at_20"], 4));
    let file_bytes = |file: &str| manifest["files"][file]["bytes"].as_f64().unwrap_or(0.0);
    let cov = &report["edge_coverage"];
    let arch = manifest["models"]["full"]["params"]["architecture"].as_str().unwrap_or("?").to_string();
    let train = format!(
        "| {name} | {items} | {events} | {users} | {secs:.0} s ({min:.1} min) | {rss} | {arch} |",
        items = report["log_items"],
        events = report["log_interactions"],
        users = report["log_users"],
        secs = report["train_seconds"].as_f64().unwrap_or(0.0),
        min = report["train_seconds"].as_f64().unwrap_or(0.0) / 60.0,
        rss = report["peak_rss_bytes"].as_f64().map_or("–".into(), |b| format!("{:.2} GiB", b / (1u64 << 30) as f64)),
    );
    let quality = format!(
        "| {name} | {full} | {edge} | {popular} | {items} of {catalog} ({share:.1} % of interactions) | {full_b} | {edge_b} |",
        full = ndcg("served"),
        edge = ndcg("edge"),
        popular = ndcg("most popular"),
        items = cov["items"],
        catalog = cov["catalog_items"],
        share = 100.0 * cov["interaction_share"].as_f64().unwrap_or(0.0),
        full_b = mib(file_bytes("full.onnx")),
        edge_b = mib(file_bytes("edge.onnx")),
    );
    let o = &serving["origin"];
    let origin = match o["levels"].as_array() {
        Some(levels) => {
            let l = |c: u64, key: &str, d: usize| levels.iter().find(|x| x["concurrency"] == c).map_or("–".into(), |x| f(&x[key], d));
            format!(
                "| {name} | {} / {} | {} / {} | {} | {} | {} MiB |",
                l(1, "p50_ms", 2),
                l(1, "p99_ms", 2),
                l(32, "p50_ms", 2),
                l(32, "p99_ms", 2),
                l(1, "rps", 0),
                l(32, "rps", 0),
                f(&o["rss_mib"], 0)
            )
        }
        None => format!("| {name} | not measured: {} | | | | |", o["error"].as_str().unwrap_or("no serving.json")),
    };
    let e = &serving["edge"];
    let edge = if e["upload_raw_kib"].is_number() {
        format!(
            "| {name} | {:.1} MiB ({:.1} MiB gzip) | {} ms | {} ms | {} MiB | {} / {} ms | {} ms ({:.1}× native) | {} ms | {}, {} |",
            e["upload_raw_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            e["upload_gzip_kib"].as_f64().unwrap_or(0.0) / 1024.0,
            f(&e["first_healthz_ms"], 0),
            f(&e["native_load_ms"], 0),
            f(&e["workerd_rss_mib"], 0),
            f(&e["warm_p50_ms"], 2),
            f(&e["warm_p99_ms"], 2),
            f(&e["workerd_compute_ms"], 2),
            e["workerd_compute_ms"].as_f64().unwrap_or(0.0) / e["native_compute_ms"].as_f64().unwrap_or(f64::NAN),
            f(&e["native_compute_ms"], 3),
            e["healthz_model"]["n_items"],
            e["healthz_model"]["catalog_items"],
        )
    } else {
        format!("| {name} | not measured: {} | | | | | | | |", e["error"].as_str().unwrap_or("no serving.json"))
    };
    let notes = report["notes"].as_array().map(|n| n.iter().filter_map(Value::as_str).map(|n| format!("- {name}: {n}")).collect::<Vec<_>>().join("\n"));
    [train, quality, origin, edge, notes.unwrap_or_default()]
}

fn report(out: &Path, dirs: &[PathBuf]) -> anyhow::Result<()> {
    let rows: Vec<[String; 5]> = dirs.iter().map(|d| size_rows(d)).collect();
    let col = |i: usize| rows.iter().map(|r| r[i].clone()).filter(|r| !r.is_empty()).collect::<Vec<_>>().join("\n");
    let doc = format!(
        "# Scale: 10⁴ to 10⁶ items\n\n\
Measured {date} on this project's machine (2 cores, 24 GiB, no GPU) by `cargo xtask bench-scale` \
(sizes: `--sizes 1e4,1e5,1e6`). It generates each synthetic shop log (`trainer generate`, seed 7: Zipf(0.9) \
popularity, topics of ~200 items, item chains; see `trainer/src/synthetic.rs`), trains it with the default \
settings (`trainer train --format csv`), serves the result with the origin (ONNX Runtime, CPU) and the worker \
(built with that model directory, `wrangler dev`), and runs `target/debug/bench-scale report docs/scale.md …`.\n\n\
Goals on this machine: 10⁶ items and 10⁷ events train in ≤ 60 min with peak RSS ≤ 16 GiB; the origin answers \
a 10⁶-item catalog at p50 ≤ 20 ms on CPU; the worker fits Cloudflare's limits at every size \
({BUNDLE_LIMIT_MIB:.0} MiB bundle, 128 MB isolate memory, {STARTUP_LIMIT_MS:.0} ms start-up).\n\n\
## Training\n\n\
| size | items in the log | events | users | training, wall | peak RSS | full model |\n|---|---|---|---|---|---|---|\n{train}\n\n{notes}\n\n\
EASE's dense `n × n` matrices do not fit above ~2·10⁴ items (`--ease-memory-budget-gib`, 12): the trainer says so \
(the bytes it would need, and SASRec as the model to use instead) and takes the large-catalog pipeline \
(`trainer/src/large_catalog.rs`): SASRec over the whole catalog, fitted once for a fixed number of epochs with \
512 popularity-sampled negatives (log-Q corrected) and lazily updated item embeddings, evaluated once; the edge \
model is low-rank EASE over the head of the catalog.\n\n\
## Quality and model size (NDCG@20 on the synthetic split's test users)\n\n\
| size | full model (served) | edge model | most popular | edge covers (items) | full.onnx | edge.onnx |\n|---|---|---|---|---|---|---|\n{quality}\n\n\
## Origin (ONNX Runtime, CPU, `k = 10`, closed loop over loopback)\n\n\
| size | c=1 p50 / p99 | c=32 p50 / p99 | c=1 req/s | c=32 req/s | RSS after |\n|---|---|---|---|---|---|\n{origin}\n\n\
## Edge worker (`wrangler dev`, edge-only)\n\n\
| size | upload (limit {BUNDLE_LIMIT_MIB:.0} MiB) | first `/healthz` (start-up, limit {STARTUP_LIMIT_MS:.0} ms) | its load natively | workerd RSS (isolate limit 128 MB) | warm p50 / p99 | model compute in workerd | native tract | `/healthz`: items scored, catalog items known |\n|---|---|---|---|---|---|---|---|---|\n{edge}\n\n\
- The worker embeds the head of the catalog with titles (the items its model scores, at least 50,000) and every \
id of the catalog as an 8-byte fingerprint (`catalog_ids.bin`), so it forwards and checks tail items it does not \
score; `/healthz` names both counts and the edge model's coverage.\n\
- The first `/healthz` after `wrangler dev` starts is the first request the isolate serves: it includes compiling \
the worker's wasm locally (Cloudflare compiles it at deploy time), verifying the embedded files' sha256 and planning \
the edge model. workerd's RSS is the whole local runtime with the isolate in it, an upper bound of the isolate's memory.\n\
- Model compute in workerd is the mean model answer minus the mean popular answer of the same worker (the clock \
of a worker does not advance during computation, so it is taken from outside).\n\n\
## GPU\n\n\
No GPU machine was lent to this work (the `device` tool's status said `can_start_another: false`), so the origin \
on ONNX Runtime CUDA at 10⁵ and 10⁶ items (goal: 10⁶ items at p50 ≤ 3 ms and ≥ 5,000 requests/s) is **not \
measured**. The command is ready: on a GPU host with the `onnxruntime-gpu` wheel, after `cargo xtask bench-scale \
--sizes 1e5,1e6` (or a copy of `bench/out/scale/`), run `python bench/gpu_origin.py $ORT_GPU_LIB target \
bench/out/scale/1e5 bench/out/scale/1e6`: ONNX Runtime CUDA beside ONNX Runtime on that machine's CPUs, \
p50/p99 and requests/s at concurrency 1 and 64, in the same run.\n",
        date = today(),
        notes = col(4),
        train = col(0),
        quality = col(1),
        origin = col(2),
        edge = col(3),
    );
    std::fs::write(out, &doc).with_context(|| format!("writing {}", out.display()))?;
    println!("{doc}");
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("measure") if args.len() == 3 => measure(Path::new(&args[2])).await,
        Some("report") if args.len() >= 4 => report(Path::new(&args[2]), &args[3..].iter().map(PathBuf::from).collect::<Vec<_>>()),
        _ => bail!("usage: bench-scale measure <model-dir> | bench-scale report <scale.md> <model-dir>…"),
    }
}
