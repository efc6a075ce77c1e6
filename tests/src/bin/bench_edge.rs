//! Edge measurements for `docs/performance.md` (run by `cargo xtask bench-edge`):
//! the worker's upload size (`wrangler deploy --dry-run`), first-request and
//! warm latency through `wrangler dev` (edge-only, so the edge model answers),
//! and the edge model's compute per request in workerd against native tract on
//! the same model and histories.
//!
//! Usage: `bench-edge <model-dir> <docs/performance.md>`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;
use e2e::measure::{native_recommend_ms, stats, timed_get, today, upload_size};
use e2e::{Edge, chaos};
use shared::ModelSet;
use shared::contract::ModelKind;

const MARKER: &str = "<!-- edge measurements: cargo xtask bench-edge -->";
/// Timed requests per kind through wrangler dev.
const HTTP_REQUESTS: usize = 400;
/// Passes over the histories for native tract.
const NATIVE_PASSES: usize = 20;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (dir, out_md) = match args.as_slice() {
        [_, dir, out] => (PathBuf::from(dir), PathBuf::from(out)),
        _ => bail!("usage: bench-edge <model-dir> <performance.md>"),
    };
    let hist = chaos::histories(&dir);
    let set = ModelSet::load_dir(&dir, &[ModelKind::Edge])?;
    let model = &set.models[0];

    // Native tract, in this process: the same call the worker makes per request.
    let native_ms = native_recommend_ms(model, &hist, NATIVE_PASSES)?;

    let (raw_kib, gz_kib, size_line) = upload_size()?;

    // Through wrangler dev, edge-only: every answer is the edge model's (or the popular list's).
    let spawn = Instant::now();
    let edge = Edge::start(&[("ORIGIN_URL", "")]).await;
    let startup_s = spawn.elapsed().as_secs_f64();
    let client = reqwest::Client::new();
    let url = |h: &[String]| format!("{}/v1/recommendations?history={}&k=10", edge.url(), h.join(","));
    let (first_ms, first_source) = timed_get(&client, &url(&hist[0])).await?;
    anyhow::ensure!(first_source == "edge", "first answer came from {first_source}");
    let mut model_ms = Vec::with_capacity(HTTP_REQUESTS);
    let mut popular_ms = Vec::with_capacity(HTTP_REQUESTS);
    for i in 0..HTTP_REQUESTS {
        let (ms, source) = timed_get(&client, &url(&hist[i % hist.len()])).await?;
        anyhow::ensure!(source == "edge", "answer {i} came from {source}");
        model_ms.push(ms);
        // Same request shape, unknown ids: the worker skips the model (popular list).
        let (ms, source) = timed_get(&client, &format!("{}/v1/recommendations?history=no-such-item-{i}&k=10", edge.url())).await?;
        anyhow::ensure!(source == "popular", "unknown-id answer {i} came from {source}");
        popular_ms.push(ms);
    }
    drop(edge);
    let (m, p) = (stats(model_ms), stats(popular_ms));
    let workerd_compute = m.mean - p.mean;

    let mean_len = hist.iter().map(Vec::len).sum::<usize>() as f64 / hist.len() as f64;
    let date = today();
    let entry = set.manifest.model(ModelKind::Edge)?;
    let section = format!(
        "{MARKER}\n## Edge worker\n\n\
Measured {date} on this project's machine (2 cores, x86_64) by `cargo xtask bench-edge` (it runs \
`target/debug/bench-edge {dir} {out}`). Model: `{dir}` version `{version}`, edge model over \
{n} items (`edge.onnx`, {edge_kb:.0} KB). Requests: the {users} real test users' histories of `parity.json` \
(mean {mean_len:.0} items), `k = 10`, one at a time over loopback keep-alive.\n\n\
| what | value |\n|---|---|\n\
| worker upload, raw | {raw_kib:.0} KiB ({raw_mib:.2} MiB) |\n\
| worker upload, gzip | {gz_kib:.0} KiB ({gz_mib:.2} MiB; goal ≤ 3 MiB) |\n\
| `wrangler dev` start to first `/healthz` | {startup_s:.1} s |\n\
| first recommendation after start | {first_ms:.1} ms |\n\
| warm, edge model answers: p50 / p99 / mean | {mp50:.2} / {mp99:.2} / {mmean:.2} ms |\n\
| warm, popular answers (no model run): p50 / p99 / mean | {pp50:.2} / {pp99:.2} / {pmean:.2} ms |\n\n\
| edge model compute per request | ms | vs native |\n|---|---|---|\n\
| native tract (this machine, same model, same histories) | {native_ms:.3} | 1.00× |\n\
| in workerd (wasm32, mean model answer − mean popular answer) | {workerd_compute:.3} | {ratio:.2}× |\n\n\
- `wrangler deploy --dry-run` said: `{size_line}`.\n\
- The in-workerd figure is a difference of two client-side means (same worker, same path, with and without \
the model run): deployed Workers' clocks do not advance during computation, so the time is taken from outside. \
Native tract uses the CPU's SIMD kernels; the wasm32 build runs tract's portable ones.\n",
        out = out_md.display(),
        dir = dir.display(),
        version = set.manifest.version,
        n = entry.n_items,
        edge_kb = set.manifest.files.get("edge.onnx").map_or(0.0, |f| f.bytes as f64 / 1e3),
        users = hist.len(),
        raw_mib = raw_kib / 1024.0,
        gz_mib = gz_kib / 1024.0,
        mp50 = m.p50,
        mp99 = m.p99,
        mmean = m.mean,
        pp50 = p.p50,
        pp99 = p.p99,
        pmean = p.mean,
        ratio = workerd_compute / native_ms,
    );
    let existing = std::fs::read_to_string(&out_md).unwrap_or_default();
    let head = existing.split(MARKER).next().unwrap_or_default().trim_end();
    std::fs::write(&out_md, format!("{head}\n\n{section}"))?;
    println!("{section}");
    Ok(())
}
