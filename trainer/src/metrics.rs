//! Full-ranking top-k metrics. Every item of the catalog is ranked for every
//! user (no sampled negatives; Krichene & Rendle, "On Sampled Metrics for
//! Item Recommendation", KDD 2020).
//!
//! For a user with held-out set `T` and ranking `r_1, r_2, …`:
//! * Recall@K = |{r_1..r_K} ∩ T| / min(K, |T|)  (normalized recall, Liang et al., WWW 2018)
//! * NDCG@K = DCG@K / IDCG@K with binary gains, DCG@K = Σ_{i≤K, r_i∈T} 1/log2(i+1),
//!   IDCG@K the DCG of a perfect ranking of min(K, |T|) hits (Järvelin & Kekäläinen, 2002)
//! * HitRate@K = 1 if any of r_1..r_K is in T
//! * Coverage@K = distinct items in all users' top-K / items in the log

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Cut-offs used throughout the reports.
pub const K_RECALL: usize = 20;
/// NDCG cut-off.
pub const K_NDCG: usize = 20;
/// HitRate cut-off.
pub const K_HIT: usize = 10;
/// Coverage cut-off.
pub const K_COVERAGE: usize = 20;

/// Averages over the evaluated users (coverage over all of them together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean Recall@20.
    pub recall_at_20: f64,
    /// Mean NDCG@20.
    pub ndcg_at_20: f64,
    /// Mean HitRate@10.
    pub hit_rate_at_10: f64,
    /// Catalog coverage@20 (share of log items).
    pub coverage_at_20: f64,
    /// Users evaluated.
    pub users: usize,
}

/// Accumulates per-user results.
#[derive(Debug, Default)]
pub struct Evaluator {
    sums: [f64; 3],
    users: usize,
    covered: HashSet<u32>,
}

impl Evaluator {
    /// Scores one user's ranking (log item ids, best first, at least 20 long
    /// when the catalog allows) against its sorted held-out items.
    pub fn add(&mut self, ranking: &[u32], targets: &[u32]) {
        debug_assert!(targets.windows(2).all(|w| w[0] < w[1]), "targets must be sorted and distinct");
        if targets.is_empty() {
            return;
        }
        let hit = |item: &u32| targets.binary_search(item).is_ok();
        let top = |k: usize| &ranking[..ranking.len().min(k)];
        let hits = top(K_RECALL).iter().filter(|i| hit(i)).count();
        self.sums[0] += hits as f64 / K_RECALL.min(targets.len()) as f64;
        let dcg: f64 = top(K_NDCG).iter().enumerate().filter(|(_, i)| hit(i)).map(|(pos, _)| discount(pos)).sum();
        let idcg: f64 = (0..K_NDCG.min(targets.len())).map(discount).sum();
        self.sums[1] += dcg / idcg;
        self.sums[2] += if top(K_HIT).iter().any(hit) { 1.0 } else { 0.0 };
        self.covered.extend(top(K_COVERAGE).iter().copied());
        self.users += 1;
    }

    /// Final averages; coverage relative to `log_items` items.
    pub fn finish(&self, log_items: usize) -> Metrics {
        let n = self.users.max(1) as f64;
        Metrics {
            recall_at_20: self.sums[0] / n,
            ndcg_at_20: self.sums[1] / n,
            hit_rate_at_10: self.sums[2] / n,
            coverage_at_20: self.covered.len() as f64 / log_items.max(1) as f64,
            users: self.users,
        }
    }
}

/// 1 / log2(pos + 2) for 0-based `pos`.
fn discount(pos: usize) -> f64 {
    1.0 / ((pos + 2) as f64).log2()
}

/// Indices of the `k` largest `scores` (descending; ties to the lower index),
/// skipping indices for which `excluded` is true.
pub fn top_k(scores: &[f64], k: usize, excluded: impl Fn(usize) -> bool) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..scores.len()).filter(|&i| !excluded(i)).collect();
    let order = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]).then(a.cmp(b));
    if candidates.len() > k {
        candidates.select_nth_unstable_by(k, order);
        candidates.truncate(k);
    }
    candidates.sort_unstable_by(order);
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_ranking_scores_one() {
        let mut e = Evaluator::default();
        e.add(&[3, 1, 2, 9], &[1, 3]);
        let m = e.finish(10);
        assert_eq!((m.recall_at_20, m.ndcg_at_20, m.hit_rate_at_10), (1.0, 1.0, 1.0));
        assert!((m.coverage_at_20 - 0.4).abs() < 1e-12);
    }

    #[test]
    fn ndcg_matches_hand_computation() {
        // One hit at rank 2 of a single target: DCG = 1/log2(3), IDCG = 1.
        let mut e = Evaluator::default();
        e.add(&[5, 7, 8], &[7]);
        let m = e.finish(10);
        assert!((m.ndcg_at_20 - 1.0 / 3f64.log2()).abs() < 1e-12);
        // Two users: one miss, one hit at rank 1 of 2 targets -> recall (0 + 1/2)/2.
        let mut e = Evaluator::default();
        e.add(&[1], &[2]);
        e.add(&[4], &[4, 6]);
        assert!((e.finish(10).recall_at_20 - 0.25).abs() < 1e-12);
        assert_eq!(e.finish(10).hit_rate_at_10, 0.5);
    }

    #[test]
    fn top_k_orders_excludes_and_breaks_ties_by_index() {
        let scores = [0.5, 0.9, 0.9, 0.1, 0.7];
        assert_eq!(top_k(&scores, 3, |_| false), vec![1, 2, 4]);
        assert_eq!(top_k(&scores, 3, |i| i == 1), vec![2, 4, 0]);
        assert_eq!(top_k(&scores, 10, |i| i == 1), vec![2, 4, 0, 3]);
    }
}
