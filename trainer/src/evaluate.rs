//! One evaluation phase (validation or test): a training set, its item space
//! and input rows, and the users scored on their held-out items.

use faer::{Mat, MatRef};

use crate::data::InteractionLog;
use crate::metrics::{Evaluator, K_NDCG, Metrics, top_k};
use crate::model::{ItemSpace, Weighting, dense, gram, user_rows};
use crate::split::{Protocol, Split, Target};

/// Everything a model needs to be fitted on `split.train` and scored on `split.targets`.
pub struct Phase {
    /// The split this phase evaluates.
    pub split: Split,
    /// Item space of the training events.
    pub space: ItemSpace,
    /// Input rows per log user (training events).
    pub rows: Vec<Vec<(usize, f64)>>,
    /// `XᵀX` of the binarized rows, `[n, n]`.
    pub gram: Mat<f64>,
    /// Dense input rows of all users with any training item, `[train users, n]` (for SVD).
    pub x_train: Mat<f64>,
    /// Dense input rows of the evaluated users, `[targets, n]`.
    pub x_eval: Mat<f64>,
    /// Whether seen items are excluded.
    pub protocol: Protocol,
    /// Items in the whole log (coverage denominator).
    pub log_items: usize,
}

impl Phase {
    /// Prepares a phase from a split.
    pub fn new(log: &InteractionLog, split: Split, protocol: Protocol, weighting: Weighting, min_count: u64) -> Self {
        let space = ItemSpace::new(&split.train, log.items.len(), min_count);
        let rows = user_rows(&split.train, &space, log.users.len(), weighting);
        let gram = gram(&rows, space.len());
        let train_refs: Vec<_> = rows.iter().filter(|r| !r.is_empty()).collect();
        let x_train = dense(&train_refs, space.len());
        let eval_refs: Vec<_> = split.targets.iter().map(|t| &rows[t.user as usize]).collect();
        let x_eval = dense(&eval_refs, space.len());
        Phase { split, space, rows, gram, x_train, x_eval, protocol, log_items: log.items.len() }
    }

    /// Ranks the first `K_NDCG` log items for evaluated user `t` from a scores row
    /// over model indices `0..n_out`; filled from the popular order when short.
    pub fn ranking_from_scores(&self, t: usize, scores: &[f64]) -> Vec<u32> {
        let mut mask = vec![false; self.space.len()];
        if self.protocol.exclude_seen() {
            for &(j, _) in &self.rows[self.split.targets[t].user as usize] {
                mask[j] = true;
            }
        }
        let seen = |i: usize| mask[i];
        let mut ranked = top_k(scores, K_NDCG, seen);
        for i in 0..self.space.len() {
            if ranked.len() >= K_NDCG {
                break;
            }
            if !seen(i) && !ranked.contains(&i) {
                ranked.push(i);
            }
        }
        ranked.into_iter().map(|i| self.space.log_item[i]).collect()
    }

    /// Metrics of a score matrix `[targets, n_out]`.
    pub fn evaluate_scores(&self, scores: MatRef<'_, f64>) -> Metrics {
        let mut e = Evaluator::default();
        let mut row = vec![0.0; scores.ncols()];
        for (t, target) in self.split.targets.iter().enumerate() {
            for (i, v) in row.iter_mut().enumerate() {
                *v = scores[(t, i)];
            }
            e.add(&self.ranking_from_scores(t, &row), &target.items);
        }
        e.finish(self.log_items)
    }

    /// Most-popular baseline: everyone gets the popularity order.
    pub fn popular(&self) -> Metrics {
        let scores: Vec<f64> = (0..self.space.len()).map(|i| -(i as f64)).collect();
        let mut e = Evaluator::default();
        for (t, target) in self.split.targets.iter().enumerate() {
            e.add(&self.ranking_from_scores(t, &scores), &target.items);
        }
        e.finish(self.log_items)
    }

    /// Buy-again baseline: the user's own items by purchase weight, then popular.
    pub fn buy_again(&self) -> Metrics {
        let n = self.space.len();
        let mut e = Evaluator::default();
        for (t, target) in self.split.targets.iter().enumerate() {
            // Own items score above every popularity score (which lie in (0, 1]).
            let mut scores: Vec<f64> = (0..n).map(|i| 1.0 - i as f64 / n as f64).collect();
            for &(i, w) in &self.rows[target.user as usize] {
                scores[i] += 1.0 + w;
            }
            e.add(&self.ranking_from_scores(t, &scores), &target.items);
        }
        e.finish(self.log_items)
    }
}

/// Metrics of rankings given as log item ids per evaluated user (peers'
/// rankings, read back from the benchmark).
pub fn evaluate_rankings(targets: &[Target], log_items: usize, ranking_of: impl Fn(u32) -> Vec<u32>) -> Metrics {
    let mut e = Evaluator::default();
    for target in targets {
        e.add(&ranking_of(target.user), &target.items);
    }
    e.finish(log_items)
}
