//! The pipeline for a catalog whose EASE this machine cannot hold (10⁵–10⁶
//! items, [`crate::model::check_ease_fits`]): the full model is the sequence
//! model alone, whose size grows linearly with the catalog, and the edge
//! model covers the head of the catalog.
//!
//! 1. `test` split of the log by the dataset's protocol.
//! 2. SASRec in the large-catalog setting ([`crate::sequence::large_catalog_config`])
//!    is fitted once on the test split's training part for a fixed number of
//!    epochs. There is no tuning on validation and no refit on the whole log:
//!    each would double the time of the one fit the budget allows, so the
//!    exported model is the one the test scores describe.
//! 3. The edge model is low-rank EASE over the `m` most popular items, as many
//!    as the edge budget holds at the smallest edge rank and EASE's memory
//!    budget allows. Its λ is tuned on a validation split of the training part
//!    (the full-rank head EASE, cheap at `m` items), its SVD reads a sample of
//!    at most [`SVD_USERS`] users.
//! 4. Both, and most-popular, are scored once on the test targets of at most
//!    [`EVAL_USERS`] users (evenly spaced), ranking the whole catalog.

use std::collections::BTreeMap;
use std::time::Instant;

use faer::Mat;

use crate::data::InteractionLog;
use crate::metrics::{Evaluator, K_NDCG, top_k};
use crate::model::{CapacityError, ItemSpace, Scorer, check_ease_fits, dense, ease, low_rank, user_rows};
use crate::pipeline::{EdgeCoverage, Report, ReportRow, TrainConfig, edge_items_for_budget};
use crate::split::split;

/// Test users scored (evenly spaced over the targets).
pub const EVAL_USERS: usize = 5_000;
/// Users whose head rows the edge model's SVD reads.
pub const SVD_USERS: usize = 20_000;

/// At most `max` of `items`, evenly spaced (every `⌈len / max⌉`-th).
fn evenly<'a, T>(items: impl ExactSizeIterator<Item = &'a T>, max: usize) -> Vec<&'a T> {
    let step = items.len().div_ceil(max).max(1);
    items.step_by(step).collect()
}

/// Ranks the model indices of `scores` (`[n]`), best `K_NDCG` first, skipping
/// `seen`, and returns them as log items.
fn ranking(scores: &[f64], seen: &[usize], space: &ItemSpace) -> Vec<u32> {
    let mut mask = vec![false; scores.len()];
    for &i in seen.iter().filter(|&&i| i < scores.len()) {
        mask[i] = true;
    }
    top_k(scores, K_NDCG, |i| mask[i]).into_iter().map(|i| space.log_item[i]).collect()
}

/// Gram matrix `XᵀX` of the binarized rows restricted to indices `< m`, `[m, m]`.
fn head_gram(rows: &[Vec<(usize, f64)>], m: usize) -> Mat<f64> {
    let mut g = Mat::<f64>::zeros(m, m);
    let mut head = Vec::new();
    for row in rows {
        head.clear();
        head.extend(row.iter().map(|&(i, _)| i).filter(|&i| i < m));
        for &a in &head {
            for &b in &head {
                g[(a, b)] += 1.0;
            }
        }
    }
    g
}

/// Runs the large-catalog pipeline (module docs) and writes the artifacts.
/// `refused` is why the regular pipeline's EASE could not run; it goes into
/// the report and the manifest.
///
/// # Errors
/// When there is nothing to evaluate, on a training failure, or when writing
/// the artifacts fails.
pub fn run(log: &InteractionLog, cfg: &TrainConfig, refused: &CapacityError) -> anyhow::Result<Report> {
    let started = Instant::now();
    let stage = |what: &str, since: Instant| eprintln!("  {what:<44} {:>8.2} s", since.elapsed().as_secs_f64());
    eprintln!("  {refused}\n  → the large-catalog pipeline: SASRec over the whole catalog, low-rank EASE over its head at the edge");
    let Some(seq_config) = crate::sequence::large_catalog_config(cfg.schedule, log.items.len(), cfg.seed) else {
        anyhow::bail!("{refused}; and --schedule off leaves no other full model");
    };
    let t = Instant::now();
    let test = split(&log.events, cfg.protocol);
    anyhow::ensure!(!test.targets.is_empty(), "{}: the protocol leaves no users to evaluate (too few events per user)", cfg.dataset);
    let space = ItemSpace::new(&test.train, log.items.len(), cfg.min_count);
    let n = space.len();
    let users = log.users.len();
    let seqs = crate::sequence::sequences_of(&test.train, &space, users);
    let rows = user_rows(&test.train, &space, users, cfg.weighting);
    stage(&format!("split: {} items in the catalog", n), t);

    // 2. The full model.
    let t = Instant::now();
    let (model, _) = crate::sasrec::train(&seqs, n, &seq_config, |_, report| {
        eprintln!("    epoch {:>2}: loss {:.4} ({:.1} s)", report.epoch, report.loss, t.elapsed().as_secs_f64());
        Ok(None)
    })?;
    let seq_fit = t.elapsed().as_secs_f64();
    stage(&format!("SASRec {}, {} epochs", seq_config.label(), seq_config.max_epochs), t);

    // 3. The edge model over the head.
    let t = Instant::now();
    let rank = *cfg.edge_ranks.iter().min().expect("edge ranks are checked non-empty");
    let svd_users = rows.iter().filter(|r| !r.is_empty()).count().min(SVD_USERS);
    let mut m = edge_items_for_budget(cfg.edge_budget_bytes, rank, false, n);
    while m > 0 && check_ease_fits(m, svd_users, cfg.ease_memory_budget).is_err() {
        m = m * 9 / 10;
    }
    anyhow::ensure!(m > 0, "the edge budget of {} bytes holds no item at rank {rank}", cfg.edge_budget_bytes);
    let lambda = tune_head_lambda(log, cfg, &test.train, &space, m)?;
    let gram = head_gram(&rows, m);
    let with_items: Vec<&Vec<(usize, f64)>> = rows.iter().filter(|r| !r.is_empty()).collect();
    let svd_rows: Vec<&Vec<(usize, f64)>> = evenly(with_items.iter().copied(), SVD_USERS);
    let edge = low_rank(gram.as_ref(), dense(&svd_rows, m).as_ref(), m, rank, lambda, 0.0, 1.0)?;
    drop(gram);
    let edge_fit = t.elapsed().as_secs_f64();
    let coverage = EdgeCoverage::of(&space, m);
    stage(&format!("edge: {m} head items ({:.1} % of interactions), rank {rank}, λ={lambda}", 100.0 * coverage.interaction_share), t);

    // 4. Test, once.
    let t = Instant::now();
    let eval = evenly(test.targets.iter(), EVAL_USERS);
    let seen: Vec<Vec<usize>> =
        eval.iter().map(|target| if cfg.protocol.exclude_seen() { rows[target.user as usize].iter().map(|&(i, _)| i).collect() } else { Vec::new() }).collect();
    let (mut full_e, mut edge_e, mut popular_e) = (Evaluator::default(), Evaluator::default(), Evaluator::default());
    let popular_scores: Vec<f64> = (0..n).map(|i| -(i as f64)).collect();
    for (chunk, chunk_seen) in eval.chunks(256).zip(seen.chunks(256)) {
        let histories: Vec<&[u32]> = chunk.iter().map(|target| seqs[target.user as usize].as_slice()).collect();
        let excluded: Vec<Vec<u32>> = chunk_seen.iter().map(|s| s.iter().map(|&i| i as u32).collect()).collect();
        let excluded_refs: Vec<&[u32]> = excluded.iter().map(Vec::as_slice).collect();
        let full_top = model.top_k(&histories, K_NDCG, &excluded_refs)?;
        let x: Vec<&Vec<(usize, f64)>> = chunk.iter().map(|target| &rows[target.user as usize]).collect();
        let edge_scores = edge.scores(dense(&x, m).as_ref());
        for (r, target) in chunk.iter().enumerate() {
            let full_ranking: Vec<u32> = full_top[r].iter().map(|&i| space.log_item[i as usize]).collect();
            full_e.add(&full_ranking, &target.items);
            let row: Vec<f64> = (0..m).map(|j| edge_scores[(r, j)]).collect();
            edge_e.add(&ranking(&row, &chunk_seen[r], &space), &target.items);
            popular_e.add(&ranking(&popular_scores[..(K_NDCG + chunk_seen[r].len()).min(n)], &chunk_seen[r], &space), &target.items);
        }
    }
    let (full_metrics, edge_metrics, popular_metrics) = (full_e.finish(log.items.len()), edge_e.finish(log.items.len()), popular_e.finish(log.items.len()));
    stage(&format!("test: {} users, NDCG@20 SASRec {:.4}, edge {:.4}", eval.len(), full_metrics.ndcg_at_20, edge_metrics.ndcg_at_20), t);

    // 5. Export the fit that was scored.
    let t = Instant::now();
    let metrics = serde_json::json!({
        "protocol": cfg.protocol.describe(),
        "schedule": cfg.schedule.as_str(),
        "pipeline": "large-catalog",
        "full": full_metrics,
        "edge": edge_metrics,
        "edge_ndcg_ratio": edge_metrics.ndcg_at_20 / full_metrics.ndcg_at_20.max(f64::MIN_POSITIVE),
        "edge_coverage": coverage,
        "ease": refused.to_string(),
    });
    let full_export = crate::artifacts::ExportModel::Sequence { model: &model, ease: None };
    let exported = crate::artifacts::write(&cfg.out_dir, log, &space, &full_export, &crate::artifacts::ExportModel::Ease(&edge), &test.targets, cfg, metrics)?;
    stage("export, parity", t);

    let params = |pairs: Vec<(&str, serde_json::Value)>| pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<BTreeMap<_, _>>();
    let rows = vec![
        ReportRow {
            model: "SASRec (full, served)".into(),
            metrics: full_metrics,
            fit_seconds: seq_fit,
            onnx_bytes: Some(exported.full_bytes),
            params: sasrec_params(&seq_config, n),
            per_user_ndcg: full_e.per_user_ndcg().to_vec(),
        },
        ReportRow {
            model: "low-rank EASE over the head (edge)".into(),
            metrics: edge_metrics,
            fit_seconds: edge_fit,
            onnx_bytes: Some(exported.edge_bytes),
            params: params(vec![
                ("rank", rank.into()),
                ("items", m.into()),
                ("lambda", lambda.into()),
                ("interaction_share", coverage.interaction_share.into()),
            ]),
            per_user_ndcg: edge_e.per_user_ndcg().to_vec(),
        },
        ReportRow {
            model: "most popular".into(),
            metrics: popular_metrics,
            fit_seconds: 0.0,
            onnx_bytes: None,
            params: BTreeMap::new(),
            per_user_ndcg: popular_e.per_user_ndcg().to_vec(),
        },
    ];
    let notes = vec![format!("EASE not trained: {refused}"), format!("evaluated on {} of {} test users", eval.len(), test.targets.len())];
    let report = Report { notes, edge_coverage: Some(coverage), ..Report::new(log, cfg, n, started, rows) };
    report.save(cfg)?;
    Ok(report)
}

/// The sequence model's settings over `n` items, as report parameters.
fn sasrec_params(c: &crate::sasrec::SasRecConfig, n: usize) -> BTreeMap<String, serde_json::Value> {
    let pairs: [(&str, serde_json::Value); 8] = [
        ("dim", c.dim.into()),
        ("layers", c.layers.into()),
        ("heads", c.heads.into()),
        ("max_len", c.max_len.into()),
        ("epochs", c.max_epochs.into()),
        ("negatives", c.negatives.into()),
        ("sparse_embeddings", c.sparse_embeddings.into()),
        ("items", n.into()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// EASE's λ over the `m` head items, tuned on a validation split of the test
/// split's training part (validation targets of at most [`EVAL_USERS`] users),
/// in ascending order until two in a row do worse than the best.
fn tune_head_lambda(log: &InteractionLog, cfg: &TrainConfig, train: &[crate::data::Event], space: &ItemSpace, m: usize) -> anyhow::Result<f64> {
    let val = split(train, cfg.protocol);
    let rows = user_rows(&val.train, space, log.users.len(), cfg.weighting);
    let gram = head_gram(&rows, m);
    let eval = evenly(val.targets.iter(), EVAL_USERS);
    let x: Vec<&Vec<(usize, f64)>> = eval.iter().map(|t| &rows[t.user as usize]).collect();
    let x = dense(&x, m);
    let (mut best, mut best_ndcg, mut worse) = (cfg.lambdas[0], f64::MIN, 0);
    let mut lambdas = cfg.lambdas.clone();
    lambdas.sort_by(f64::total_cmp);
    for lambda in lambdas {
        let s = Scorer::Ease { b: ease(gram.as_ref(), m, lambda)?, beta: 0.0, decay: 1.0 }.scores(x.as_ref());
        let mut e = Evaluator::default();
        for (r, target) in eval.iter().enumerate() {
            let seen: Vec<usize> = if cfg.protocol.exclude_seen() { rows[target.user as usize].iter().map(|&(i, _)| i).collect() } else { Vec::new() };
            let row: Vec<f64> = (0..m).map(|j| s[(r, j)]).collect();
            e.add(&ranking(&row, &seen, space), &target.items);
        }
        let ndcg = e.finish(log.items.len()).ndcg_at_20;
        eprintln!("    edge λ={lambda}: validation NDCG@20 {ndcg:.4}");
        if ndcg > best_ndcg {
            (best, best_ndcg, worse) = (lambda, ndcg, 0);
        } else {
            worse += 1;
            if worse == 2 {
                break; // past the peak: NDCG over an ascending λ grid rises, then falls
            }
        }
    }
    Ok(best)
}
