//! The quality of what shoppers were served: NDCG@k of each answer against
//! the held-out test items of the user whose history made the query, so the
//! failover suite can tell "answered" from "answered well".
//!
//! The held-out items are MovieLens-100K's test targets as the trainer cuts
//! them (`trainer/src/split.rs`, `Protocol::LastFraction { 0.2 }`): each
//! user's events in time order (file order breaks ties), the last 20 %
//! (at least one, at most all but one), less items also in the user's
//! training part.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Held-out items per external user id.
pub type Targets = HashMap<String, HashSet<String>>;

/// Reads `ml-100k.inter` (`user_id item_id rating timestamp`, tab-separated,
/// one header line) and cuts each user's history as the trainer does.
///
/// # Panics
/// If the file is missing or malformed (set-up downloads it).
pub fn movielens_targets(inter: &Path) -> Targets {
    let text = std::fs::read_to_string(inter).unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask setup`)", inter.display()));
    let mut by_user: BTreeMap<String, Vec<(f64, String)>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        let time: f64 = f.get(3).and_then(|t| t.parse().ok()).expect("timestamp");
        by_user.entry(f[0].to_string()).or_default().push((time, f[1].to_string()));
    }
    let mut targets = Targets::new();
    for (user, mut events) in by_user {
        events.sort_by(|a, b| a.0.total_cmp(&b.0)); // stable: file order breaks ties
        let n = events.len();
        if n < 2 {
            continue;
        }
        let cut = n - ((n as f64 * 0.2).round() as usize).clamp(1, n - 1);
        let seen: HashSet<&str> = events[..cut].iter().map(|(_, i)| i.as_str()).collect();
        let held: HashSet<String> = events[cut..].iter().map(|(_, i)| i.clone()).filter(|i| !seen.contains(i.as_str())).collect();
        if !held.is_empty() {
            targets.insert(user, held);
        }
    }
    targets
}

/// NDCG@`k` of `ranked` against `relevant` (binary relevance; Järvelin &
/// Kekäläinen 2002): DCG over the top `k` divided by the DCG of a perfect
/// ranking of `min(k, |relevant|)` hits. 0 when nothing is relevant.
pub fn ndcg_at(ranked: &[String], relevant: &HashSet<String>, k: usize) -> f64 {
    let gain = |rank: usize| 1.0 / ((rank + 2) as f64).log2();
    let dcg: f64 = ranked.iter().take(k).enumerate().filter(|(_, id)| relevant.contains(*id)).map(|(r, _)| gain(r)).sum();
    let ideal: f64 = (0..k.min(relevant.len())).map(gain).sum();
    if ideal == 0.0 { 0.0 } else { dcg / ideal }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndcg_rewards_hits_near_the_top() {
        let rel: HashSet<String> = ["a".to_string(), "b".to_string()].into();
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(ndcg_at(&ids(&["a", "b", "c"]), &rel, 10), 1.0);
        assert_eq!(ndcg_at(&ids(&["c", "d"]), &rel, 10), 0.0);
        let late = ndcg_at(&ids(&["c", "a"]), &rel, 10);
        let early = ndcg_at(&ids(&["a", "c"]), &rel, 10);
        assert!(early > late && late > 0.0, "{early} {late}");
        assert_eq!(ndcg_at(&ids(&["c", "a"]), &rel, 1), 0.0, "a hit below k does not count");
    }
}
