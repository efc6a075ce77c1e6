//! One evaluation phase (validation or test): a training set, its item space
//! and input rows, and the users scored on their held-out items.

use faer::{Mat, MatRef};

use crate::data::InteractionLog;
use crate::metrics::{Evaluator, K_NDCG, Metrics, top_k};
use crate::model::{ItemSpace, Weighting, dense, gram, recency_input, user_rows};
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
    /// Each evaluated user's history as the servers see it: the newest
    /// [`shared::contract::MAX_HISTORY`] training events, oldest first, as
    /// `(model index, 1.0)` (items outside the space dropped).
    pub histories: Vec<Vec<(usize, f64)>>,
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
        let histories = histories(&split, &space);
        Phase { split, space, rows, gram, x_train, histories, protocol, log_items: log.items.len() }
    }

    /// The evaluated users' input rows for a model over the first `n` items
    /// whose input decays with `decay` ([`recency_input`]), `[targets, n]`.
    pub fn x_eval(&self, n: usize, decay: f64) -> Mat<f64> {
        let mut x = Mat::zeros(self.histories.len(), n);
        for (t, history) in self.histories.iter().enumerate() {
            for (i, v) in recency_input(history, n, decay).into_iter().enumerate() {
                x[(t, i)] = v;
            }
        }
        x
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
        self.score(scores).metrics
    }

    /// Metrics and per-user NDCG@20 of a score matrix `[targets, n_out]`.
    pub fn score(&self, scores: MatRef<'_, f64>) -> Scored {
        let mut row = vec![0.0; scores.ncols()];
        self.score_rows(|t| {
            for (i, v) in row.iter_mut().enumerate() {
                *v = scores[(t, i)];
            }
            self.ranking_from_scores(t, &row)
        })
    }

    fn score_rows(&self, mut ranking: impl FnMut(usize) -> Vec<u32>) -> Scored {
        score_targets(&self.split.targets, self.log_items, |t, _| ranking(t))
    }

    /// Most-popular baseline: everyone gets the popularity order.
    pub fn popular(&self) -> Scored {
        let scores: Vec<f64> = (0..self.space.len()).map(|i| -(i as f64)).collect();
        self.score_rows(|t| self.ranking_from_scores(t, &scores))
    }

    /// Buy-again baseline (personal purchase frequency): the user's own items
    /// by purchase weight, then popular.
    pub fn buy_again(&self) -> Scored {
        let n = self.space.len();
        self.score_rows(|t| {
            // Own items score above every popularity score (which lie in (0, 1]).
            let mut scores: Vec<f64> = (0..n).map(|i| 1.0 - i as f64 / n as f64).collect();
            for &(i, w) in &self.rows[self.split.targets[t].user as usize] {
                scores[i] += 1.0 + w;
            }
            self.ranking_from_scores(t, &scores)
        })
    }
}

/// A model's test figures: the averages and each evaluated user's NDCG@20
/// (in target order, so two models' lists pair up user by user).
#[derive(Debug, Clone, Default)]
pub struct Scored {
    /// Averages over the users.
    pub metrics: Metrics,
    /// NDCG@20 per evaluated user.
    pub per_user_ndcg: Vec<f64>,
}

/// The history of each target's user as a server receives it (see
/// [`Phase::histories`]); `split.train` is grouped by user in time order.
fn histories(split: &Split, space: &ItemSpace) -> Vec<Vec<(usize, f64)>> {
    let mut by_user: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for e in &split.train {
        by_user.entry(e.user).or_default().push(e.item);
    }
    split
        .targets
        .iter()
        .map(|t| {
            let items = by_user.get(&t.user).map_or(&[][..], Vec::as_slice);
            let recent = &items[items.len().saturating_sub(shared::contract::MAX_HISTORY)..];
            recent.iter().filter_map(|&i| space.index[i as usize].map(|m| (m, 1.0))).collect()
        })
        .collect()
}

/// Metrics and per-user NDCG of rankings given as log item ids per evaluated
/// user (peers' rankings, read back from the benchmark).
pub fn evaluate_rankings(targets: &[Target], log_items: usize, ranking_of: impl Fn(u32) -> Vec<u32>) -> Scored {
    score_targets(targets, log_items, |_, target| ranking_of(target.user))
}

/// Scores `ranking(t, target)` for every target `t`, repeats marked.
fn score_targets(targets: &[Target], log_items: usize, mut ranking: impl FnMut(usize, &Target) -> Vec<u32>) -> Scored {
    let mut e = Evaluator::default();
    for (t, target) in targets.iter().enumerate() {
        e.add_with_repeats(&ranking(t, target), &target.items, &target.repeats);
    }
    Scored { metrics: e.finish(log_items), per_user_ndcg: e.per_user_ndcg().to_vec() }
}
