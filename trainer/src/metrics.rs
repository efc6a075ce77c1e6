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
//! * the repeat part of NDCG@K: the same sum over the hits on items the user
//!   had in training (next-basket "repeat" vs "explore" items; Li et al., "A
//!   Next Basket Recommendation Reality Check", ACM TOIS 2023), so
//!   NDCG = repeat part + explore part

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
    /// The part of `ndcg_at_20` from hits on items the user had in training
    /// (0 where seen items are excluded); the rest is from new items.
    #[serde(default)]
    pub ndcg_at_20_repeat: f64,
    /// Users evaluated.
    pub users: usize,
}

/// Accumulates per-user results.
#[derive(Debug, Default)]
pub struct Evaluator {
    sums: [f64; 4],
    users: usize,
    covered: HashSet<u32>,
    per_user_ndcg: Vec<f64>,
}

impl Evaluator {
    /// Scores one user's ranking (log item ids, best first, at least 20 long
    /// when the catalog allows) against its sorted held-out items.
    pub fn add(&mut self, ranking: &[u32], targets: &[u32]) {
        self.add_with_repeats(ranking, targets, &[]);
    }

    /// As [`Evaluator::add`], and counts the hits on `repeats` (sorted: the
    /// held-out items the user also had in training) in the repeat part of NDCG.
    pub fn add_with_repeats(&mut self, ranking: &[u32], targets: &[u32], repeats: &[u32]) {
        debug_assert!(targets.windows(2).all(|w| w[0] < w[1]), "targets must be sorted and distinct");
        if targets.is_empty() {
            return;
        }
        let hit = |item: &u32| targets.binary_search(item).is_ok();
        let top = |k: usize| &ranking[..ranking.len().min(k)];
        let hits = top(K_RECALL).iter().filter(|i| hit(i)).count();
        self.sums[0] += hits as f64 / K_RECALL.min(targets.len()) as f64;
        let dcg_of = |counted: &dyn Fn(&u32) -> bool| -> f64 { top(K_NDCG).iter().enumerate().filter(|(_, i)| counted(i)).map(|(pos, _)| discount(pos)).sum() };
        let idcg: f64 = (0..K_NDCG.min(targets.len())).map(discount).sum();
        let ndcg = dcg_of(&hit) / idcg;
        self.sums[1] += ndcg;
        self.sums[2] += if top(K_HIT).iter().any(hit) { 1.0 } else { 0.0 };
        self.sums[3] += dcg_of(&|i| hit(i) && repeats.binary_search(i).is_ok()) / idcg;
        self.covered.extend(top(K_COVERAGE).iter().copied());
        self.per_user_ndcg.push(ndcg);
        self.users += 1;
    }

    /// NDCG@20 of each user added, in the order added (for paired comparisons).
    pub fn per_user_ndcg(&self) -> &[f64] {
        &self.per_user_ndcg
    }

    /// Final averages; coverage relative to `log_items` items.
    pub fn finish(&self, log_items: usize) -> Metrics {
        let n = self.users.max(1) as f64;
        Metrics {
            recall_at_20: self.sums[0] / n,
            ndcg_at_20: self.sums[1] / n,
            hit_rate_at_10: self.sums[2] / n,
            coverage_at_20: self.covered.len() as f64 / log_items.max(1) as f64,
            ndcg_at_20_repeat: self.sums[3] / n,
            users: self.users,
        }
    }
}

/// Resamples of [`paired_bootstrap_ratio`] in the reports.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// The 95 % percentile-bootstrap interval of `mean(a) / mean(b)` for paired
/// per-user figures (`a[u]` and `b[u]` of the same user): users are drawn
/// with replacement `resamples` times and the ratio of the two means is taken
/// on each draw, so the pairing (same users on both sides) is kept (Efron &
/// Tibshirani, "An Introduction to the Bootstrap", 1993, ch. 13). Seeded, so a
/// report is reproducible. `None` when the lists differ in length or are empty.
pub fn paired_bootstrap_ratio(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Option<(f64, f64)> {
    use rand::{Rng, SeedableRng};
    if a.len() != b.len() || a.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = a.len();
    let mut ratios: Vec<f64> = (0..resamples)
        .map(|_| {
            let (mut sa, mut sb) = (0.0, 0.0);
            for _ in 0..n {
                let u = rng.random_range(0..n);
                sa += a[u];
                sb += b[u];
            }
            sa / sb
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((q * resamples as f64) as usize).min(resamples - 1)];
    Some((at(0.025), at(0.975)))
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
    fn repeat_part_counts_only_hits_on_items_bought_before() {
        // Targets {1, 3}; item 3 is a repeat. Hits at ranks 1 (item 3) and 2 (item 1).
        let mut e = Evaluator::default();
        e.add_with_repeats(&[3, 1], &[1, 3], &[3]);
        let m = e.finish(10);
        assert!((m.ndcg_at_20 - 1.0).abs() < 1e-12);
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((m.ndcg_at_20_repeat - 1.0 / idcg).abs() < 1e-12, "{}", m.ndcg_at_20_repeat);
        assert_eq!(e.per_user_ndcg(), &[m.ndcg_at_20]);
    }

    #[test]
    fn bootstrap_interval_brackets_the_ratio_and_excludes_one_only_for_a_consistent_gain() {
        // 400 users: a is b plus a consistent 10 % everywhere (with noise in b).
        let b: Vec<f64> = (0..400).map(|u| 0.2 + 0.6 * ((u * 37 % 101) as f64 / 101.0)).collect();
        let a: Vec<f64> = b.iter().map(|v| v * 1.1).collect();
        let (lo, hi) = paired_bootstrap_ratio(&a, &b, 500, 7).unwrap();
        assert!((lo - 1.1).abs() < 1e-9 && (hi - 1.1).abs() < 1e-9, "a constant ratio has no spread: {lo}..{hi}");
        // Half the users gain, half lose the same: the interval straddles 1.
        let c: Vec<f64> = b.iter().enumerate().map(|(u, v)| if u % 2 == 0 { v + 0.1 } else { v - 0.1 }).collect();
        let (lo, hi) = paired_bootstrap_ratio(&c, &b, 500, 7).unwrap();
        assert!(lo < 1.0 && hi > 1.0, "{lo}..{hi}");
        assert_eq!(paired_bootstrap_ratio(&c, &b, 500, 7), Some((lo, hi)), "seeded: reproducible");
        assert_eq!(paired_bootstrap_ratio(&a[..3], &b, 500, 7), None, "unpaired lists are refused");
    }

    #[test]
    fn top_k_orders_excludes_and_breaks_ties_by_index() {
        let scores = [0.5, 0.9, 0.9, 0.1, 0.7];
        assert_eq!(top_k(&scores, 3, |_| false), vec![1, 2, 4]);
        assert_eq!(top_k(&scores, 3, |i| i == 1), vec![2, 4, 0]);
        assert_eq!(top_k(&scores, 10, |i| i == 1), vec![2, 4, 0, 3]);
    }
}
