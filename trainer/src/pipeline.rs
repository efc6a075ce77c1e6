//! What every training pipeline takes and gives — `train` (EASE, SASRec and
//! their blend), `large_catalog` (SASRec alone over 10⁵–10⁶ items) and
//! `retrain` (from the event store) — so that they, `artifacts`, `peers` and
//! `report` depend on these types and not on one another.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::InteractionLog;
use crate::metrics::Metrics;
use crate::model::{ItemSpace, Weighting};
use crate::split::Protocol;

/// Settings of one training run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Dataset name (directory name under `models/`).
    pub dataset: String,
    /// Hold-out protocol.
    pub protocol: Protocol,
    /// How events become input weights.
    pub weighting: Weighting,
    /// Items need at least this many training events to be modelled.
    pub min_count: u64,
    /// EASE L2 strengths tried on validation.
    pub lambdas: Vec<f64>,
    /// Buy-again weights tried on validation (only where seen items are rankable).
    pub betas: Vec<f64>,
    /// Recency decays of the input tried on validation (at the chosen λ; 1 = none).
    pub decays: Vec<f64>,
    /// Edge model ranks tried on validation.
    pub edge_ranks: Vec<usize>,
    /// Largest edge ONNX file, bytes.
    pub edge_budget_bytes: usize,
    /// Let the edge model be the served SASRec plus a low-rank EASE when it
    /// fits the budget and wins on validation (else low-rank EASE over the head).
    pub edge_sequence: bool,
    /// Where the artifacts go (`models/<dataset>`).
    pub out_dir: PathBuf,
    /// Where the splits for the peer benchmark go, if anywhere.
    pub splits_dir: Option<PathBuf>,
    /// How the sequence model is trained (or not at all).
    pub schedule: crate::sequence::Schedule,
    /// Seed of the sequence model's training.
    pub seed: u64,
    /// Largest memory EASE may use, bytes; a larger catalog is refused before
    /// anything is allocated ([`crate::model::check_ease_fits`]).
    pub ease_memory_budget: u64,
    /// A refresh: start the sequence model from these parameters (the serving
    /// version's) with their settings, instead of tuning from scratch.
    pub warm_start: Option<crate::sasrec::WarmStart>,
    /// Most epochs of a warm-started fit (early stopping on validation).
    pub warm_epochs: usize,
}

/// One row of the quality table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportRow {
    /// Model name as printed.
    pub model: String,
    /// Test metrics.
    pub metrics: Metrics,
    /// Seconds to fit the final model on the training split (tuning excluded).
    pub fit_seconds: f64,
    /// Exported file size in bytes, for exported models.
    #[serde(default)]
    pub onnx_bytes: Option<u64>,
    /// Chosen hyper-parameters.
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Test NDCG@20 of each evaluated user, in the test targets' order (the
    /// same for every row of a report, so rows pair up for the bootstrap).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_user_ndcg: Vec<f64>,
}

/// Everything the quality table shows about one dataset (`models/<ds>/report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Dataset name.
    pub dataset: String,
    /// Protocol in words.
    pub protocol: String,
    /// Users, items, interactions in the log.
    pub log_users: usize,
    /// Distinct items in the log.
    pub log_items: usize,
    /// Rows of the log.
    pub log_interactions: usize,
    /// Items the full model covers (training split).
    pub model_items: usize,
    /// Whole pipeline wall time (tuning, test, export), seconds.
    pub train_seconds: f64,
    /// Rows: ours and baselines.
    pub rows: Vec<ReportRow>,
    /// Peer rows (`implicit`), added by `trainer eval-peers`.
    #[serde(default)]
    pub peers: Vec<ReportRow>,
    /// Validation NDCG@20 per tried setting, for the record.
    pub tuning: BTreeMap<String, f64>,
    /// What the pipeline could not do and why, in words (e.g. EASE refused).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Peak resident memory of the training process, bytes (Linux `VmHWM`).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// How much of the catalog the edge model covers (large-catalog pipeline).
    #[serde(default)]
    pub edge_coverage: Option<EdgeCoverage>,
}

impl Report {
    /// The report of a run over `log` that started at `started`, with the
    /// full model covering `model_items` items; nothing tuned, no notes.
    pub fn new(log: &InteractionLog, cfg: &TrainConfig, model_items: usize, started: Instant, rows: Vec<ReportRow>) -> Self {
        Report {
            dataset: cfg.dataset.clone(),
            protocol: cfg.protocol.describe(),
            log_users: log.users.len(),
            log_items: log.items.len(),
            log_interactions: log.events.len(),
            model_items,
            train_seconds: started.elapsed().as_secs_f64(),
            rows,
            peers: Vec::new(),
            tuning: BTreeMap::new(),
            notes: Vec::new(),
            peak_rss_bytes: peak_rss_bytes(),
            edge_coverage: None,
        }
    }

    /// Writes it to `<out_dir>/report.json`.
    ///
    /// # Errors
    /// On I/O failure.
    pub fn save(&self, cfg: &TrainConfig) -> anyhow::Result<()> {
        // Beside the published model (not in its manifest): written aside, then renamed into place.
        let tmp = cfg.out_dir.join(".report.json.partial");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, cfg.out_dir.join("report.json"))?;
        Ok(())
    }
}

/// Peak resident memory of this process so far, bytes (`VmHWM` in
/// `/proc/self/status`); `None` off Linux.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()).map(|kib| kib * 1024)
}

/// Edge items that fit the budget at rank `r`: `4·(m+1)·r + 4·r·m (+ 8·m for β)` plus ~2 KiB of graph.
pub fn edge_items_for_budget(budget: usize, r: usize, buy_again: bool, n: usize) -> usize {
    let per_item = 8 * r + if buy_again { 8 } else { 0 };
    (budget.saturating_sub(2048 + 4 * r) / per_item).min(n)
}

/// How much of the catalog the edge model covers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EdgeCoverage {
    /// Items the edge model scores (the most popular prefix of the catalog).
    pub items: usize,
    /// Items in the full model's catalog.
    pub catalog_items: usize,
    /// Share of the training interactions that fall on the covered items.
    pub interaction_share: f64,
}

impl EdgeCoverage {
    /// Coverage of an edge model over the first `items` of `space`.
    pub fn of(space: &ItemSpace, items: usize) -> Self {
        let covered: u64 = space.popularity[..items.min(space.len())].iter().sum();
        let total: u64 = space.popularity.iter().sum();
        EdgeCoverage { items, catalog_items: space.len(), interaction_share: covered as f64 / total.max(1) as f64 }
    }
}
