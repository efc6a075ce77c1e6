//! The live catalog's query-time rules, applied alike at the origin (to its
//! model's answer) and at the edge (to its model's, an origin's and a cached
//! answer): an unavailable or retired item is never recommended, the
//! request's `category=`/`exclude=` filters hold, `k` is still filled from
//! the popular list when enough items pass, and items added after the model
//! was trained (cold start) get a bounded slot.
//!
//! The catalog changes arrive as [`ItemRecord`]s, each with a strictly
//! increasing version (the store assigns them): the origin reads them from
//! its store, the edge from the origin's `GET /v1/catalog/changes?since=V`.

use std::collections::{HashMap, HashSet};

use crate::events::ItemRecord;
use crate::wire::{RecommendationResponse, RecommendedItem, ValidRequest};

/// Slots of an answer at most given to items the model has never seen
/// (cold start), and only when `k` is at least [`NEW_ITEM_MIN_K`]: the new
/// items whose categories the shopper's history holds most often (content
/// matching on the shop's own categories), newest first among equals.
pub const NEW_ITEM_SLOTS: usize = 2;

/// Smallest `k` that gets cold-start slots.
pub const NEW_ITEM_MIN_K: usize = 5;

/// Most records the live catalog holds (at the edge an isolate has 128 MB);
/// past it, records of available items the model already knows are dropped
/// first (they change nothing at query time but their categories).
pub const MAX_RECORDS: usize = 500_000;

/// The catalog's records as changed since the model was trained.
#[derive(Debug, Clone, Default)]
pub struct LiveCatalog {
    version: u64,
    records: HashMap<String, ItemRecord>,
    hidden: HashSet<String>,
    /// Recommendable records, newest first, at most [`NEW_ITEM_CANDIDATES`]:
    /// where cold start looks, so a request never walks every record.
    newest: Vec<String>,
}

/// Newest records cold start considers.
pub const NEW_ITEM_CANDIDATES: usize = 10_000;

impl LiveCatalog {
    /// An empty catalog at version 0 (everything the model knows is available).
    pub fn new() -> Self {
        LiveCatalog::default()
    }

    /// The newest change applied.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No record held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Items that may not be recommended now.
    pub fn hidden_count(&self) -> usize {
        self.hidden.len()
    }

    /// Applies changes (any order; a record older than the one held is ignored).
    pub fn apply_changes(&mut self, changes: impl IntoIterator<Item = ItemRecord>) {
        for r in changes {
            self.version = self.version.max(r.version);
            if self.records.get(&r.item_id).is_some_and(|old| old.version > r.version) {
                continue;
            }
            if r.recommendable() {
                self.hidden.remove(&r.item_id);
            } else {
                self.hidden.insert(r.item_id.clone());
            }
            if self.records.len() >= MAX_RECORDS && !self.records.contains_key(&r.item_id) && r.recommendable() {
                continue; // bounded: an available item without a record is served as trained
            }
            self.records.insert(r.item_id.clone(), r);
        }
        let mut newest: Vec<&ItemRecord> = self.records.values().filter(|r| r.recommendable()).collect();
        newest.sort_by(|a, b| b.added_ms.unwrap_or(0).cmp(&a.added_ms.unwrap_or(0)).then(b.version.cmp(&a.version)));
        self.newest = newest.into_iter().take(NEW_ITEM_CANDIDATES).map(|r| r.item_id.clone()).collect();
    }

    /// The record of `id`, if the shop ever changed it.
    pub fn get(&self, id: &str) -> Option<&ItemRecord> {
        self.records.get(id)
    }

    /// Whether `id` is unavailable or retired.
    pub fn is_hidden(&self, id: &str) -> bool {
        self.hidden.contains(id)
    }

    /// Whether `id` may appear in an answer to `req`.
    pub fn allows(&self, id: &str, req: &ValidRequest) -> bool {
        if self.hidden.contains(id) || req.exclude.iter().any(|e| e == id) {
            return false;
        }
        match &req.category {
            None => true,
            Some(c) => self.records.get(id).is_some_and(|r| r.categories.iter().any(|x| x == c)),
        }
    }

    /// Recommendable items that `known` (the model's catalog) does not hold,
    /// newest first, among the newest [`NEW_ITEM_CANDIDATES`] records.
    pub fn new_items<'a>(&'a self, known: impl Fn(&str) -> bool + 'a) -> impl Iterator<Item = &'a ItemRecord> + 'a {
        self.newest.iter().filter(move |id| !known(id)).filter_map(|id| self.records.get(id))
    }

    /// Enforces the rules on `answer` to `req`: drops what may not be shown,
    /// gives up to [`NEW_ITEM_SLOTS`] of the last places to new items
    /// (`known` is the model's catalog) sharing a category with the
    /// shopper's history, fills to `req.k` from `fill` (best first, e.g. the
    /// popular list: `(id, title)`), and stamps the catalog version.
    pub fn apply<'f>(
        &self,
        answer: &mut RecommendationResponse,
        req: &ValidRequest,
        known: impl Fn(&str) -> bool,
        fill: impl Iterator<Item = (&'f str, Option<&'f str>)>,
    ) {
        let seen = |id: &str| req.exclude_seen && req.history.iter().any(|h| h == id);
        answer.items.retain(|i| self.allows(&i.item_id, req) && !seen(&i.item_id));
        answer.items.truncate(req.k);
        self.cold_start(answer, req, known, seen);
        let floor = answer.items.last().map_or(0.0, |i| i.score);
        for (id, title) in fill {
            if answer.items.len() >= req.k {
                break;
            }
            if self.allows(id, req) && !seen(id) && !answer.items.iter().any(|i| i.item_id == id) {
                answer.items.push(RecommendedItem { item_id: id.to_string(), score: floor, title: title.map(str::to_string) });
            }
        }
        answer.catalog_version = Some(self.version);
    }

    fn cold_start(&self, answer: &mut RecommendationResponse, req: &ValidRequest, known: impl Fn(&str) -> bool, seen: impl Fn(&str) -> bool) {
        if req.k < NEW_ITEM_MIN_K || self.records.is_empty() {
            return;
        }
        // How often each category occurs in the shopper's history.
        let mut wanted: HashMap<&str, f32> = HashMap::new();
        for r in req.history.iter().filter_map(|h| self.records.get(h)) {
            for c in &r.categories {
                *wanted.entry(c.as_str()).or_default() += 1.0;
            }
        }
        if wanted.is_empty() {
            return;
        }
        // Content match: the history's weight on the item's categories, per
        // category of the item (a narrow match beats a broad one); ties go to the newest.
        let mut picks: Vec<(f32, &ItemRecord)> = self
            .new_items(known)
            .filter(|r| self.allows(&r.item_id, req) && !seen(&r.item_id) && !answer.items.iter().any(|i| i.item_id == r.item_id))
            .filter_map(|r| {
                let hits: f32 = r.categories.iter().filter_map(|c| wanted.get(c.as_str())).sum();
                (hits > 0.0).then(|| (hits / r.categories.len() as f32, r))
            })
            .collect();
        if picks.is_empty() {
            return;
        }
        // `new_items` is newest first and the sort is stable.
        picks.sort_by(|a, b| b.0.total_cmp(&a.0));
        picks.truncate(NEW_ITEM_SLOTS);
        let keep = req.k - picks.len();
        answer.items.truncate(keep);
        let floor = answer.items.last().map_or(0.0, |i| i.score);
        answer.items.extend(picks.into_iter().map(|(_, r)| RecommendedItem { item_id: r.item_id.clone(), score: floor, title: r.title.clone() }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ModelInfo, Source};

    fn rec(id: &str, version: u64, available: bool, cats: &[&str]) -> ItemRecord {
        ItemRecord {
            item_id: id.into(),
            title: None,
            categories: cats.iter().map(|c| c.to_string()).collect(),
            available,
            retired: false,
            price: None,
            added_ms: Some(version as i64),
            version,
        }
    }

    fn answer(ids: &[&str]) -> RecommendationResponse {
        RecommendationResponse {
            items: ids.iter().enumerate().map(|(n, id)| RecommendedItem { item_id: id.to_string(), score: 10.0 - n as f32, title: None }).collect(),
            source: Source::Origin,
            model: ModelInfo { name: "full".into(), version: "v".into(), backend: "tract".into(), dataset: String::new() },
            warnings: vec![],
            catalog_version: None,
        }
    }

    fn req(history: &[&str], k: usize) -> ValidRequest {
        ValidRequest { history: history.iter().map(|s| s.to_string()).collect(), k, exclude_seen: true, ..Default::default() }
    }

    const POPULAR: [(&str, Option<&str>); 6] = [("p1", None), ("p2", None), ("a", None), ("p3", None), ("p4", None), ("p5", None)];

    #[test]
    fn hidden_items_vanish_and_k_is_still_filled() {
        let mut cat = LiveCatalog::new();
        cat.apply_changes([rec("b", 1, false, &[]), rec("p1", 2, false, &[])]);
        let mut a = answer(&["a", "b", "c"]);
        cat.apply(&mut a, &req(&[], 3), |_| true, POPULAR.into_iter());
        let ids: Vec<_> = a.items.iter().map(|i| i.item_id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "p2"]);
        assert_eq!(a.catalog_version, Some(2));
        // Available again: it comes back.
        cat.apply_changes([rec("b", 3, true, &[])]);
        assert!(cat.allows("b", &req(&[], 3)) && cat.hidden_count() == 1);
        // An older record never overrides a newer one.
        cat.apply_changes([rec("b", 1, false, &[])]);
        assert!(!cat.is_hidden("b"));
    }

    #[test]
    fn category_and_exclude_filters_hold() {
        let mut cat = LiveCatalog::new();
        cat.apply_changes([rec("a", 1, true, &["shoes"]), rec("p3", 2, true, &["shoes"]), rec("c", 3, true, &["hats"])]);
        let mut r = req(&[], 3);
        r.category = Some("shoes".into());
        let mut a = answer(&["a", "b", "c"]);
        cat.apply(&mut a, &r, |_| true, POPULAR.into_iter());
        let ids: Vec<_> = a.items.iter().map(|i| i.item_id.as_str()).collect();
        assert_eq!(ids, ["a", "p3"], "only two items are shoes: k cannot be filled");
        let mut r = req(&[], 2);
        r.exclude = vec!["a".into()];
        let mut a = answer(&["a", "b", "c"]);
        cat.apply(&mut a, &r, |_| true, POPULAR.into_iter());
        assert_eq!(a.items.iter().map(|i| i.item_id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn new_items_sharing_a_category_get_the_last_slots() {
        let mut cat = LiveCatalog::new();
        cat.apply_changes([rec("h", 1, true, &["tea"]), rec("new-1", 2, true, &["tea"]), rec("new-2", 3, true, &["coffee"]), rec("new-3", 4, true, &["tea"])]);
        let known = |id: &str| !id.starts_with("new");
        let mut a = answer(&["a", "b", "c", "d", "e"]);
        cat.apply(&mut a, &req(&["h"], 5), known, POPULAR.into_iter());
        let ids: Vec<_> = a.items.iter().map(|i| i.item_id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c", "new-3", "new-1"], "newest first, only the shopper's categories");
        // No category to go on: the model's answer stands.
        let mut a = answer(&["a", "b", "c", "d", "e"]);
        cat.apply(&mut a, &req(&["x"], 5), known, POPULAR.into_iter());
        assert_eq!(a.items.len(), 5);
        assert!(a.items.iter().all(|i| !i.item_id.starts_with("new")));
    }
}
