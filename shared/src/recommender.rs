//! Catalog + model: the shop's item ids in, ranked items out.
//!
//! [`RankingPolicy`] holds the two steps around a model run
//! ([`RankingPolicy::prepare`] and [`RankingPolicy::finish`]), so a server can
//! batch the runs of many requests on any backend; [`Recommender`] pairs it
//! with a tract model for the one-call case.

use crate::catalog::Catalog;
use crate::contract::{self, ModelKind};
use crate::inference::{InferenceError, OnnxRecommender, Ranked};
use crate::wire::{ModelInfo, RecommendationResponse, RecommendedItem, Source};

/// What happens around a model run: ids → model rows, model output → `k` items.
#[derive(Debug, Clone)]
pub struct RankingPolicy {
    catalog: Catalog,
    n_items: usize,
}

/// A tract model and the catalog it indexes.
#[derive(Debug, Clone)]
pub struct Recommender {
    policy: RankingPolicy,
    model: OnnxRecommender,
}

/// Why a recommender could not be built or answer.
#[derive(Debug, thiserror::Error)]
pub enum RecommenderError {
    /// The model file failed to load or run.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// Model and catalog disagree.
    #[error("{kind:?} model scores {model} items but the catalog has only {catalog}")]
    CatalogMismatch {
        /// Which model.
        kind: ModelKind,
        /// The model's item count.
        model: usize,
        /// The catalog's item count.
        catalog: usize,
    },
}

/// A request mapped onto the model, ready to run.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    /// `(index, weight)` pairs for [`OnnxRecommender::run`], most recent
    /// [`contract::MAX_HISTORY`] entries, only indices the model covers.
    pub row: Vec<(usize, f32)>,
    /// Every known history index (for "exclude seen"), including ones the model does not cover.
    pub seen: Vec<usize>,
    /// Request ids not in the catalog.
    pub unknown: Vec<String>,
    /// Known ids the model does not cover (edge model: outside its top-n items).
    pub uncovered: usize,
}

/// A finished answer in model indices.
#[derive(Debug, Clone, PartialEq)]
pub struct Recommendation {
    /// `(index, score)` best first; `k` long when the catalog has enough items.
    pub items: Vec<(usize, f32)>,
    /// Request ids not in the catalog, ignored.
    pub unknown: Vec<String>,
    /// True when the model had nothing to go on and the popular list answered.
    pub popular_fallback: bool,
}

impl RankingPolicy {
    /// A policy for a model over the first `n_items` catalog items.
    ///
    /// # Errors
    /// [`RecommenderError::CatalogMismatch`] when the model scores items the catalog lacks.
    pub fn new(catalog: Catalog, kind: ModelKind, n_items: usize) -> Result<Self, RecommenderError> {
        if n_items > catalog.len() {
            return Err(RecommenderError::CatalogMismatch { kind, model: n_items, catalog: catalog.len() });
        }
        Ok(RankingPolicy { catalog, n_items })
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Items the model covers (a catalog prefix).
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Maps external ids (oldest first, each with weight 1) onto the model.
    pub fn prepare<S: AsRef<str>>(&self, history: &[S]) -> Prepared {
        let resolved = self.catalog.resolve(history);
        let covered: Vec<usize> = resolved.indices.iter().copied().filter(|&i| i < self.n_items).collect();
        let start = covered.len().saturating_sub(contract::MAX_HISTORY);
        Prepared {
            row: covered[start..].iter().map(|&i| (i, 1.0)).collect(),
            uncovered: resolved.indices.len() - covered.len(),
            seen: resolved.indices,
            unknown: resolved.unknown,
        }
    }

    /// Turns a model row into `k` items: drops seen items when asked, fills
    /// from the popular list when the model has too few (or nothing to go on).
    pub fn finish(&self, prepared: Prepared, ranked: Option<&Ranked>, k: usize, exclude_seen: bool) -> Recommendation {
        let mut items: Vec<(usize, f32)> = Vec::with_capacity(k);
        let taken = |items: &Vec<(usize, f32)>, i: usize| (exclude_seen && prepared.seen.contains(&i)) || items.iter().any(|&(j, _)| j == i);
        let popular_fallback = prepared.row.is_empty() || ranked.is_none();
        if let (false, Some(ranked)) = (popular_fallback, ranked) {
            for (&i, &s) in ranked.indices.iter().zip(&ranked.scores) {
                if items.len() == k {
                    break;
                }
                if !taken(&items, i) {
                    items.push((i, s));
                }
            }
        }
        // The catalog is ordered by popularity, so index order is the popular list.
        for (i, item) in self.catalog.items().iter().enumerate() {
            if items.len() == k {
                break;
            }
            if !taken(&items, i) {
                // Fill items rank below every model item: reuse the lowest model score.
                let score = if popular_fallback { item.popularity as f32 } else { items.last().map_or(0.0, |&(_, s)| s) };
                items.push((i, score));
            }
        }
        Recommendation { items, unknown: prepared.unknown, popular_fallback }
    }

    /// The wire answer for `rec`: catalog ids and titles, `source` = `model_source`
    /// (or [`Source::Popular`] when the popular list answered), unknown ids
    /// named in `warnings`.
    pub fn response(&self, rec: &Recommendation, model_source: Source, model: ModelInfo) -> RecommendationResponse {
        let mut warnings = Vec::new();
        if !rec.unknown.is_empty() {
            warnings.push(format!("unknown item ids ignored: {}", rec.unknown.join(", ")));
        }
        RecommendationResponse {
            items: rec
                .items
                .iter()
                .filter_map(|&(i, score)| self.catalog.get(i).map(|item| RecommendedItem { item_id: item.id.clone(), score, title: item.title.clone() }))
                .collect(),
            source: if rec.popular_fallback { Source::Popular } else { model_source },
            model,
            warnings,
            catalog_version: None,
        }
    }
}

impl Recommender {
    /// Pairs a loaded model with its catalog.
    ///
    /// # Errors
    /// [`RecommenderError::CatalogMismatch`] when the model scores items the catalog lacks.
    pub fn new(catalog: Catalog, model: OnnxRecommender) -> Result<Self, RecommenderError> {
        Ok(Recommender { policy: RankingPolicy::new(catalog, model.kind(), model.n_items())?, model })
    }

    /// Loads the model from ONNX bytes and pairs it with `catalog`.
    ///
    /// # Errors
    /// As [`OnnxRecommender::from_bytes`] and [`Recommender::new`].
    pub fn from_bytes(catalog: Catalog, onnx: &[u8]) -> Result<Self, RecommenderError> {
        Recommender::new(catalog, OnnxRecommender::from_bytes(onnx)?)
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        self.policy.catalog()
    }

    /// The model.
    pub fn model(&self) -> &OnnxRecommender {
        &self.model
    }

    /// The policy around the model.
    pub fn policy(&self) -> &RankingPolicy {
        &self.policy
    }

    /// Maps external ids onto the model (see [`RankingPolicy::prepare`]).
    pub fn prepare<S: AsRef<str>>(&self, history: &[S]) -> Prepared {
        self.policy.prepare(history)
    }

    /// Recommends `k` items for a history of external ids (oldest first).
    ///
    /// # Errors
    /// [`RecommenderError::Inference`] if the model run fails.
    pub fn recommend<S: AsRef<str>>(&self, history: &[S], k: usize, exclude_seen: bool) -> Result<Recommendation, RecommenderError> {
        let prepared = self.policy.prepare(history);
        let ranked = if prepared.row.is_empty() { None } else { self.model.run(std::slice::from_ref(&prepared.row))?.pop() };
        Ok(self.policy.finish(prepared, ranked.as_ref(), k, exclude_seen))
    }
}
