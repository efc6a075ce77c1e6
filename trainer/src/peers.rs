//! The peer benchmark's Rust side: writes the exact splits the Python peers
//! (`bench/peers.py`, the `implicit` library) train on, and scores the
//! rankings they return with the same metric code as our models.
//!
//! Files in the splits directory (tab-separated, external ids):
//! `val_train.tsv` / `test_train.tsv` (`user item weight`), `val_users.txt` /
//! `test_users.txt` (users to rank), `meta.json` (`{"exclude_seen": bool}`).
//!
//! `peers.json` (written by Python): `{"runs": [{"model", "params",
//! "fit_seconds", "val": {user: [item, …]}, "test": {user: [item, …]}}]}`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::data::{Event, InteractionLog};
use crate::evaluate::evaluate_rankings;
use crate::pipeline::ReportRow;
use crate::split::{Protocol, Split};

fn write_train(path: &Path, log: &InteractionLog, events: &[Event]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in events {
        writeln!(w, "{}\t{}\t{}", log.users[e.user as usize], log.items[e.item as usize], e.weight)?;
    }
    w.flush()
}

fn write_users(path: &Path, log: &InteractionLog, split: &Split) -> std::io::Result<()> {
    let users: Vec<&str> = split.targets.iter().map(|t| log.users[t.user as usize].as_str()).collect();
    std::fs::write(path, users.join("\n") + "\n")
}

/// Writes the validation and test splits for the peers.
///
/// # Errors
/// On I/O failure.
pub fn write_splits(dir: &Path, log: &InteractionLog, val: &Split, test: &Split, protocol: Protocol) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_train(&dir.join("val_train.tsv"), log, &val.train)?;
    write_train(&dir.join("test_train.tsv"), log, &test.train)?;
    write_users(&dir.join("val_users.txt"), log, val)?;
    write_users(&dir.join("test_users.txt"), log, test)?;
    std::fs::write(dir.join("meta.json"), format!("{{\"exclude_seen\": {}}}\n", protocol.exclude_seen()))
}

#[derive(Deserialize)]
struct PeerRun {
    model: String,
    /// The library that trained it (`implicit` when absent).
    #[serde(default)]
    library: Option<String>,
    params: BTreeMap<String, serde_json::Value>,
    fit_seconds: f64,
    val: HashMap<String, Vec<String>>,
    test: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct PeerFile {
    runs: Vec<PeerRun>,
}

/// Scores every peer run on validation, keeps each model's best setting, and
/// returns its test row (model name suffixed with its library, e.g. "(implicit)").
///
/// # Errors
/// If the file is missing or malformed.
pub fn evaluate(path: &Path, log: &InteractionLog, val: &Split, test: &Split) -> anyhow::Result<Vec<ReportRow>> {
    let file: PeerFile = serde_json::from_slice(&std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        .with_context(|| format!("parsing {}", path.display()))?;
    let item_index: HashMap<&str, u32> = log.items.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
    let to_ranking = |lists: &HashMap<String, Vec<String>>, user: u32| -> Vec<u32> {
        lists.get(&log.users[user as usize]).map(|items| items.iter().filter_map(|i| item_index.get(i.as_str()).copied()).collect()).unwrap_or_default()
    };
    let mut best: BTreeMap<String, (f64, ReportRow)> = BTreeMap::new();
    for run in &file.runs {
        let val_ndcg = evaluate_rankings(&val.targets, log.items.len(), |u| to_ranking(&run.val, u)).metrics.ndcg_at_20;
        if best.get(&run.model).is_some_and(|(b, _)| *b >= val_ndcg) {
            continue;
        }
        let scored = evaluate_rankings(&test.targets, log.items.len(), |u| to_ranking(&run.test, u));
        let row = ReportRow {
            model: format!("{} ({})", run.model, run.library.as_deref().unwrap_or("implicit")),
            metrics: scored.metrics,
            fit_seconds: run.fit_seconds,
            onnx_bytes: None,
            params: run.params.clone(),
            per_user_ndcg: scored.per_user_ndcg,
        };
        best.insert(run.model.clone(), (val_ndcg, row));
    }
    Ok(best.into_values().map(|(_, row)| row).collect())
}
