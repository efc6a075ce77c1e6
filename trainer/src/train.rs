//! The training pipeline for one dataset: tune on validation, evaluate once on
//! test, refit on the whole log and export.
//!
//! 1. `test` split of the log by the dataset's protocol; `validation` split of
//!    its training part by the same protocol.
//! 2. Tune EASE's λ (and the buy-again β where seen items are rankable) on
//!    validation NDCG@20, then the input's recency decay `r` (with β again)
//!    at that λ; tune the edge model's rank within the size budget.
//! 3. Fit the chosen models on the test split's training part and score them,
//!    with the baselines, on the test targets — the only use of the test set.
//! 4. Refit on the whole log and export (see [`crate::artifacts`]).
//!
//! [`run`] is that line of stages: [`split_stage`] → [`choose`] (tune each
//! candidate on validation, pick the served one) → [`test_once`] →
//! [`export`] (refit, write, tract parity) → the report. `trainer retrain`
//! runs the same line twice (before a held-out window, then on everything);
//! a catalog EASE cannot hold takes [`crate::large_catalog`]'s line instead.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::InteractionLog;
use crate::evaluate::{Phase, Scored};
use crate::model::{Scorer, ease, low_rank, reduce_rank};
pub use crate::pipeline::{EdgeCoverage, Report, ReportRow, TrainConfig, edge_items_for_budget, peak_rss_bytes};
use crate::sequence::Tuned;
use crate::split::{Split, split};

fn bar(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64).with_message(what.to_string());
    pb.set_style(ProgressStyle::with_template("  {msg:<28} [{bar:30}] {pos}/{len} {elapsed}").expect("valid template").progress_chars("=> "));
    pb
}

/// Blend weights tried on validation: `s = logits + γ · EASE(x)`. SASRec's
/// logits spread over ~10 units, EASE scores over ~1 (less with a recency
/// decay), so γ spans 0.3–100.
pub const BLEND_GAMMAS: &[f64] = &[0.3, 1.0, 3.0, 10.0, 30.0, 100.0];

/// Ranks of a low-rank EASE full model (alone or in the blend) tried when
/// dense EASE (or its blend) is chosen.
pub const FULL_RANKS: &[usize] = &[64, 128, 256];

/// The [`FULL_RANKS`] worth trying over `n` items (below a quarter of `n`).
fn full_ranks(n: usize) -> impl Iterator<Item = usize> {
    FULL_RANKS.iter().copied().filter(move |&r| r < n / 4)
}

/// How much validation NDCG@20 (relative) a low-rank full model may give up
/// against dense EASE (or the dense blend) and still be served in its place:
/// the dense model's `n²` weights (207 MB at Instacart's 7,204 items) must
/// earn more than this.
pub const LOW_RANK_FULL_TOLERANCE: f64 = 0.005;

/// Which full model the origin serves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FullChoice {
    Ease,
    /// EASE at this rank over every item (no dense `[n, n]` matrix).
    LowRank(usize),
    Sequence,
    /// SASRec + γ · EASE.
    Blend(f64),
    /// SASRec + γ · low-rank EASE at `rank` over every item.
    LowRankBlend {
        rank: usize,
        gamma: f64,
    },
}

impl FullChoice {
    fn name(self) -> String {
        match self {
            FullChoice::Ease => "EASE".into(),
            FullChoice::LowRank(r) => format!("EASE at rank {r}"),
            FullChoice::Sequence => "SASRec".into(),
            FullChoice::Blend(_) => "SASRec + EASE blend".into(),
            FullChoice::LowRankBlend { .. } => "SASRec + low-rank EASE blend".into(),
        }
    }

    /// Whether the served model has the sequence part (refit for export).
    fn has_sequence(self) -> bool {
        matches!(self, FullChoice::Sequence | FullChoice::Blend(_) | FullChoice::LowRankBlend { .. })
    }
}

/// The γ with the best validation NDCG@20 among the tried blends.
fn best_blend_gamma(tuning: &BTreeMap<String, f64>) -> f64 {
    BLEND_GAMMAS.iter().copied().max_by(|a, b| tuning[&format!("blend gamma={a}")].total_cmp(&tuning[&format!("blend gamma={b}")])).expect("at least one gamma")
}

/// Which edge model the worker embeds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EdgeChoice {
    /// Low-rank EASE over the most popular items (`Choice::edge_rank`).
    LowRank,
    /// The served SASRec + γ · low-rank EASE at `rank` over every item.
    Blend { rank: usize, gamma: f64 },
}

/// Bytes of the edge blend's ONNX file over `n` items: the SASRec parameters
/// and the rank-`r` factors in f32, plus ~8 KiB of graph.
fn edge_blend_bytes(config: &crate::sasrec::SasRecConfig, n: usize, r: usize) -> usize {
    4 * config.parameters(n) + 8 * (n + 1) * r + 8 * 1024
}

/// What validation chose: every setting the later stages use.
pub struct Choice {
    /// EASE's L2 strength.
    pub lambda: f64,
    /// The buy-again weight (0 where seen items are not rankable).
    pub beta: f64,
    /// The input's recency decay ([`crate::model::recency_input`]).
    pub decay: f64,
    /// The edge model's rank (of the low-rank EASE over the catalog's head).
    pub edge_rank: usize,
    /// The edge model: that low-rank EASE, or the served SASRec blended with
    /// a low-rank EASE over every item when both fit the budget and it wins.
    edge: EdgeChoice,
    /// The tuned sequence model, when one was trained.
    pub sequence: Option<Tuned>,
    /// The served full model.
    full: FullChoice,
    /// Validation NDCG@20 per tried setting.
    pub tuning: BTreeMap<String, f64>,
}

impl Choice {
    /// The blend's γ: the chosen one, or the best tried (for the report's blend row).
    fn gamma(&self) -> f64 {
        match self.full {
            FullChoice::Blend(g) => g,
            _ => best_blend_gamma(&self.tuning),
        }
    }
}

/// A further full model's test row: which, figures, fit seconds, parameters.
type ExtraRow = (FullChoice, Scored, f64, Vec<(&'static str, serde_json::Value)>);

/// Test-split figures of every model, scored once.
pub struct Tested {
    /// Items of the test phase's model.
    pub items: usize,
    /// EASE on test, and its fit time (s).
    pub ease: (Scored, f64),
    /// The low-rank edge model on test, its fit time (s) and item count.
    pub edge: (Scored, f64, usize),
    /// The SASRec edge blend on test and its fit time (s), when it is the edge model.
    pub edge_blend: Option<(Scored, f64)>,
    /// The test phase's sequence model, from which the export's fit continues.
    sequence_model: Option<crate::sasrec::WarmStart>,
    /// The low-rank full model, SASRec and the blend, with fit time and parameters.
    extra_rows: Vec<ExtraRow>,
    /// The served model's figures.
    pub served: Scored,
    /// Most popular and (repeat-purchase protocols) buy again.
    pub baselines: Vec<(&'static str, Scored)>,
    /// The test targets (the parity users come from them).
    pub targets: Vec<crate::split::Target>,
}

fn stage(what: &str, since: Instant) {
    eprintln!("  {what:<36} {:>7.2} s", since.elapsed().as_secs_f64());
}

/// Stage 1: the test split of the log and the validation split of its
/// training part (the peers' splits written when asked).
///
/// # Errors
/// When the protocol leaves no users to evaluate, or writing the splits fails.
pub fn split_stage(log: &InteractionLog, cfg: &TrainConfig) -> anyhow::Result<(Split, Split)> {
    let test_split = split(&log.events, cfg.protocol);
    let val_split = split(&test_split.train, cfg.protocol);
    if test_split.targets.is_empty() || val_split.targets.is_empty() {
        anyhow::bail!("{}: the protocol leaves no users to evaluate (too few events per user)", cfg.dataset);
    }
    if let Some(dir) = &cfg.splits_dir {
        crate::peers::write_splits(dir, log, &val_split, &test_split, cfg.protocol).context("writing splits for the peer benchmark")?;
    }
    Ok((test_split, val_split))
}

fn ids_of(log: &InteractionLog, space: &crate::model::ItemSpace) -> Vec<String> {
    space.log_item.iter().map(|&i| log.items[i as usize].clone()).collect()
}

/// Stage 2: tune EASE (λ, β, then the recency decay), the edge model (rank within the budget) and
/// the sequence model (or warm-start it), blend, and choose the served full
/// model — all on validation NDCG@20.
///
/// # Errors
/// On numerical failure, or an edge budget that fits no item.
pub fn choose(log: &InteractionLog, cfg: &TrainConfig, val_split: Split) -> anyhow::Result<Choice> {
    let betas: Vec<f64> = if cfg.protocol.exclude_seen() { vec![0.0] } else { cfg.betas.clone() };
    let mut tuning = BTreeMap::new();
    let t_stage = Instant::now();
    let val = Phase::new(log, val_split, cfg.protocol, cfg.weighting, cfg.min_count);
    let n_val = val.space.len();
    let (mut best_lambda, mut best_beta, mut best_decay, mut best) = (cfg.lambdas[0], 0.0, 1.0, f64::MIN);
    let mut best_ease_scores = None; // the winner's validation scores, for the blend below
    let mut best_b = None;
    // Scores `x·B + β·x` for every β; the best one is kept.
    let mut try_betas = |b: &faer::Mat<f64>, lambda: f64, decay: f64, tuning: &mut BTreeMap<String, f64>| -> bool {
        let x = val.x_eval(n_val, decay);
        let base = crate::model::sparse_times(x.as_ref(), b.as_ref()); // x·B, β added below
        let mut improved = false;
        for &beta in &betas {
            let mut s = base.clone();
            if beta != 0.0 {
                s += &x * faer::Scale(beta);
            }
            let ndcg = val.evaluate_scores(s.as_ref()).ndcg_at_20;
            let decayed = if decay < 1.0 { format!(" decay={decay}") } else { String::new() };
            tuning.insert(format!("ease lambda={lambda} beta={beta}{decayed}"), ndcg);
            if ndcg > best {
                (best_lambda, best_beta, best_decay, best) = (lambda, beta, decay, ndcg);
                best_ease_scores = Some(s);
                improved = true;
            }
        }
        improved
    };
    let pb = bar(cfg.lambdas.len(), "tuning EASE λ, β");
    for &lambda in &cfg.lambdas {
        let b = ease(val.gram.as_ref(), n_val, lambda)?;
        if try_betas(&b, lambda, 1.0, &mut tuning) {
            best_b = Some((lambda, b));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    // The recency decay at the chosen λ (β again: decayed inputs are smaller).
    let (lambda, b) = best_b.expect("at least one λ was scored");
    for &decay in cfg.decays.iter().filter(|&&d| d < 1.0) {
        try_betas(&b, lambda, decay, &mut tuning);
    }
    let ease_b = b; // the decays only change β and r: this is the chosen λ's B
    let x_val = val.x_eval(n_val, best_decay); // the chosen decay's input rows
    stage(&format!("validation: EASE λ={best_lambda} β={best_beta} decay={best_decay}"), t_stage);
    let t_stage = Instant::now();
    let buy_again = best_beta > 0.0;
    let (mut best_rank, mut best_edge) = (0, f64::MIN);
    let pb = bar(cfg.edge_ranks.len(), "tuning edge rank");
    for &r in &cfg.edge_ranks {
        let m = edge_items_for_budget(cfg.edge_budget_bytes, r, buy_again, n_val);
        if m == 0 {
            continue; // this rank does not fit a single item into the budget
        }
        let edge = low_rank(val.gram.as_ref(), val.x_train.as_ref(), m, r, best_lambda, best_beta, best_decay)?;
        let ndcg = val.evaluate_scores(edge.scores(val.x_eval(m, best_decay).as_ref()).as_ref()).ndcg_at_20;
        tuning.insert(format!("edge rank={r} items={m}"), ndcg);
        if ndcg > best_edge {
            (best_rank, best_edge) = (r, ndcg);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    anyhow::ensure!(best_rank > 0, "edge budget of {} bytes fits no item at ranks {:?}", cfg.edge_budget_bytes, cfg.edge_ranks);
    stage(&format!("validation: edge rank={best_rank}"), t_stage);

    // The sequence model: tuned with early stopping (or warm-started), then blended with EASE.
    let t_stage = Instant::now();
    let tuned = match &cfg.warm_start {
        // A refresh: the serving model's settings and parameters, a few epochs.
        Some(warm) if cfg.schedule != crate::sequence::Schedule::Off => {
            Some(crate::sequence::tune_warm(&val, log.users.len(), warm, &ids_of(log, &val.space), cfg.warm_epochs)?)
        }
        _ => crate::sequence::tune(&val, log.users.len(), &crate::sequence::candidates(cfg.schedule, n_val, cfg.seed))?,
    };
    let mut full = FullChoice::Ease;
    let mut best_full = best;
    // SASRec + γ · low-rank EASE over every item at the ranks that fit the
    // edge budget: a full model candidate, and the edge model's.
    let mut best_low_blend = None;
    if let Some(t) = &tuned {
        for (k, v) in &t.tried {
            tuning.insert(k.clone(), *v);
        }
        let ease_scores = best_ease_scores.as_ref().expect("EASE was tuned above");
        if t.ndcg > best_full {
            (full, best_full) = (FullChoice::Sequence, t.ndcg);
        }
        for &gamma in BLEND_GAMMAS {
            let blended = &t.scores + ease_scores * faer::Scale(gamma);
            let ndcg = val.evaluate_scores(blended.as_ref()).ndcg_at_20;
            tuning.insert(format!("blend gamma={gamma}"), ndcg);
            if ndcg > best_full {
                (full, best_full) = (FullChoice::Blend(gamma), ndcg);
            }
        }
        // The ranks that fit the edge budget, and the full model's ranks.
        let fits_edge = |r: usize| edge_blend_bytes(&t.config, n_val, r) <= cfg.edge_budget_bytes;
        let mut ranks: Vec<usize> = cfg.edge_ranks.iter().copied().filter(|&r| fits_edge(r)).chain(full_ranks(n_val)).collect();
        ranks.sort_unstable();
        ranks.dedup();
        let mut low_blends = Vec::new(); // (rank, γ, validation NDCG@20), the best γ per rank
        for &r in &ranks {
            let low_scores = reduce_rank(ease_b.as_ref(), val.x_train.as_ref(), r, best_beta, best_decay)?.scores(x_val.as_ref());
            let mut best_here = (r, BLEND_GAMMAS[0], f64::MIN);
            for &gamma in BLEND_GAMMAS {
                let ndcg = val.evaluate_scores((&t.scores + &low_scores * faer::Scale(gamma)).as_ref()).ndcg_at_20;
                tuning.insert(format!("low-rank blend rank={r} gamma={gamma}"), ndcg);
                if ndcg > best_here.2 {
                    best_here = (r, gamma, ndcg);
                }
            }
            low_blends.push(best_here);
        }
        best_low_blend = low_blends.iter().copied().filter(|&(r, ..)| fits_edge(r)).max_by(|a, b| a.2.total_cmp(&b.2));
        if let Some(&(rank, gamma, ndcg)) = low_blends.iter().max_by(|a, b| a.2.total_cmp(&b.2))
            && ndcg > best_full
        {
            (full, best_full) = (FullChoice::LowRankBlend { rank, gamma }, ndcg);
        }
        if let FullChoice::Blend(_) = full
            && let Some(&(rank, gamma, _)) = low_blends.iter().find(|&&(_, _, ndcg)| ndcg >= (1.0 - LOW_RANK_FULL_TOLERANCE) * best_full)
        {
            // The size follows the need: no dense EASE behind a blend that serves as well without it.
            full = FullChoice::LowRankBlend { rank, gamma };
        }
        if cfg.schedule == crate::sequence::Schedule::Short {
            // Tests check the pipeline, export, parity and serving of the
            // sequence model, not its quality: serve the blend, whose graph has
            // both the SASRec and the EASE part.
            full = FullChoice::Blend(best_blend_gamma(&tuning));
        }
        stage(&format!("validation: SASRec {:.4}, EASE {best:.4}, served: {} ({best_full:.4})", t.ndcg, full.name()), t_stage);
    }
    if full == FullChoice::Ease {
        // The size follows the need: the smallest rank that serves as well.
        let t_stage = Instant::now();
        for r in full_ranks(n_val) {
            let low = reduce_rank(ease_b.as_ref(), val.x_train.as_ref(), r, best_beta, best_decay)?;
            let ndcg = val.evaluate_scores(low.scores(x_val.as_ref()).as_ref()).ndcg_at_20;
            tuning.insert(format!("full rank={r}"), ndcg);
            if ndcg >= (1.0 - LOW_RANK_FULL_TOLERANCE) * best {
                full = FullChoice::LowRank(r);
                break;
            }
        }
        stage(&format!("validation: served {}", full.name()), t_stage);
    }
    // With `edge_sequence`, the edge runs the served sequence model itself when
    // it fits and wins. Off by default: the edge model runs on every request
    // beside the origin fetch (its answer is ready at the deadline), so its
    // cost is paid by every request, and SASRec costs ~8× low-rank EASE there.
    let mut edge = EdgeChoice::LowRank;
    if let (Some((rank, gamma, ndcg)), true, true) = (best_low_blend, full.has_sequence(), cfg.edge_sequence)
        && ndcg > best_edge
    {
        edge = EdgeChoice::Blend { rank, gamma };
    }
    Ok(Choice { lambda: best_lambda, beta: best_beta, decay: best_decay, edge_rank: best_rank, edge, sequence: tuned, full, tuning })
}

/// Stage 3: fit the chosen models on the test split's training part and
/// score them, with the baselines, on its targets — the only use of the test set.
///
/// # Errors
/// On numerical failure.
pub fn test_once(log: &InteractionLog, cfg: &TrainConfig, test_split: Split, choice: &Choice) -> anyhow::Result<Tested> {
    let t_stage = Instant::now();
    let test = Phase::new(log, test_split, cfg.protocol, cfg.weighting, cfg.min_count);
    let n = test.space.len();
    let t = Instant::now();
    let full = Scorer::Ease { b: ease(test.gram.as_ref(), n, choice.lambda)?, beta: choice.beta, decay: choice.decay };
    let full_fit = t.elapsed().as_secs_f64();
    let x_test = test.x_eval(n, choice.decay);
    let ease_test_scores = full.scores(x_test.as_ref());
    let full_metrics = test.score(ease_test_scores.as_ref());
    let mut extra_rows = Vec::new();
    let mut served = full_metrics.clone();
    if let (FullChoice::LowRank(r), Scorer::Ease { b, .. }) = (choice.full, &full) {
        let t = Instant::now();
        let low = reduce_rank(b.as_ref(), test.x_train.as_ref(), r, choice.beta, choice.decay)?;
        let fit = full_fit + t.elapsed().as_secs_f64();
        served = test.score(low.scores(x_test.as_ref()).as_ref());
        let params =
            vec![("rank", r.into()), ("lambda", choice.lambda.into()), ("beta", choice.beta.into()), ("decay", choice.decay.into()), ("items", n.into())];
        extra_rows.push((choice.full, served.clone(), fit, params));
    }
    let t = Instant::now();
    let m_test = edge_items_for_budget(cfg.edge_budget_bytes, choice.edge_rank, choice.beta > 0.0, n);
    let edge = low_rank(test.gram.as_ref(), test.x_train.as_ref(), m_test, choice.edge_rank, choice.lambda, choice.beta, choice.decay)?;
    let edge_fit = t.elapsed().as_secs_f64();
    let edge_metrics = test.score(edge.scores(test.x_eval(m_test, choice.decay).as_ref()).as_ref());
    let mut edge_blend = None;
    let mut sequence_model = None;
    if let Some(tuned) = &choice.sequence {
        let t = Instant::now();
        let ids = ids_of(log, &test.space);
        let model = crate::sequence::refit(&test, log.users.len(), tuned, tuned.model.as_ref(), cfg.warm_start.as_ref().map(|w| (w, ids.as_slice())))?;
        sequence_model = Some(crate::sasrec::WarmStart::of(&model, crate::sequence::index_ids(&test.space))?);
        let seq_fit = t.elapsed().as_secs_f64();
        let seq_scores = crate::sequence::score_phase(&model, &test, log.users.len())?;
        let seq_metrics = test.score(seq_scores.as_ref());
        let gamma = choice.gamma();
        let blend_metrics = test.score((&seq_scores + &ease_test_scores * faer::Scale(gamma)).as_ref());
        // SASRec + γ · low-rank EASE at `rank` over every item, and its fit time.
        let low_rank_blend = |rank: usize, gamma: f64| -> anyhow::Result<(Scored, f64)> {
            let Scorer::Ease { b, .. } = &full else { unreachable!("the test phase's EASE is dense") };
            let t = Instant::now();
            let low = reduce_rank(b.as_ref(), test.x_train.as_ref(), rank, choice.beta, choice.decay)?;
            let fit = seq_fit + full_fit + t.elapsed().as_secs_f64();
            let scores = &seq_scores + &low.scores(x_test.as_ref()) * faer::Scale(gamma);
            Ok((test.score(scores.as_ref()), fit))
        };
        if let EdgeChoice::Blend { rank, gamma } = choice.edge {
            edge_blend = Some(low_rank_blend(rank, gamma)?);
        }
        served = match choice.full {
            FullChoice::Ease | FullChoice::LowRank(_) => served,
            FullChoice::Sequence => seq_metrics.clone(),
            FullChoice::Blend(_) => blend_metrics.clone(),
            FullChoice::LowRankBlend { rank, gamma } => {
                let (scored, fit) = match (&edge_blend, choice.edge) {
                    (Some(same), EdgeChoice::Blend { rank: r, gamma: g }) if (r, g) == (rank, gamma) => same.clone(),
                    _ => low_rank_blend(rank, gamma)?,
                };
                let params = vec![("rank", rank.into()), ("gamma", gamma.into()), ("decay", choice.decay.into()), ("items", n.into())];
                extra_rows.push((choice.full, scored.clone(), fit, params));
                scored
            }
        };
        let c = &tuned.config;
        let seq_params = vec![
            ("dim", c.dim.into()),
            ("layers", c.layers.into()),
            ("heads", c.heads.into()),
            ("max_len", c.max_len.into()),
            ("dropout", (c.dropout as f64).into()),
            ("epochs", c.max_epochs.into()),
            ("items", n.into()),
        ];
        extra_rows.push((FullChoice::Sequence, seq_metrics, seq_fit, seq_params.clone()));
        let mut blend_params = seq_params;
        blend_params.push(("gamma", gamma.into()));
        extra_rows.push((FullChoice::Blend(gamma), blend_metrics, seq_fit + full_fit, blend_params));
    }
    let mut baselines = vec![("most popular", test.popular())];
    if !cfg.protocol.exclude_seen() {
        baselines.push(("buy again", test.buy_again()));
    }
    stage("test: fit and score once", t_stage);
    Ok(Tested {
        items: n,
        ease: (full_metrics, full_fit),
        edge: (edge_metrics, edge_fit, m_test),
        edge_blend,
        sequence_model,
        extra_rows,
        served,
        baselines,
        targets: test.split.targets.clone(),
    })
}

impl Tested {
    /// The figures of the edge model that ships.
    pub fn shipped_edge(&self) -> &Scored {
        self.edge_blend.as_ref().map_or(&self.edge.0, |(scored, _)| scored)
    }
}

/// Stage 4: refit the chosen models on the whole log and write the model
/// directory (tract parity checked before its manifest is written).
///
/// # Errors
/// On numerical failure, I/O errors, or a parity failure.
pub fn export(log: &InteractionLog, cfg: &TrainConfig, choice: &Choice, tested: &Tested) -> anyhow::Result<(crate::artifacts::Exported, EdgeCoverage)> {
    let t_stage = Instant::now();
    // Grouped by user, each user's events in time order (file order within one
    // time), as `split` leaves them: the sequence model reads this order.
    let mut events = log.events.clone();
    events.sort_by_key(|e| (e.user, e.time));
    let whole = Split { train: events, targets: Vec::new() };
    let all = Phase::new(log, whole, cfg.protocol, cfg.weighting, cfg.min_count);
    let n_all = all.space.len();
    let full_all = Scorer::Ease { b: ease(all.gram.as_ref(), n_all, choice.lambda)?, beta: choice.beta, decay: choice.decay };
    let m_all = edge_items_for_budget(cfg.edge_budget_bytes, choice.edge_rank, choice.beta > 0.0, n_all);
    let edge_all = low_rank(all.gram.as_ref(), all.x_train.as_ref(), m_all, choice.edge_rank, choice.lambda, choice.beta, choice.decay)?;
    let seq_all = match (&choice.sequence, choice.full) {
        (Some(t), c) if c.has_sequence() => {
            let ids = ids_of(log, &all.space);
            Some(crate::sequence::refit(&all, log.users.len(), t, tested.sequence_model.as_ref(), cfg.warm_start.as_ref().map(|w| (w, ids.as_slice())))?)
        }
        _ => None,
    };
    let low_all = match (choice.full, &full_all) {
        (FullChoice::LowRank(r) | FullChoice::LowRankBlend { rank: r, .. }, Scorer::Ease { b, .. }) => {
            Some(reduce_rank(b.as_ref(), all.x_train.as_ref(), r, choice.beta, choice.decay)?)
        }
        _ => None,
    };
    let full_export = match (&seq_all, choice.full, &low_all) {
        (Some(model), FullChoice::Sequence, _) => crate::artifacts::ExportModel::Sequence { model, ease: None },
        (Some(model), FullChoice::Blend(gamma), _) => crate::artifacts::ExportModel::Sequence { model, ease: Some((&full_all, gamma)) },
        (Some(model), FullChoice::LowRankBlend { gamma, .. }, Some(low)) => crate::artifacts::ExportModel::Sequence { model, ease: Some((low, gamma)) },
        (_, _, Some(low)) => crate::artifacts::ExportModel::Ease(low),
        _ => crate::artifacts::ExportModel::Ease(&full_all),
    };
    // The edge blend over every item, at the largest tuned rank that still fits
    // the budget over this (slightly larger) catalog.
    let edge_blend_all = match (choice.edge, &seq_all, &full_all) {
        (EdgeChoice::Blend { rank, gamma }, Some(model), Scorer::Ease { b, .. }) => {
            let fits = cfg.edge_ranks.iter().copied().filter(|&r| r <= rank && edge_blend_bytes(&model.config, n_all, r) <= cfg.edge_budget_bytes).max();
            match fits {
                Some(r) => Some((reduce_rank(b.as_ref(), all.x_train.as_ref(), r, choice.beta, choice.decay)?, gamma)),
                None => None,
            }
        }
        _ => None,
    };
    let edge_export = match (&seq_all, &edge_blend_all) {
        (Some(model), Some((low, gamma))) => crate::artifacts::ExportModel::Sequence { model, ease: Some((low, *gamma)) },
        _ => crate::artifacts::ExportModel::Ease(&edge_all),
    };
    let coverage = EdgeCoverage::of(&all.space, if edge_blend_all.is_some() { n_all } else { m_all });
    let edge_metrics = tested.shipped_edge().metrics;
    let metrics = serde_json::json!({
        "edge_coverage": coverage,
        "protocol": cfg.protocol.describe(),
        "schedule": cfg.schedule.as_str(),
        "full": tested.served.metrics,
        "ease": tested.ease.0.metrics,
        "edge": edge_metrics,
        "edge_ndcg_ratio": edge_metrics.ndcg_at_20 / tested.served.metrics.ndcg_at_20.max(f64::MIN_POSITIVE),
    });
    let exported = crate::artifacts::write(&cfg.out_dir, log, &all.space, &full_export, &edge_export, &tested.targets, cfg, metrics)?;
    stage("refit on the whole log, export, parity", t_stage);
    Ok((exported, coverage))
}

/// A quality-table row of a model's test figures.
fn report_row(model: String, scored: &Scored, fit_seconds: f64, onnx_bytes: Option<u64>, params: BTreeMap<String, serde_json::Value>) -> ReportRow {
    ReportRow { model, metrics: scored.metrics, fit_seconds, onnx_bytes, params, per_user_ndcg: scored.per_user_ndcg.clone() }
}

/// The quality table's rows: each model's test figures, the served one marked.
fn rows(choice: &Choice, tested: &Tested, exported: &crate::artifacts::Exported) -> Vec<ReportRow> {
    let param = |pairs: &[(&str, serde_json::Value)]| pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    // Names are one per kind, so a blend row is the served one whatever its γ.
    let served = |c: FullChoice| c.name() == choice.full.name();
    let label = |c: FullChoice| format!("{}{}", c.name(), if served(c) { " (full, served)" } else { "" });
    let (edge_scored, edge_fit, m_test) = &tested.edge;
    let mut rows = vec![
        report_row(
            label(FullChoice::Ease),
            &tested.ease.0,
            tested.ease.1,
            served(FullChoice::Ease).then_some(exported.full_bytes),
            param(&[("lambda", choice.lambda.into()), ("beta", choice.beta.into()), ("decay", choice.decay.into()), ("items", tested.items.into())]),
        ),
        // The shipped edge model's row ends in "(edge)"; a candidate that lost does not.
        report_row(
            if tested.edge_blend.is_some() { "low-rank EASE over the head".into() } else { "low-rank EASE (edge)".into() },
            edge_scored,
            *edge_fit,
            tested.edge_blend.is_none().then_some(exported.edge_bytes),
            param(&[("rank", choice.edge_rank.into()), ("items", (*m_test).into()), ("beta", choice.beta.into()), ("decay", choice.decay.into())]),
        ),
    ];
    if let (Some((scored, fit)), EdgeChoice::Blend { rank, gamma }) = (&tested.edge_blend, choice.edge) {
        let params = param(&[("rank", rank.into()), ("gamma", gamma.into()), ("items", tested.items.into()), ("decay", choice.decay.into())]);
        rows.push(report_row("SASRec + low-rank EASE (edge)".into(), scored, *fit, Some(exported.edge_bytes), params));
    }
    for (c, scored, fit_seconds, params) in &tested.extra_rows {
        rows.push(report_row(label(*c), scored, *fit_seconds, served(*c).then_some(exported.full_bytes), param(params)));
    }
    for (name, scored) in &tested.baselines {
        rows.push(report_row((*name).into(), scored, 0.0, None, BTreeMap::new()));
    }
    rows
}

/// Runs the pipeline — split, choose, test once, export, report — and
/// writes the artifacts; returns the report.
///
/// # Errors
/// On numerical failure or I/O errors writing the artifacts.
pub fn run(log: &InteractionLog, cfg: &TrainConfig) -> anyhow::Result<Report> {
    let started = Instant::now();
    // The whole log covers the most items of any phase: if EASE fits there it fits everywhere.
    let whole_space = crate::model::ItemSpace::new(&log.events, log.items.len(), cfg.min_count);
    if let Err(refused) = crate::model::check_ease_fits(whole_space.len(), log.users.len(), cfg.ease_memory_budget) {
        if cfg.schedule == crate::sequence::Schedule::Off {
            return Err(refused.into()); // EASE was the only model asked for
        }
        return crate::large_catalog::run(log, cfg, &refused);
    }
    let (test_split, val_split) = split_stage(log, cfg)?;
    stage("split", started);
    let choice = choose(log, cfg, val_split)?;
    let tested = test_once(log, cfg, test_split, &choice)?;
    let (exported, coverage) = export(log, cfg, &choice, &tested)?;
    let report = Report { edge_coverage: Some(coverage), ..Report::new(log, cfg, tested.items, started, rows(&choice, &tested, &exported)) };
    let report = Report { tuning: choice.tuning, ..report };
    report.save(cfg)?;
    Ok(report)
}
