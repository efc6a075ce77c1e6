//! The sequence model inside the pipeline: ordered histories of a phase,
//! tuning on validation with early stopping, fitting with a fixed epoch
//! count, and scoring a phase's users (see [`crate::sasrec`] for the model).

use std::time::Instant;

use faer::Mat;
use indicatif::{ProgressBar, ProgressStyle};

use crate::evaluate::Phase;
use crate::sasrec::{self, SasRec, SasRecConfig, SasRecError, WarmStart};

/// How hard the trainer works on the sequence model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Schedule {
    /// Tune over the candidate grid with early stopping (the quality table).
    Full,
    /// One small configuration for two epochs: checks the pipeline, export,
    /// parity and serving in tests, says nothing about quality.
    Short,
    /// No sequence model: EASE only.
    Off,
}

impl Schedule {
    /// Name as on the command line and in the manifest's metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Schedule::Full => "full",
            Schedule::Short => "short",
            Schedule::Off => "off",
        }
    }
}

/// Candidate settings tried on validation for a catalog of `n` items.
///
/// Sizes follow SASRec's ML-1M settings scaled to this machine (2 CPU cores):
/// width 64, two blocks, two heads, the newest 50 items; the learning rate is
/// SASRec's 1e-3 raised to 3e-3, which reached the same validation NDCG@20 on
/// MovieLens in half the epochs. Catalogs over 4,096 items train against 512
/// shared negatives (SASRec+ uses sampled negatives the same way).
pub fn candidates(schedule: Schedule, n: usize, seed: u64) -> Vec<SasRecConfig> {
    let base = SasRecConfig {
        dim: 64,
        layers: 2,
        heads: 2,
        max_len: 50,
        dropout: 0.2,
        learning_rate: 3e-3,
        batch_size: 128,
        // Caps the whole run within this machine's 15-minute budget for both
        // bundled datasets (each fit is run three times: tune, test, export).
        max_epochs: 15,
        patience: 3,
        negatives: (n > 4096).then_some(512),
        seed,
        sparse_embeddings: n > sasrec::SPARSE_ABOVE,
        popularity_negatives: false,
    };
    match schedule {
        Schedule::Off => Vec::new(),
        Schedule::Short => vec![SasRecConfig { dim: 32, layers: 1, max_len: 20, max_epochs: 2, ..base }],
        Schedule::Full => vec![base.clone()],
    }
}

/// The one setting trained for a catalog EASE cannot hold
/// ([`crate::large_catalog`]), without tuning: a fixed number of epochs over
/// the training split. Width 32 rather than 64 halves the `n × d` table the
/// origin reads for every request (128 MB at 10⁶ items), which is what its
/// latency is made of at that size; batches of 256 halve the steps per epoch.
pub fn large_catalog_config(schedule: Schedule, n: usize, seed: u64) -> Option<SasRecConfig> {
    let base = SasRecConfig {
        dim: 32,
        batch_size: 256,
        max_epochs: LARGE_CATALOG_EPOCHS,
        negatives: Some(512),
        sparse_embeddings: n > sasrec::SPARSE_ABOVE,
        popularity_negatives: true,
        ..candidates(Schedule::Full, n, seed).pop()?
    };
    match schedule {
        Schedule::Off => None,
        Schedule::Short => Some(SasRecConfig { dim: 16, layers: 1, max_len: 20, max_epochs: 1, ..base }),
        Schedule::Full => Some(base),
    }
}

/// Epochs of the large-catalog sequence model (see [`large_catalog_config`]).
pub const LARGE_CATALOG_EPOCHS: usize = 4;

/// Each log user's training items as model indices, oldest first (items
/// outside the phase's item space are skipped).
pub fn sequences(phase: &Phase, users: usize) -> Vec<Vec<u32>> {
    sequences_of(&phase.split.train, &phase.space, users)
}

/// [`sequences`] of any training events (grouped by user, in time order).
pub fn sequences_of(train: &[crate::data::Event], space: &crate::model::ItemSpace, users: usize) -> Vec<Vec<u32>> {
    let mut seqs = vec![Vec::new(); users];
    for e in train {
        if let Some(m) = space.index[e.item as usize] {
            seqs[e.user as usize].push(m as u32);
        }
    }
    seqs
}

/// Next-item logits `[targets, n]` of a phase's evaluated users, each read
/// from the user's training items in order (see [`sequences`]).
///
/// # Errors
/// On a tensor failure.
pub fn score_phase(model: &SasRec, phase: &Phase, users: usize) -> Result<Mat<f64>, SasRecError> {
    let seqs = sequences(phase, users);
    let histories: Vec<&[u32]> = phase.split.targets.iter().map(|t| seqs[t.user as usize].as_slice()).collect();
    let rows = model.scores(&histories)?;
    Ok(Mat::from_fn(rows.len(), phase.space.len(), |r, c| rows[r][c] as f64))
}

/// Outcome of tuning on validation.
pub struct Tuned {
    /// The winning settings, `max_epochs` set to the best epoch.
    pub config: SasRecConfig,
    /// Its validation NDCG@20.
    pub ndcg: f64,
    /// Validation NDCG@20 per tried setting.
    pub tried: Vec<(String, f64)>,
    /// The winning model's logits for the validation users, `[targets, n]`, for blending on validation.
    pub scores: Mat<f64>,
    /// The winning model's parameters, from which the later fits continue
    /// ([`REFIT_EPOCHS`]; item rows named by the validation phase's item ids).
    pub model: Option<WarmStart>,
}

/// Names of a phase's item rows for [`Tuned::model`]'s warm starts: the log
/// item indices (one log, so one naming across its phases).
pub fn index_ids(space: &crate::model::ItemSpace) -> Vec<String> {
    space.log_item.iter().map(|i| i.to_string()).collect()
}

/// Fits `tuned`'s setting on `phase`: [`REFIT_EPOCHS`] epochs on from
/// `previous` (the tuned model, or the previous fit of the chain), or the
/// tuned number of epochs from `cold` (a refresh's serving model) or scratch.
///
/// # Errors
/// On a tensor failure.
pub fn refit(phase: &Phase, users: usize, tuned: &Tuned, previous: Option<&WarmStart>, cold: Option<(&WarmStart, &[String])>) -> Result<SasRec, SasRecError> {
    match previous {
        Some(warm) => {
            let config = SasRecConfig { max_epochs: REFIT_EPOCHS.min(tuned.config.max_epochs), ..tuned.config.clone() };
            fit(phase, users, &config, Some((warm, &index_ids(&phase.space))))
        }
        None => fit(phase, users, &tuned.config, cold),
    }
}

/// Epochs of each later fit (test, then export), warm-started from the
/// previous one: the tuned model continues on the larger training part
/// instead of training again from scratch, as a refresh does. Each such fit
/// costs a fifth of a 15-epoch one; the test score measures exactly this chain.
pub const REFIT_EPOCHS: usize = 3;

fn epoch_bar(label: &str, epochs: usize) -> ProgressBar {
    let pb = ProgressBar::new(epochs as u64).with_message(label.to_string());
    pb.set_style(ProgressStyle::with_template("  {msg} [{bar:20}] {pos}/{len} {elapsed}").expect("valid template").progress_chars("=> "));
    pb
}

/// Tries every candidate on validation with early stopping on NDCG@20.
///
/// # Errors
/// On a tensor failure or when no candidate can train.
pub fn tune(val: &Phase, users: usize, candidates: &[SasRecConfig]) -> Result<Option<Tuned>, SasRecError> {
    let seqs = sequences(val, users);
    let mut best: Option<Tuned> = None;
    let mut tried = Vec::new();
    for cfg in candidates {
        let started = Instant::now();
        let pb = epoch_bar(&format!("SASRec {}", cfg.label()), cfg.max_epochs);
        let (model, epochs) = sasrec::train(&seqs, val.space.len(), cfg, |model, report| {
            let ndcg = val.evaluate_scores(score_phase(model, val, users)?.as_ref()).ndcg_at_20;
            pb.set_position(report.epoch as u64);
            pb.suspend(|| {
                eprintln!("    epoch {:>2}: loss {:.4}, validation NDCG@20 {ndcg:.4} ({:.1} s)", report.epoch, report.loss, started.elapsed().as_secs_f64())
            });
            Ok(Some(ndcg))
        })?;
        pb.finish_and_clear();
        let scores = score_phase(&model, val, users)?; // the best epoch's parameters, restored by `train`
        let ndcg = val.evaluate_scores(scores.as_ref()).ndcg_at_20;
        eprintln!("  SASRec {}: best epoch {epochs}, validation NDCG@20 {ndcg:.4} ({:.1} s)", cfg.label(), started.elapsed().as_secs_f64());
        tried.push((format!("sasrec {} epochs={epochs}", cfg.label()), ndcg));
        if best.as_ref().is_none_or(|b| ndcg > b.ndcg) {
            let ids = index_ids(&val.space);
            best = Some(Tuned {
                config: SasRecConfig { max_epochs: epochs, ..cfg.clone() },
                ndcg,
                tried: Vec::new(),
                scores,
                model: Some(WarmStart::of(&model, ids)?),
            });
        }
    }
    Ok(best.map(|b| Tuned { tried, ..b }))
}

/// Fits `config` for exactly `config.max_epochs` epochs on a phase's training
/// part, from `warm`'s parameters when given (a refresh).
///
/// # Errors
/// On a tensor failure.
pub fn fit(phase: &Phase, users: usize, config: &SasRecConfig, warm: Option<(&WarmStart, &[String])>) -> Result<SasRec, SasRecError> {
    let seqs = sequences(phase, users);
    let started = Instant::now();
    let pb = epoch_bar(&format!("SASRec fit, {} epochs", config.max_epochs), config.max_epochs);
    let (model, _) = sasrec::train_from(&seqs, phase.space.len(), config, warm, |_, report| {
        pb.set_position(report.epoch as u64);
        pb.suspend(|| eprintln!("    epoch {:>2}: loss {:.4} ({:.1} s)", report.epoch, report.loss, started.elapsed().as_secs_f64()));
        Ok(None)
    })?;
    pb.finish_and_clear();
    Ok(model)
}

/// A refresh's counterpart of [`tune`]: the serving model's settings,
/// started from its parameters, at most `epochs` epochs with early stopping
/// on validation NDCG@20.
///
/// # Errors
/// On a tensor failure or a warm start that does not fit.
pub fn tune_warm(val: &Phase, users: usize, warm: &WarmStart, ids: &[String], epochs: usize) -> Result<Tuned, SasRecError> {
    let seqs = sequences(val, users);
    let started = Instant::now();
    let cfg = SasRecConfig { max_epochs: epochs, ..warm.config.clone() };
    let (model, best) = sasrec::train_from(&seqs, val.space.len(), &cfg, Some((warm, ids)), |model, report| {
        let ndcg = val.evaluate_scores(score_phase(model, val, users)?.as_ref()).ndcg_at_20;
        eprintln!("    warm epoch {:>2}: loss {:.4}, validation NDCG@20 {ndcg:.4} ({:.1} s)", report.epoch, report.loss, started.elapsed().as_secs_f64());
        Ok(Some(ndcg))
    })?;
    let scores = score_phase(&model, val, users)?;
    let ndcg = val.evaluate_scores(scores.as_ref()).ndcg_at_20;
    eprintln!("  SASRec warm start {}: best epoch {best}, validation NDCG@20 {ndcg:.4} ({:.1} s)", cfg.label(), started.elapsed().as_secs_f64());
    let ids = index_ids(&val.space);
    Ok(Tuned {
        config: SasRecConfig { max_epochs: best.max(1), ..cfg.clone() },
        ndcg,
        tried: vec![(format!("sasrec warm {} epochs={best}", cfg.label()), ndcg)],
        scores,
        model: Some(WarmStart::of(&model, ids)?),
    })
}
