//! What the edge accepts from the origin. A well-formed `200` is not yet an
//! answer: an origin that returns too few items, ids outside the catalog,
//! the shopper's own items, unordered or non-finite scores, or another
//! dataset's model (an `ORIGIN_URL` pointing at the wrong deployment) is
//! failing, even though HTTP says it succeeded. Such an answer is refused as
//! [`crate::failover_path::OriginFailure::Malformed`]: it counts against the
//! origin, is not cached, and the shopper gets the edge model's answer.

use std::collections::HashSet;

use crate::wire::{RecommendationResponse, Source, ValidRequest};

/// Largest origin answer the edge reads, bytes, counted after decompression
/// (1 MiB). The largest valid answer is about 150 KB: 100 items with ids of
/// 256 bytes and titles, and a warning naming up to 500 unknown ids of 256
/// bytes. A wrong or compromised origin (or a gzip bomb) must not take the
/// isolate past its 128 MB.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Appends `chunk` of an origin answer being read as a stream, refusing it
/// before the copy once the answer would pass [`MAX_ANSWER_BYTES`].
///
/// # Errors
/// What is wrong (for [`crate::failover_path::OriginFailure::Malformed`]:
/// such an origin is unusable and counts against itself).
pub fn append_answer_chunk(body: &mut Vec<u8>, chunk: &[u8]) -> Result<(), String> {
    if body.len().saturating_add(chunk.len()) > MAX_ANSWER_BYTES {
        return Err(format!("answer is over {MAX_ANSWER_BYTES} bytes (after decompression)"));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// What the edge knows to check an origin answer against.
pub struct Expected<'a> {
    /// The dataset of the edge's own model (the manifest's `dataset`).
    pub dataset: &'a str,
    /// The edge's model version: when the origin reports the same version it
    /// serves the same catalog, so every id must be in it.
    pub version: &'a str,
    /// Items in the edge's catalog.
    pub catalog_len: usize,
    /// Whether an id is in the edge's (whole) catalog.
    pub knows: &'a dyn Fn(&str) -> bool,
}

/// Checks `answer` against the request it answers and the edge's catalog.
///
/// The rules: `source` is `origin` or `popular`; the model names `dataset`;
/// exactly `min(k, items the catalog can offer)` items, where the catalog
/// can offer its size less the distinct seen items when `exclude_seen`;
/// no id twice; no seen id when `exclude_seen`; finite scores, never
/// increasing; and, when the origin serves the edge's own model version,
/// every id in the edge's catalog (a newer origin model may know newer items).
///
/// # Errors
/// The first broken rule, for the warning and the log.
pub fn check(answer: &RecommendationResponse, req: &ValidRequest, expected: &Expected<'_>) -> Result<(), String> {
    if !matches!(answer.source, Source::Origin | Source::Popular) {
        return Err(format!("source {:?} is not an origin's", answer.source.as_str()));
    }
    if answer.model.dataset != expected.dataset {
        return Err(format!("model of dataset {:?}, the edge serves {:?}", answer.model.dataset, expected.dataset));
    }
    let seen: HashSet<&str> = req.history.iter().map(String::as_str).collect();
    let offered = if req.exclude_seen {
        let known_seen = seen.iter().filter(|id| (expected.knows)(id)).count();
        expected.catalog_len.saturating_sub(known_seen)
    } else {
        expected.catalog_len
    };
    let want = req.k.min(offered);
    if answer.items.len() != want {
        return Err(format!("{} items for k={} (expected {want})", answer.items.len(), req.k));
    }
    let same_catalog = answer.model.version == expected.version;
    let mut ids = HashSet::with_capacity(answer.items.len());
    let mut previous = f32::INFINITY;
    for (i, item) in answer.items.iter().enumerate() {
        if !ids.insert(item.item_id.as_str()) {
            return Err(format!("items[{i}]: {:?} appears twice", item.item_id));
        }
        if req.exclude_seen && seen.contains(item.item_id.as_str()) {
            return Err(format!("items[{i}]: {:?} is in the history and exclude_seen is true", item.item_id));
        }
        if same_catalog && !(expected.knows)(&item.item_id) {
            return Err(format!("items[{i}]: {:?} is not in the catalog of model {}", item.item_id, expected.version));
        }
        if !item.score.is_finite() || item.score > previous {
            return Err(format!("items[{i}]: score {} is not finite or rises after {previous}", item.score));
        }
        previous = item.score;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening round 2, item 5: the edge read an origin's body whole.
    #[test]
    fn answers_stop_at_the_limit_before_copying() {
        let mut body = Vec::new();
        let chunk = vec![b' '; 64 * 1024];
        for _ in 0..16 {
            append_answer_chunk(&mut body, &chunk).unwrap();
        }
        assert!(append_answer_chunk(&mut body, b"x").unwrap_err().contains("1048576"));
        assert_eq!(body.len(), MAX_ANSWER_BYTES, "the refused chunk was not copied");
    }
    use crate::wire::{ModelInfo, RecommendedItem};

    fn knows(id: &str) -> bool {
        id.parse::<usize>().is_ok_and(|i| i < 100)
    }

    fn expected() -> Expected<'static> {
        Expected { dataset: "movielens", version: "v1", catalog_len: 100, knows: &knows }
    }

    fn req(history: &[&str], k: usize) -> ValidRequest {
        ValidRequest { history: history.iter().map(|s| s.to_string()).collect(), k, exclude_seen: true, ..Default::default() }
    }

    fn answer(ids: &[&str]) -> RecommendationResponse {
        RecommendationResponse {
            items: ids.iter().enumerate().map(|(i, id)| RecommendedItem { item_id: id.to_string(), score: 10.0 - i as f32, title: None }).collect(),
            source: Source::Origin,
            model: ModelInfo { name: "full".into(), version: "v1".into(), backend: "tract".into(), dataset: "movielens".into() },
            warnings: vec![],
            catalog_version: None,
        }
    }

    #[test]
    fn a_good_answer_passes() {
        assert_eq!(check(&answer(&["1", "2", "3"]), &req(&["50"], 3), &expected()), Ok(()));
    }

    #[test]
    fn each_broken_rule_is_refused() {
        let r = req(&["50", "60"], 3);
        let e = expected();
        let cases: Vec<(&str, RecommendationResponse)> = vec![
            ("empty", answer(&[])),
            ("too few", answer(&["1", "2"])),
            ("too many", answer(&["1", "2", "3", "4"])),
            ("unknown id", answer(&["1", "2", "999"])),
            ("seen item", answer(&["1", "50", "3"])),
            ("duplicate", answer(&["1", "1", "3"])),
            ("rising score", {
                let mut a = answer(&["1", "2", "3"]);
                a.items[2].score = 20.0;
                a
            }),
            ("NaN score", {
                let mut a = answer(&["1", "2", "3"]);
                a.items[0].score = f32::NAN;
                a
            }),
            ("other dataset", {
                let mut a = answer(&["1", "2", "3"]);
                a.model.dataset = "instacart".into();
                a
            }),
            ("no dataset", {
                let mut a = answer(&["1", "2", "3"]);
                a.model.dataset = String::new();
                a
            }),
            ("edge source", {
                let mut a = answer(&["1", "2", "3"]);
                a.source = Source::Edge;
                a
            }),
        ];
        for (what, a) in cases {
            assert!(check(&a, &r, &e).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn a_newer_origin_model_may_name_items_the_edge_lacks() {
        let mut a = answer(&["1", "2", "999"]);
        a.model.version = "v2".into();
        assert_eq!(check(&a, &req(&["50"], 3), &expected()), Ok(()));
    }

    #[test]
    fn small_catalogs_answer_fewer_than_k() {
        let e = Expected { catalog_len: 4, ..expected() };
        assert_eq!(check(&answer(&["0", "2"]), &req(&["1", "3", "1"], 10), &e), Ok(()), "4 items less 2 distinct seen");
        let keep = ValidRequest { exclude_seen: false, ..req(&["1"], 10) };
        assert_eq!(check(&answer(&["0", "1", "2", "3"]), &keep, &e), Ok(()));
    }
}
