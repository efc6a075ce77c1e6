//! `origin parity --models DIR`: ONNX Runtime agrees with the trainer on a
//! model directory. The same check as `bench/ort_parity.py`, through the
//! origin's own ONNX Runtime backend, so an image without Python (the
//! retrain CronJob's) can gate a candidate on it.
//!
//! For every model of the manifest (`full`, `edge`) it ranks the histories of
//! `parity.json` (oldest first, weight 1, items outside the model dropped) and
//! compares with the trainer's top-k: every score within the recorded
//! tolerance (absolute for |score| ≤ 1, relative above), and the same item at
//! every rank but the last unless the two items' scores tie within it.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use shared::Catalog;
use shared::manifest::Manifest;

use crate::backend::{Backend, OrtBackend, OrtRuntime};

/// Tolerance when `parity.json` records none.
const DEFAULT_TOLERANCE: f64 = 1e-4;

#[derive(Deserialize)]
struct Parity {
    cases: Vec<Case>,
    #[serde(default)]
    tolerance: std::collections::BTreeMap<String, f64>,
}

#[derive(Deserialize)]
struct Case {
    user: String,
    history: Vec<String>,
    expected: std::collections::BTreeMap<String, Vec<usize>>,
    scores: std::collections::BTreeMap<String, Vec<f32>>,
}

/// Checks every model of `dir` in ONNX Runtime (CPU); one line per model.
///
/// # Errors
/// When a file is missing or malformed, a session cannot be built, or any
/// case disagrees (the message names the model, the user and the rank).
pub fn check(dir: &Path, rt: &OrtRuntime) -> anyhow::Result<Vec<String>> {
    let read = |name: &str| std::fs::read(dir.join(name)).with_context(|| format!("reading {}", dir.join(name).display()));
    let manifest = Manifest::from_json(&read("manifest.json")?)?;
    let catalog = Catalog::from_json(&read("catalog.json")?)?;
    let parity: Parity = serde_json::from_slice(&read("parity.json")?).context("parity.json")?;
    let mut lines = Vec::new();
    for (kind, entry) in &manifest.models {
        let tol = parity.tolerance.get(kind).copied().unwrap_or(DEFAULT_TOLERANCE);
        let backend = OrtBackend::new(rt, &read(&entry.file)?, entry.n_items, false, 1)?;
        let rows: Vec<Vec<(usize, f32)>> = parity
            .cases
            .iter()
            .map(|c| c.history.iter().filter_map(|id| catalog.index_of(id)).filter(|&i| i < entry.n_items).map(|i| (i, 1.0)).collect())
            .collect();
        let ranked = backend.run(&rows)?;
        let close = |got: f32, want: f32| f64::from((got - want).abs()) <= tol * f64::from(want.abs()).max(1.0);
        let mut max_diff = 0f64;
        for (case, got) in parity.cases.iter().zip(&ranked) {
            let (Some(want_i), Some(want_s)) = (case.expected.get(kind), case.scores.get(kind)) else {
                bail!("parity.json: user {} has no expected {kind} ranking", case.user);
            };
            for (pos, (&wi, &ws)) in want_i.iter().zip(want_s).enumerate() {
                let (gi, gs) = (got.indices[pos], got.scores[pos]);
                max_diff = max_diff.max(f64::from((gs - ws).abs()));
                if !close(gs, ws) {
                    bail!("{kind} user {}: rank {pos} score {gs} vs the trainer's {ws} (tolerance {tol})", case.user);
                }
                let tied = want_i.iter().zip(want_s).any(|(&i, &s)| i == gi && close(s, ws));
                if gi != wi && !tied && pos + 1 != want_i.len() {
                    bail!("{kind} user {}: rank {pos} item {gi} vs the trainer's {wi}", case.user);
                }
            }
        }
        lines.push(format!(
            "{}/{}: {} users agree, max |Δscore| {max_diff:.2e} (≤ {tol} × max(1, |score|)), {}",
            dir.display(),
            entry.file,
            parity.cases.len(),
            rt.describe
        ));
    }
    Ok(lines)
}
