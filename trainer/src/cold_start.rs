//! Cold start, measured: how often items the model has never seen reach a
//! shopper's top-20 through the live catalog's cold-start slots
//! (`shared::live_catalog`: up to two of the last places go to the newest
//! recommendable items sharing a category with the shopper's history), and
//! what those slots cost or earn in NDCG@20.
//!
//! Protocol: the newest `new_fraction` of the catalog's items (by their
//! first interaction) are "new"; the cutoff `T` is the first interaction of
//! the oldest new item. The model (EASE) trains on every event before `T`,
//! so it has never seen a new item; each shopper with events on both sides
//! is scored on the items they reached after `T` (seen items excluded, full
//! ranking), once on the model's top-20 alone and once after the live
//! catalog's rules, with the categories (MovieLens genres) and first-seen
//! times a shop would have sent through `PUT /v1/items`.

use std::collections::HashMap;

use faer::Mat;
use serde::Serialize;
use shared::events::ItemRecord;
use shared::live_catalog::LiveCatalog;
use shared::wire::{ModelInfo, RecommendationResponse, RecommendedItem, Source, ValidRequest};

use crate::data::{Event, InteractionLog};
use crate::metrics::{Evaluator, Metrics, top_k};
use crate::model::{ItemSpace, Weighting, ease, gram, user_rows};

/// List length scored.
pub const K: usize = 20;

/// What the cold-start run measured.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStartReport {
    /// Items held out of training as new.
    pub new_items: usize,
    /// Items the model was trained on.
    pub model_items: usize,
    /// Shoppers scored.
    pub users: usize,
    /// The model's top-20 alone.
    pub without: Metrics,
    /// After the live catalog's cold-start slots.
    pub with: Metrics,
    /// Share of top-20 lists holding at least one new item, with the slots.
    pub lists_with_new_item: f64,
    /// Distinct new items shown to someone, with the slots.
    pub new_items_shown: usize,
    /// Target hits on new items in the top-20, with the slots (without: 0 by construction).
    pub new_item_hits: usize,
    /// Share of test targets that are new items (what a model that never sees them cannot reach).
    pub new_target_share: f64,
}

/// Runs the protocol above on `log`, whose item ids map to `categories`.
///
/// # Errors
/// When the log is too small to hold out anything, or EASE fails.
pub fn evaluate(log: &InteractionLog, categories: &HashMap<String, Vec<String>>, new_fraction: f64, lambda: f64) -> anyhow::Result<ColdStartReport> {
    anyhow::ensure!(new_fraction > 0.0 && new_fraction < 0.5, "--new-fraction must be in (0, 0.5)");
    let n_log = log.items.len();
    let mut first = vec![i64::MAX; n_log];
    for e in &log.events {
        first[e.item as usize] = first[e.item as usize].min(e.time);
    }
    let mut by_age: Vec<usize> = (0..n_log).collect();
    by_age.sort_by_key(|&i| (first[i], i));
    let n_new = ((n_log as f64 * new_fraction) as usize).max(1);
    let cutoff = first[by_age[n_log - n_new]];
    let is_new = |i: u32| first[i as usize] >= cutoff;
    let train: Vec<Event> = log.events.iter().filter(|e| e.time < cutoff).copied().collect();
    let test: Vec<&Event> = log.events.iter().filter(|e| e.time >= cutoff).collect();
    anyhow::ensure!(!train.is_empty() && !test.is_empty(), "nothing on one side of the cutoff");

    let space = ItemSpace::new(&train, n_log, 1);
    let rows = user_rows(&train, &space, log.users.len(), Weighting::Binary);
    let b = ease(gram(&rows, space.len()).as_ref(), space.len(), lambda)?;

    let mut targets: Vec<Vec<u32>> = vec![Vec::new(); log.users.len()];
    let mut seen: Vec<Vec<u32>> = vec![Vec::new(); log.users.len()];
    for e in &train {
        seen[e.user as usize].push(e.item);
    }
    for e in &test {
        targets[e.user as usize].push(e.item);
    }
    let users: Vec<usize> = (0..log.users.len())
        .filter(|&u| !seen[u].is_empty())
        .filter(|&u| {
            let t = &mut targets[u];
            t.sort_unstable();
            t.dedup();
            let s = &seen[u];
            t.retain(|i| !s.contains(i));
            !t.is_empty()
        })
        .collect();

    // The catalog a shop would have sent: every item, its genres, first seen as added.
    let mut live = LiveCatalog::new();
    live.apply_changes(by_age.iter().enumerate().map(|(v, &i)| ItemRecord {
        item_id: log.items[i].clone(),
        title: log.titles[i].clone(),
        categories: categories.get(&log.items[i]).cloned().unwrap_or_default(),
        available: true,
        retired: false,
        price: None,
        added_ms: Some(first[i]),
        version: v as u64 + 1,
    }));
    let index: HashMap<&str, u32> = log.items.iter().enumerate().map(|(i, id)| (id.as_str(), i as u32)).collect();
    let known = |id: &str| index.get(id).is_some_and(|&i| space.index[i as usize].is_some());

    let (mut without, mut with) = (Evaluator::default(), Evaluator::default());
    let (mut lists_with_new, mut new_hits) = (0usize, 0usize);
    let mut shown = std::collections::HashSet::new();
    let (mut new_targets, mut all_targets) = (0usize, 0usize);
    for &u in &users {
        let mut x = Mat::<f64>::zeros(1, space.len());
        for &i in &seen[u] {
            if let Some(m) = space.index[i as usize] {
                x[(0, m)] = 1.0;
            }
        }
        let scores = &x * &b;
        let row: Vec<f64> = (0..space.len()).map(|m| scores[(0, m)]).collect();
        let seen_m: Vec<usize> = seen[u].iter().filter_map(|&i| space.index[i as usize]).collect();
        let top: Vec<u32> = top_k(&row, K, |m| seen_m.contains(&m)).into_iter().map(|m| space.log_item[m]).collect();
        without.add(&top, &targets[u]);

        let req = ValidRequest { history: seen[u].iter().map(|&i| log.items[i as usize].clone()).collect(), k: K, exclude_seen: true, ..Default::default() };
        let mut answer = RecommendationResponse {
            items: top.iter().map(|&i| RecommendedItem { item_id: log.items[i as usize].clone(), score: 0.0, title: None }).collect(),
            source: Source::Origin,
            model: ModelInfo { name: "ease".into(), version: String::new(), backend: String::new(), dataset: String::new() },
            warnings: vec![],
            catalog_version: None,
        };
        live.apply(&mut answer, &req, known, std::iter::empty());
        let ranked: Vec<u32> = answer.items.iter().map(|i| index[i.item_id.as_str()]).collect();
        with.add(&ranked, &targets[u]);
        let new_in: Vec<u32> = ranked.iter().copied().filter(|&i| is_new(i)).collect();
        lists_with_new += usize::from(!new_in.is_empty());
        new_hits += new_in.iter().filter(|i| targets[u].binary_search(i).is_ok()).count();
        shown.extend(new_in);
        all_targets += targets[u].len();
        new_targets += targets[u].iter().filter(|&&i| is_new(i)).count();
    }
    Ok(ColdStartReport {
        new_items: n_new,
        model_items: space.len(),
        users: users.len(),
        without: without.finish(n_log),
        with: with.finish(n_log),
        lists_with_new_item: lists_with_new as f64 / users.len().max(1) as f64,
        new_items_shown: shown.len(),
        new_item_hits: new_hits,
        new_target_share: new_targets as f64 / all_targets.max(1) as f64,
    })
}

/// The report as a markdown section.
pub fn markdown(r: &ColdStartReport, command: &str) -> String {
    format!(
        "# Cold start: new items before the next retrain\n\n\
         Generated by `{command}`. The newest {} items (by first interaction) are hidden from training; EASE trains on \
         everything before the oldest of them ({} items); {} shoppers active on both sides are scored on what they \
         reached afterwards (full ranking, seen items excluded). \"With\" applies the live catalog's rules \
         (`shared::live_catalog`): up to two of the last places of a top-20 go to the newest items sharing a genre \
         with the shopper's history, as the origin and edge do for items the model has never seen.\n\n\
         | ranking | NDCG@20 | Recall@20 | HitRate@10 | lists with a new item | new items shown | hits on new items |\n\
         |---|---:|---:|---:|---:|---:|---:|\n\
         | model alone | {:.4} | {:.4} | {:.4} | 0 % | 0 | 0 |\n\
         | with cold-start slots | {:.4} | {:.4} | {:.4} | {:.1} % | {} of {} | {} |\n\n\
         NDCG@20 with the slots is {:.3}× the model's alone. {:.1} % of the test targets are new items, which a \
         model that has never seen them cannot rank at all.\n",
        r.new_items,
        r.model_items,
        r.users,
        r.without.ndcg_at_20,
        r.without.recall_at_20,
        r.without.hit_rate_at_10,
        r.with.ndcg_at_20,
        r.with.recall_at_20,
        r.with.hit_rate_at_10,
        100.0 * r.lists_with_new_item,
        r.new_items_shown,
        r.new_items,
        r.new_item_hits,
        r.with.ndcg_at_20 / r.without.ndcg_at_20.max(1e-12),
        100.0 * r.new_target_share,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_items_reach_lists_only_through_the_slots() {
        let mut log = InteractionLog::default();
        // 37 old items seen by 30 users early; item "new-a" (tea) and "new-b" (coffee) appear late.
        for u in 0..30 {
            for i in 0..8 {
                log.push(&format!("u{u}"), &format!("old-{}", (u + i) % 40), i as i64, 1.0);
            }
        }
        for u in 0..30 {
            log.push(&format!("u{u}"), if u % 2 == 0 { "new-a" } else { "new-b" }, 100 + u as i64, 1.0);
            log.push(&format!("u{u}"), &format!("old-{}", (u + 9) % 30), 100 + u as i64, 1.0);
        }
        let cats: HashMap<String, Vec<String>> =
            log.items.iter().map(|id| (id.clone(), vec![if id == "new-b" { "coffee".to_string() } else { "tea".to_string() }])).collect();
        let r = evaluate(&log, &cats, 0.06, 10.0).unwrap();
        assert_eq!(r.new_items, 2);
        assert!(r.users > 0);
        assert!(r.lists_with_new_item > 0.99, "every shopper's history is tea: the tea newcomer gets a slot ({r:?})");
        assert_eq!(r.new_items_shown, 1, "the coffee newcomer shares no category with anyone");
        assert!(r.new_item_hits > 0);
        assert!(r.new_target_share > 0.0);
    }
}
