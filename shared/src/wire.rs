//! JSON types of the recommendation API, shared by origin and edge so both
//! speak exactly the same protocol.

use serde::{Deserialize, Deserializer, Serialize};

use crate::contract::{MAX_HISTORY, MAX_K};

/// Default number of items when a request gives no `k`.
pub const DEFAULT_K: usize = 10;

/// Longest accepted item id, bytes.
pub const MAX_ID_BYTES: usize = 256;

/// Separator of ids in the `GET` form's `history` parameter; ids may not contain it.
pub const HISTORY_SEPARATOR: char = ',';

/// Body of `POST /v1/recommendations` (the `GET` form carries the same fields
/// as query parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationRequest {
    /// Opaque shopper id, for logs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The shopper's items, oldest first; ids as strings or integers.
    #[serde(deserialize_with = "item_ids")]
    pub history: Vec<String>,
    /// Items wanted, `1..=100`; default [`DEFAULT_K`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<usize>,
    /// Leave the history's items out of the answer; default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude_seen: Option<bool>,
    /// Only items of this category (the live catalog's `categories`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// Items never to recommend in this answer (e.g. what the cart holds), at most [`MAX_EXCLUDE`].
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "item_ids")]
    pub exclude: Vec<String>,
}

/// Most ids in a request's `exclude`.
pub const MAX_EXCLUDE: usize = 100;

fn item_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    let ids = Vec::<Id>::deserialize(d)?;
    Ok(ids
        .into_iter()
        .map(|id| match id {
            Id::Text(s) => s,
            Id::Number(n) => n.to_string(),
        })
        .collect())
}

/// A request whose fields are in range.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidRequest {
    /// Item ids, oldest first, at most [`MAX_HISTORY`].
    pub history: Vec<String>,
    /// `1..=MAX_K`.
    pub k: usize,
    /// Whether history items are removed from the answer.
    pub exclude_seen: bool,
    /// The shopper, when logged in: the origin reads an empty history from the store.
    pub user_id: Option<String>,
    /// Only items of this category.
    pub category: Option<String>,
    /// Items left out of the answer.
    pub exclude: Vec<String>,
}

/// An id list of at most `max` ids, each trimmed (the `GET` form's `50, 172`
/// is two ids: both forms trim, so the edge and the origin see the same id
/// whichever form carried it) and checked by the API's id rules.
fn checked_ids(field: &'static str, mut ids: Vec<String>, max: usize) -> Result<Vec<String>, FieldError> {
    if ids.len() > max {
        return Err(FieldError { field, reason: format!("at most {max} items, got {}", ids.len()) });
    }
    for (pos, id) in ids.iter_mut().enumerate() {
        if id.trim().len() != id.len() {
            *id = id.trim().to_string();
        }
        check_item_id(id).map_err(|why| FieldError { field, reason: format!("item id at position {pos} {why}") })?;
    }
    Ok(ids)
}

/// A request field that is out of range (HTTP 422 in both servers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// JSON name of the field (`k`, `history`).
    pub field: &'static str,
    /// What is wrong, for humans.
    pub reason: String,
}

impl RecommendationRequest {
    /// Checks ranges: `k` in `1..=MAX_K`, history at most [`MAX_HISTORY`]
    /// items, ids of 1..=[`MAX_ID_BYTES`] bytes without [`HISTORY_SEPARATOR`].
    ///
    /// # Errors
    /// [`FieldError`] naming the first offending field.
    pub fn validate(self) -> Result<ValidRequest, FieldError> {
        let k = self.k.unwrap_or(DEFAULT_K);
        if !(1..=MAX_K).contains(&k) {
            return Err(FieldError { field: "k", reason: format!("must be between 1 and {MAX_K}, got {k}") });
        }
        let history = checked_ids("history", self.history, MAX_HISTORY)?;
        let exclude = checked_ids("exclude", self.exclude, MAX_EXCLUDE)?;
        if let Some(c) = &self.category
            && (c.is_empty() || c.len() > MAX_ID_BYTES)
        {
            return Err(FieldError { field: "category", reason: format!("must be 1..={MAX_ID_BYTES} bytes, got {}", c.len()) });
        }
        if let Some(u) = &self.user_id
            && (u.is_empty() || u.len() > MAX_ID_BYTES)
        {
            return Err(FieldError { field: "user_id", reason: format!("must be 1..={MAX_ID_BYTES} bytes, got {}", u.len()) });
        }
        Ok(ValidRequest { history, k, exclude_seen: self.exclude_seen.unwrap_or(true), user_id: self.user_id, category: self.category, exclude })
    }
}

/// The rules every item id follows, in requests (edge and origin alike) and
/// in the trainer's input: 1..=[`MAX_ID_BYTES`] bytes, no leading or trailing
/// whitespace (requests trim it first), no [`HISTORY_SEPARATOR`] (the `GET`
/// form separates ids with it: such an id could only be split into others on
/// its way to the origin).
///
/// # Errors
/// What is wrong, as a phrase that follows "item id …" (`is empty`, …).
pub fn check_item_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        Err("is empty".into())
    } else if id.len() > MAX_ID_BYTES {
        Err(format!("is {} bytes, longer than {MAX_ID_BYTES}", id.len()))
    } else if id.trim().len() != id.len() {
        Err("has leading or trailing whitespace".into())
    } else if id.contains(HISTORY_SEPARATOR) {
        Err(format!("contains {HISTORY_SEPARATOR:?}, the history separator"))
    } else {
        Ok(())
    }
}

/// Where an answer came from (`source` in the body, `x-rec-source` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The origin's full model.
    Origin,
    /// The edge model inside the worker.
    Edge,
    /// A fresh cached answer.
    Cache,
    /// A cached answer past its freshness, served because everything else failed (RFC 5861 stale-if-error).
    StaleCache,
    /// The bundled most-popular list.
    Popular,
}

impl Source {
    /// The name used in the body's `source` and in `x-rec-source` (kebab-case, as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Origin => "origin",
            Source::Edge => "edge",
            Source::Cache => "cache",
            Source::StaleCache => "stale-cache",
            Source::Popular => "popular",
        }
    }
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendedItem {
    /// The shop's item id.
    pub item_id: String,
    /// Model score (higher is better; comparable within one answer only).
    pub score: f32,
    /// Title, when the catalog has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

/// Which model produced an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// `full` or `edge` (or `popular`).
    pub name: String,
    /// Manifest version of the model directory.
    pub version: String,
    /// Inference backend (`tract`, `ort-cpu`, `ort-cuda`, `tract-wasm`).
    pub backend: String,
    /// Dataset the model was trained on (the manifest's `dataset`): the edge
    /// refuses origin answers from another dataset's model.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub dataset: String,
}

/// Body of a successful recommendation answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendationResponse {
    /// Exactly `k` items when the catalog has them, best first.
    pub items: Vec<RecommendedItem>,
    /// Where the answer came from.
    pub source: Source,
    /// The model behind it.
    pub model: ModelInfo,
    /// Non-fatal problems, e.g. unknown item ids that were ignored.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// The live catalog's version whose rules the answer follows (unavailable items left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_version: Option<u64>,
}

/// Body of every error answer (4xx/5xx).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, for humans.
    pub error: String,
    /// The offending request field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_may_be_strings_or_integers_and_defaults_apply() {
        let r: RecommendationRequest = serde_json::from_str(r#"{"history":["50", 172]}"#).unwrap();
        let v = r.validate().unwrap();
        assert_eq!(v.history, vec!["50", "172"]);
        assert_eq!((v.k, v.exclude_seen), (DEFAULT_K, true));
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let r = RecommendationRequest { user_id: None, history: vec![], k: Some(0), exclude_seen: None, category: None, exclude: vec![] };
        assert_eq!(r.validate().unwrap_err().field, "k");
        let r =
            RecommendationRequest { user_id: None, history: vec!["1".into(); MAX_HISTORY + 1], k: None, exclude_seen: None, category: None, exclude: vec![] };
        assert_eq!(r.validate().unwrap_err().field, "history");
        assert!(serde_json::from_str::<RecommendationRequest>(r#"{"history":[-1]}"#).is_err());
        assert!(serde_json::from_str::<RecommendationRequest>(r#"{"history":[],"bogus":1}"#).is_err());
    }

    #[test]
    fn ids_holding_the_separator_are_refused_not_split() {
        let r = RecommendationRequest { user_id: None, history: vec!["50".into(), "1,2".into()], k: None, exclude_seen: None, category: None, exclude: vec![] };
        let e = r.validate().unwrap_err();
        assert_eq!(e.field, "history");
        assert!(e.reason.contains("position 1"), "{e}");
    }

    /// Hardening round 2, item 2: `" "` passed the edge (JSON, not trimmed)
    /// and was refused by the origin (its `GET` form trims it to nothing).
    #[test]
    fn ids_are_trimmed_alike_in_both_forms_and_blank_ones_are_refused() {
        let r = |ids: &[&str]| RecommendationRequest {
            user_id: None,
            history: ids.iter().map(|s| s.to_string()).collect(),
            k: None,
            exclude_seen: None,
            category: None,
            exclude: vec![],
        };
        let e = r(&["50", " "]).validate().unwrap_err();
        assert_eq!(e.field, "history");
        assert!(e.reason.contains("position 1") && e.reason.contains("empty"), "{e}");
        assert_eq!(r(&[" 50\t", "172"]).validate().unwrap().history, vec!["50", "172"]);
        assert!(r(&[&"x".repeat(MAX_ID_BYTES)]).validate().is_ok());
        assert!(r(&[&"x".repeat(MAX_ID_BYTES + 1)]).validate().is_err());
        assert!(check_item_id(" a").is_err() && check_item_id("a b").is_ok());
    }

    #[test]
    fn source_names_match_the_api() {
        assert_eq!(serde_json::to_string(&Source::StaleCache).unwrap(), r#""stale-cache""#);
        for s in [Source::Origin, Source::Edge, Source::Cache, Source::StaleCache, Source::Popular] {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.as_str()), "header and body agree");
        }
    }
}
