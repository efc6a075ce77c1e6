//! The origin's ONNX Runtime backend in a loop, with no HTTP, no batcher and no
//! thread hand-off: the same `OrtBackend::run` the inference workers call,
//! single rows of the real test histories, one after another on one thread.
//! `bench/origin_bench.py` prints it between raw ORT (Python) and the origin
//! over HTTP, to split the origin's overhead into "how we call ORT" and
//! "everything around the call".
//!
//! `backend_loop MODEL_DIR LIBONNXRUNTIME REQUESTS` prints one JSON line:
//! `{"p50_ms", "p99_ms", "mean_ms", "rps"}`.

use std::path::Path;
use std::time::Instant;

use origin::backend::{Backend, OrtBackend, OrtRuntime};
use shared::contract::ModelKind;
use shared::{ModelFiles, RankingPolicy};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, lib, requests] = &args[..] else {
        anyhow::bail!("usage: backend_loop MODEL_DIR LIBONNXRUNTIME REQUESTS");
    };
    let (dir, requests): (&Path, usize) = (Path::new(dir), requests.parse()?);
    let rt = OrtRuntime::load(Path::new(lib))?;
    let files = ModelFiles::load_dir(dir, &[ModelKind::Full])?;
    let n_items = files.manifest.model(ModelKind::Full)?.n_items;
    let (_, onnx) = files.models.first().ok_or_else(|| anyhow::anyhow!("no full model in {}", dir.display()))?;
    // Two sessions, as the origin's default two inference workers have.
    let backend = OrtBackend::new(&rt, onnx, n_items, false, 2)?;
    let policy = RankingPolicy::new(files.catalog.clone(), ModelKind::Full, n_items)?;
    let parity: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("parity.json"))?)?;
    let rows: Vec<Vec<(usize, f32)>> = parity["cases"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["history"].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect::<Vec<_>>())
        .map(|h| policy.prepare(&h).row)
        .filter(|r| !r.is_empty())
        .collect();
    anyhow::ensure!(!rows.is_empty(), "no test histories in parity.json");
    for r in &rows {
        backend.run(std::slice::from_ref(r))?; // warm-up
    }
    let mut ms = Vec::with_capacity(requests);
    let started = Instant::now();
    for i in 0..requests {
        let t = Instant::now();
        backend.run(std::slice::from_ref(&rows[i % rows.len()]))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let wall = started.elapsed().as_secs_f64();
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!("{}", serde_json::json!({"p50_ms": pct(0.5), "p99_ms": pct(0.99), "mean_ms": mean, "rps": requests as f64 / wall}));
    Ok(())
}
