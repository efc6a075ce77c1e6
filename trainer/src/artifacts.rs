//! Writes a model directory `models/<dataset>/`:
//!
//! | file | content |
//! |------|---------|
//! | `full.onnx` | the full model over the catalog, [`shared::contract`]: EASE (+ buy-again diagonal), SASRec, or SASRec blended with EASE |
//! | `edge.onnx` | low-rank edge model over the catalog's most popular prefix |
//! | `catalog.json` | model index ↔ item id, title, popularity ([`shared::Catalog`]) |
//! | `edge_catalog.json` | its head, the items the edge worker embeds with titles ([`shared::catalog::edge_catalog_items`]) |
//! | `catalog_ids.bin` | every item id's fingerprint, so the edge knows the whole catalog ([`shared::catalog::CatalogIds`]) |
//! | `popular.json` | the 100 most popular items (fallback list for edge and frontend) |
//! | `parity.json` | 100 test users' histories with the trainer's own top-20 per model |
//! | `sequence.safetensors` | the sequence model's parameters, when it has one: a refresh warm-starts from them |
//! | `manifest.json` | version, created-at, dataset, per-file sha256 and bytes, dims, metrics |
//!
//! Before the manifest is written, both ONNX files are loaded with tract and
//! checked against `parity.json`, so a directory with a manifest is one that
//! passed the parity check.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, ensure};
use serde::{Deserialize, Serialize};
use shared::contract::{self, ModelKind};
use shared::manifest::{FileEntry, MANIFEST_FORMAT, Manifest, ModelEntry};
use shared::{Catalog, CatalogItem, OnnxRecommender};

use crate::data::InteractionLog;
use crate::metrics::top_k;
use crate::model::{ItemSpace, Scorer};
use crate::onnx_export::{self, DenseF32};
use crate::pipeline::TrainConfig;
use crate::sasrec::{SasRec, SasRecWeights};
use crate::split::Target;

/// Users in `parity.json`.
pub const PARITY_USERS: usize = 100;
/// Ranked items compared per parity case.
pub const PARITY_K: usize = 20;
/// Largest score difference tolerated between an engine (tract, onnxruntime)
/// and the trainer, relative to the score once |s| > 1 (see [`within_tolerance`]),
/// for every model kind. EASE sums f32 rows; a sequence model's logits pass
/// through two layer norms, a softmax and ~10 f32 matrix products whose
/// summation order differs between candle, tract and onnxruntime kernels, and a
/// blend adds `γ·(1+β)·x·B` (scores up to ~10³ on Instacart, summed over up to
/// 500 history entries in f32). Measured: ≤ 3.4e-6 absolute on MovieLens,
/// ≤ 1e-3 on Instacart's blend (≈ 1e-6 relative); 1e-4 relative leaves that a
/// 100× margin and still catches a wrong weight, mask or position, which move
/// scores by ≥ 1e-2.
pub const PARITY_TOLERANCE: f32 = 1e-4;

/// Whether `got` matches the trainer's `want` within `tolerance`: absolute for
/// |want| ≤ 1, relative above (f32 keeps ~7 significant digits at any scale).
pub fn within_tolerance(got: f32, want: f32, tolerance: f32) -> bool {
    (got - want).abs() <= tolerance * want.abs().max(1.0)
}

/// One parity case: a real user's history and the trainer's expected ranking.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParityCase {
    /// External user id.
    pub user: String,
    /// External item ids, oldest first (at most `MAX_HISTORY`).
    pub history: Vec<String>,
    /// Expected top-[`PARITY_K`] model indices per model kind (`full`, `edge`).
    pub expected: BTreeMap<String, Vec<usize>>,
    /// Expected scores aligned with `expected`.
    pub scores: BTreeMap<String, Vec<f32>>,
}

/// `parity.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParityFile {
    /// Cases in user order.
    pub cases: Vec<ParityCase>,
    /// Largest allowed |Δscore| per model kind (`full`, `edge`).
    #[serde(default)]
    pub tolerance: BTreeMap<String, f32>,
}

/// Sizes of what was written.
pub struct Exported {
    /// `full.onnx` bytes.
    pub full_bytes: u64,
    /// `edge.onnx` bytes.
    pub edge_bytes: u64,
}

fn to_f32(m: faer::MatRef<'_, f64>) -> DenseF32 {
    let mut data = Vec::with_capacity(m.nrows() * m.ncols());
    for i in 0..m.nrows() {
        for j in 0..m.ncols() {
            data.push(m[(i, j)] as f32);
        }
    }
    DenseF32 { rows: m.nrows(), cols: m.ncols(), data }
}

/// The f32 matrices that go into the ONNX files, and the trainer's own scoring with them.
/// `decay` is the input's recency decay ([`crate::model::recency_input`]).
enum Exportable<'a> {
    Full {
        b: DenseF32,
        decay: f32,
    },
    /// Low-rank EASE: the edge model, or a full model that needs no dense matrix.
    LowRank {
        p: DenseF32,
        q: DenseF32,
        beta: f32,
        decay: f32,
    },
    /// SASRec, plus `gamma · EASE(x)` when blended with EASE (dense or low-rank, β folded in).
    Sequence {
        model: &'a SasRec,
        weights: Box<SasRecWeights>,
        ease: Option<(ItemItemPart, f32)>,
        decay: f32,
    },
}

/// The item-item part of a blend, as exported (scaled by `1/(1+β)`).
enum ItemItemPart {
    Dense(DenseF32),
    LowRank { p: DenseF32, q: DenseF32, beta: f32 },
}

impl ExportModel<'_> {
    /// The manifest's `params` of the model: its `architecture` (see
    /// [`shared::contract`]) and settings.
    fn params(&self) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
        let mut params = BTreeMap::new();
        let scorer_params = |scorer: &Scorer, params: &mut BTreeMap<String, serde_json::Value>| match scorer {
            Scorer::Ease { beta, decay, .. } => {
                params.insert("beta".to_string(), (*beta).into());
                params.insert("decay".to_string(), (*decay).into());
                "ease"
            }
            Scorer::LowRank { p, beta, decay, .. } => {
                params.insert("rank".to_string(), p.ncols().into());
                params.insert("beta".to_string(), (*beta).into());
                params.insert("decay".to_string(), (*decay).into());
                "ease-low-rank"
            }
        };
        match self {
            ExportModel::Ease(scorer) => {
                let architecture = scorer_params(scorer, &mut params);
                params.insert("architecture".to_string(), architecture.into());
            }
            ExportModel::Sequence { model, ease } => {
                let c = &model.config;
                params.insert("sasrec_config".to_string(), serde_json::to_value(c)?);
                for (k, v) in [("dim", c.dim), ("layers", c.layers), ("heads", c.heads), ("max_len", c.max_len), ("epochs", c.max_epochs)] {
                    params.insert(k.to_string(), v.into());
                }
                let architecture = match ease {
                    Some((scorer, gamma)) => {
                        params.insert("gamma".to_string(), (*gamma).into());
                        format!("sasrec+{}", scorer_params(scorer, &mut params))
                    }
                    None => "sasrec".into(),
                };
                params.insert("architecture".to_string(), architecture.into());
            }
        }
        Ok(params)
    }
}

/// A model to export (the full or the edge one).
pub enum ExportModel<'a> {
    /// EASE (with the buy-again term), dense or low-rank.
    Ease(&'a Scorer),
    /// SASRec alone, or blended: `s = logits + gamma · EASE(x)`.
    Sequence {
        /// The trained sequence model.
        model: &'a SasRec,
        /// The EASE scorer and `gamma` of the blend.
        ease: Option<(&'a Scorer, f64)>,
    },
}

impl<'a> Exportable<'a> {
    fn from_full(model: &ExportModel<'a>) -> anyhow::Result<Self> {
        Ok(match model {
            ExportModel::Ease(s) => Exportable::from_scorer(s),
            ExportModel::Sequence { model, ease } => {
                let (ease, decay) = match ease {
                    Some((scorer, gamma)) => {
                        let part = match Exportable::from_scorer(scorer) {
                            Exportable::Full { b, .. } => ItemItemPart::Dense(b),
                            Exportable::LowRank { p, q, beta, .. } => ItemItemPart::LowRank { p, q, beta },
                            Exportable::Sequence { .. } => unreachable!("a scorer is EASE"),
                        };
                        // The export scales EASE by 1/(1+β) (see from_scorer); undo it in γ.
                        (Some((part, (gamma * (1.0 + scorer.beta())) as f32)), scorer.decay() as f32)
                    }
                    None => (None, 1.0),
                };
                Exportable::Sequence { model, weights: Box::new(model.weights()?), ease, decay }
            }
        })
    }

    /// Exported weights are scaled by `1/(1+β)` — a convex blend of EASE and
    /// buy-again with the same ranking — so scores stay small enough for f32
    /// to carry them to 1e-4 (counts × β would otherwise reach the hundreds).
    fn from_scorer(s: &Scorer) -> Self {
        match s {
            Scorer::Ease { b, beta, decay } => {
                let scale = 1.0 / (1.0 + beta);
                let mut dense = to_f32((b * faer::Scale(scale)).as_ref());
                for i in 0..dense.rows {
                    dense.data[i * dense.cols + i] = (beta * scale) as f32; // x·(B + βI)/(1+β)
                }
                Exportable::Full { b: dense, decay: *decay as f32 }
            }
            Scorer::LowRank { p, q, beta, decay } => {
                let scale = 1.0 / (1.0 + beta);
                Exportable::LowRank { p: to_f32((p * faer::Scale(scale)).as_ref()), q: to_f32(q.as_ref()), beta: (beta * scale) as f32, decay: *decay as f32 }
            }
        }
    }

    fn onnx(&self, kind: ModelKind) -> Vec<u8> {
        match self {
            Exportable::Full { b, decay } => onnx_export::full_model(b, *decay),
            Exportable::LowRank { p, q, beta, decay } => onnx_export::low_rank_model(kind, p, q, *beta, *decay),
            Exportable::Sequence { weights, ease, decay, .. } => {
                let part = ease.as_ref().map(|(part, gamma)| {
                    let part = match part {
                        ItemItemPart::Dense(b) => onnx_export::ItemItem::Dense(b),
                        ItemItemPart::LowRank { p, q, beta } => onnx_export::ItemItem::LowRank { p, q, beta: *beta },
                    };
                    (part, *gamma)
                });
                onnx_export::sequence_model(kind, weights, part, *decay)
            }
        }
    }

    fn n_items(&self) -> usize {
        match self {
            Exportable::Full { b, .. } => b.cols,
            Exportable::LowRank { q, .. } => q.cols,
            Exportable::Sequence { model, .. } => model.n_items,
        }
    }

    /// Scores of an ordered history (model indices, oldest first, weight 1
    /// each, decayed by recency as the graph does) in f64 from the f32
    /// weights; the sequence model's logits come from the trainer's own
    /// (candle) forward pass.
    fn scores(&self, history: &[usize]) -> anyhow::Result<Vec<f64>> {
        let n = self.n_items();
        let mut s = vec![0.0f64; n];
        let decay = match self {
            Exportable::Full { decay, .. } | Exportable::LowRank { decay, .. } | Exportable::Sequence { decay, .. } => *decay as f64,
        };
        // The weight of entry k: decay^(age) with age 0 for the newest.
        let weight = |k: usize| decay.powi((history.len() - 1 - k) as i32);
        let add_rows = |s: &mut [f64], b: &DenseF32, scale: f64| {
            for (k, &h) in history.iter().enumerate() {
                for (acc, &v) in s.iter_mut().zip(b.row(h)) {
                    *acc += scale * weight(k) * v as f64;
                }
            }
        };
        let add_low_rank = |s: &mut [f64], p: &DenseF32, q: &DenseF32, beta: f32, scale: f64| {
            let mut z = vec![0.0f64; p.cols];
            for (k, &h) in history.iter().enumerate() {
                for (acc, &v) in z.iter_mut().zip(p.row(h)) {
                    *acc += weight(k) * v as f64;
                }
                s[h] += scale * weight(k) * beta as f64;
            }
            for (k, &zk) in z.iter().enumerate() {
                for (acc, &v) in s.iter_mut().zip(q.row(k)) {
                    *acc += scale * zk * v as f64;
                }
            }
        };
        match self {
            Exportable::Full { b, .. } => add_rows(&mut s, b, 1.0),
            Exportable::Sequence { model, ease, .. } => {
                let seq: Vec<u32> = history.iter().map(|&i| i as u32).collect();
                for (acc, v) in s.iter_mut().zip(&model.scores(&[&seq])?[0]) {
                    *acc = *v as f64;
                }
                match ease {
                    Some((ItemItemPart::Dense(b), gamma)) => add_rows(&mut s, b, *gamma as f64),
                    Some((ItemItemPart::LowRank { p, q, beta }, gamma)) => add_low_rank(&mut s, p, q, *beta, *gamma as f64),
                    None => {}
                }
            }
            Exportable::LowRank { p, q, beta, .. } => add_low_rank(&mut s, p, q, *beta, 1.0),
        }
        Ok(s)
    }
}

/// The most recent `MAX_HISTORY` events of `user` as external ids, oldest first.
fn recent_history(log: &InteractionLog, user: u32) -> Vec<String> {
    let mut evs: Vec<_> = log.events.iter().filter(|e| e.user == user).collect();
    evs.sort_by_key(|e| e.time);
    let start = evs.len().saturating_sub(contract::MAX_HISTORY);
    evs[start..].iter().map(|e| log.items[e.item as usize].clone()).collect()
}

/// Checks that tract's answers for every parity case match the trainer's.
///
/// # Errors
/// On the first case whose ranking or scores differ beyond [`PARITY_TOLERANCE`]
/// (positions may swap only between scores within the tolerance: exact ties).
pub fn check_parity(kind: ModelKind, model: &OnnxRecommender, catalog: &Catalog, parity: &ParityFile) -> anyhow::Result<f32> {
    let mut max_diff = 0f32;
    let tolerance = parity.tolerance.get(kind.as_str()).copied().unwrap_or(PARITY_TOLERANCE);
    for case in &parity.cases {
        let expected = &case.expected[kind.as_str()];
        let scores = &case.scores[kind.as_str()];
        let row: Vec<(usize, f32)> = catalog.resolve(&case.history).indices.into_iter().filter(|&i| i < model.n_items()).map(|i| (i, 1.0)).collect();
        let got = model.run(&[row])?.remove(0);
        for (pos, (&want_i, &want_s)) in expected.iter().zip(scores).enumerate() {
            let (got_i, got_s) = (got.indices[pos], got.scores[pos]);
            max_diff = max_diff.max((got_s - want_s).abs());
            ensure!(
                within_tolerance(got_s, want_s, tolerance),
                "{kind:?} user {}: rank {pos} score {got_s} vs trainer {want_s} (tolerance {tolerance} × max(1, |score|))",
                case.user
            );
            if got_i != want_i {
                // Allowed only for an exact tie: tract's item must carry the trainer's score too.
                let pos_in_expected = expected.iter().position(|&i| i == got_i);
                let tie = pos_in_expected.map(|p| within_tolerance(scores[p], want_s, tolerance)).unwrap_or(pos + 1 == expected.len());
                ensure!(tie, "{kind:?} user {}: rank {pos} is item {got_i}, trainer has {want_i}", case.user);
            }
        }
    }
    Ok(max_diff)
}

/// Publishes a model directory whole: every file is written (and synced)
/// into a sibling staging directory, then the old `dir` is renamed aside,
/// the staging directory renamed to `dir`, and the old one removed. A crash
/// at any point leaves either the old directory or the new one complete at
/// `dir` (or, between the two renames, the old one complete at
/// `<dir>.previous`, which the next publish removes); never a mix, which is
/// what writing file by file into the served directory risked.
///
/// # Errors
/// On I/O failure; `dir` is unchanged unless the last rename succeeded.
pub fn publish<'a>(dir: &Path, files: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> anyhow::Result<()> {
    let name = dir.file_name().and_then(|n| n.to_str()).with_context(|| format!("{} has no directory name", dir.display()))?;
    let sibling = |suffix: &str| dir.with_file_name(format!("{name}.{suffix}"));
    let (staging, previous) = (sibling(&format!("partial-{}", std::process::id())), sibling("previous"));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).with_context(|| format!("creating {}", staging.display()))?;
    for (file, bytes) in files {
        let path = staging.join(file);
        let mut f = std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
        std::io::Write::write_all(&mut f, bytes).with_context(|| format!("writing {}", path.display()))?;
        f.sync_all().with_context(|| format!("syncing {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&previous);
    if dir.exists() {
        // What else lives in the directory (the peers' splits, a report) moves over to the new one.
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
            let target = staging.join(entry.file_name());
            if !target.exists() {
                std::fs::rename(entry.path(), &target).with_context(|| format!("keeping {}", entry.path().display()))?;
            }
        }
        std::fs::rename(dir, &previous).with_context(|| format!("moving {} aside", dir.display()))?;
    }
    std::fs::rename(&staging, dir).with_context(|| format!("publishing {}", dir.display()))?;
    let _ = std::fs::remove_dir_all(&previous);
    Ok(())
}

/// Writes the whole model directory (module docs) with [`publish`].
///
/// # Errors
/// On I/O failure, or if tract's output disagrees with the trainer's.
#[expect(clippy::too_many_arguments, reason = "each argument is one artifact of the directory; a struct would only rename them")]
pub fn write(
    dir: &Path,
    log: &InteractionLog,
    space: &ItemSpace,
    full: &ExportModel<'_>,
    edge: &ExportModel<'_>,
    test_targets: &[Target],
    cfg: &TrainConfig,
    metrics: serde_json::Value,
) -> anyhow::Result<Exported> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let catalog = Catalog::new(
        space
            .log_item
            .iter()
            .zip(&space.popularity)
            .map(|(&i, &popularity)| CatalogItem { id: log.items[i as usize].clone(), title: log.titles[i as usize].clone(), popularity })
            .collect(),
    )?;
    files.insert("catalog.json".into(), catalog.to_json());
    // What the edge worker embeds: every id's fingerprint, and the head of the catalog with titles.
    files.insert(shared::catalog::CATALOG_IDS_FILE.into(), shared::catalog::CatalogIds::of(catalog.items().iter().map(|i| i.id.as_str())).to_bytes());
    let models = [(ModelKind::Full, Exportable::from_full(full)?), (ModelKind::Edge, Exportable::from_full(edge)?)];
    let edge_head = shared::catalog::edge_catalog_items(catalog.len(), models[1].1.n_items());
    files.insert(shared::catalog::EDGE_CATALOG_FILE.into(), Catalog::new(catalog.items()[..edge_head].to_vec())?.to_json());
    let popular: Vec<&CatalogItem> = catalog.items().iter().take(contract::MAX_K).collect();
    files.insert("popular.json".into(), serde_json::to_vec(&serde_json::json!({ "items": popular }))?);

    let tolerance = models.iter().map(|(kind, _)| (kind.as_str().to_string(), PARITY_TOLERANCE)).collect();
    let mut parity = ParityFile { cases: Vec::new(), tolerance };
    for target in test_targets.iter().take(PARITY_USERS) {
        let history = recent_history(log, target.user);
        let resolved = catalog.resolve(&history).indices;
        let mut case = ParityCase { user: log.users[target.user as usize].clone(), history, expected: BTreeMap::new(), scores: BTreeMap::new() };
        for (kind, m) in &models {
            let covered: Vec<usize> = resolved.iter().copied().filter(|&i| i < m.n_items()).collect();
            let s = m.scores(&covered)?;
            let top = top_k(&s, PARITY_K, |_| false);
            case.scores.insert(kind.as_str().into(), top.iter().map(|&i| s[i] as f32).collect());
            case.expected.insert(kind.as_str().into(), top);
        }
        parity.cases.push(case);
    }
    files.insert("parity.json".into(), serde_json::to_vec(&parity)?);

    let mut entries = BTreeMap::new();
    let mut warm_start_file = None;
    for (kind, m) in &models {
        let bytes = m.onnx(*kind);
        let loaded = OnnxRecommender::from_bytes(&bytes).with_context(|| format!("tract refused the {kind:?} model just written"))?;
        let max_diff = check_parity(*kind, &loaded, &catalog, &parity).with_context(|| format!("{kind:?} model: tract disagrees with the trainer"))?;
        eprintln!(
            "  parity in tract, {} model: {} users, max |Δscore| {max_diff:.2e} (≤ {} × max(1, |score|))",
            kind.as_str(),
            parity.cases.len(),
            PARITY_TOLERANCE
        );
        let spec = if *kind == ModelKind::Full { full } else { edge };
        let params = spec.params()?;
        if let (ModelKind::Full, ExportModel::Sequence { model, .. }) = (kind, spec) {
            // What a refresh needs to warm-start from this version (`trainer retrain --warm-start`).
            warm_start_file = Some(model.to_safetensors()?);
        }
        entries.insert(
            kind.as_str().to_string(),
            ModelEntry { file: kind.file_name().into(), n_items: m.n_items(), top_k: contract::output_top_k(m.n_items()), params },
        );
        files.insert(kind.file_name().into(), bytes);
    }
    if let Some(bytes) = warm_start_file {
        files.insert(crate::sasrec::WARM_START_FILE.into(), bytes);
    }
    let now = std::time::SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now).to_string();
    let full_sha = FileEntry::of(&files["full.onnx"]).sha256;
    let compact: String = stamp.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: format!("{}-{}-{}", cfg.dataset, compact, &full_sha[..8]),
        created_at: stamp,
        dataset: cfg.dataset.clone(),
        catalog_items: catalog.len(),
        log_items: log.items.len(),
        log_users: log.users.len(),
        log_interactions: log.events.len(),
        repeat_purchases: !cfg.protocol.exclude_seen(),
        models: entries,
        files: files.iter().map(|(name, bytes)| (name.clone(), FileEntry::of(bytes))).collect(),
        metrics,
    };
    let manifest = serde_json::to_vec_pretty(&manifest)?;
    publish(dir, files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).chain([("manifest.json", manifest.as_slice())]))?;
    Ok(Exported { full_bytes: files["full.onnx"].len() as u64, edge_bytes: files["edge.onnx"].len() as u64 })
}

#[cfg(test)]
mod publish_tests {
    use super::publish;

    /// Hardening round 2, item 13: the trainer overwrote the served directory
    /// file by file, so a crash mid-write left a directory mixing two models.
    #[test]
    fn a_publish_that_fails_midway_leaves_the_served_directory_whole() {
        let base = std::env::temp_dir().join(format!("edgerec-publish-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("models/shop");
        publish(&dir, [("a.bin", &b"old a"[..]), ("manifest.json", &b"old"[..])]).unwrap();
        // A file name that cannot be created fails the write half-way through.
        let failed = publish(&dir, [("a.bin", &b"new a"[..]), ("no/such/dir/b.bin", &b"new b"[..]), ("manifest.json", &b"new"[..])]);
        assert!(failed.is_err());
        assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), b"old a", "the served directory is untouched");
        assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), b"old");
        std::fs::create_dir_all(dir.join("splits")).unwrap();
        std::fs::write(dir.join("splits/meta.json"), b"kept").unwrap();
        publish(&dir, [("a.bin", &b"new a"[..]), ("manifest.json", &b"new"[..])]).unwrap();
        assert_eq!(std::fs::read(dir.join("manifest.json")).unwrap(), b"new");
        assert_eq!(std::fs::read(dir.join("splits/meta.json")).unwrap(), b"kept", "other contents move over");
        let left: Vec<_> = std::fs::read_dir(base.join("models")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("shop")], "no staging or previous directory is left behind");
        let _ = std::fs::remove_dir_all(base);
    }
}
