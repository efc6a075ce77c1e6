//! The edge model, catalog and popular list, embedded in the worker at build
//! time (see `build.rs`) and built once per isolate.
//!
//! The worker holds the head of the catalog with titles (the items its model
//! scores, at least [`shared::catalog::EDGE_CATALOG_MIN_ITEMS`]) and every id
//! of the whole catalog as a fingerprint, so a catalog of 10⁶ items fits an
//! isolate's 128 MB: ids of the tail are known (forwarded to the origin,
//! checked in its answers) without being scored here.

use std::rc::Rc;

use shared::catalog::{CATALOG_IDS_FILE, CatalogIds, EDGE_CATALOG_FILE};
use shared::contract::ModelKind;
use shared::wire::{ModelInfo, RecommendationResponse, Source, ValidRequest};
use shared::{ModelSet, ModelSetError, Recommender};

const MANIFEST: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/manifest.json"));
const CATALOG: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/edge_catalog.json"));
const CATALOG_IDS: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/catalog_ids.bin"));
const EDGE_ONNX: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/edge.onnx"));

/// Backend name in answers' `model.backend`.
pub const BACKEND: &str = "tract-wasm";

/// The verified, planned edge model and its catalog.
pub struct EdgeModel {
    recommender: Recommender,
    /// Every id of the whole catalog.
    ids: CatalogIds,
    /// How much of the catalog the model covers (`metrics.edge_coverage` of the manifest).
    pub coverage: serde_json::Value,
    /// Manifest version of the embedded model directory.
    pub version: String,
    /// Dataset the model was trained on.
    pub dataset: String,
}

/// Why the embedded model directory cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file failed its sha256 check, or the manifest, catalog or model is unusable.
    #[error("embedded model directory refused: {0}")]
    ModelSet(#[from] ModelSetError),
    /// The manifest lists no edge model.
    #[error("the embedded manifest lists no edge model")]
    NoEdgeModel,
    /// `catalog_ids.bin` is unusable.
    #[error("embedded catalog ids refused: {0}")]
    CatalogIds(#[from] shared::catalog::CatalogIdsError),
}

thread_local! {
    /// Built on first use, which `#[event(start)]` makes the isolate's start-up.
    static MODEL: Rc<Result<EdgeModel, LoadError>> = Rc::new(EdgeModel::load());
}

/// The isolate's model, or why it failed to load.
pub fn get() -> Rc<Result<EdgeModel, LoadError>> {
    MODEL.with(Rc::clone)
}

impl EdgeModel {
    /// Verifies the embedded files against the manifest's sha256 and plans the model.
    fn load() -> Result<Self, LoadError> {
        let set = ModelSet::load_with_catalog(
            |name| match name {
                "manifest.json" => Ok(MANIFEST.to_vec()),
                EDGE_CATALOG_FILE => Ok(CATALOG.to_vec()),
                "edge.onnx" => Ok(EDGE_ONNX.to_vec()),
                other => Err(format!("{other} is not embedded in the worker")),
            },
            &[ModelKind::Edge],
            EDGE_CATALOG_FILE,
        )?;
        set.manifest.verify(CATALOG_IDS_FILE, CATALOG_IDS).map_err(|e| LoadError::ModelSet(e.into()))?;
        let ids = CatalogIds::from_bytes(CATALOG_IDS)?;
        let recommender = set.models.into_iter().next().ok_or(LoadError::NoEdgeModel)?;
        let coverage = set.manifest.metrics.get("edge_coverage").cloned().unwrap_or(serde_json::Value::Null);
        Ok(EdgeModel { recommender, ids, coverage, version: set.manifest.version, dataset: set.manifest.dataset })
    }

    fn info(&self, name: &str) -> ModelInfo {
        ModelInfo { name: name.into(), version: self.version.clone(), backend: BACKEND.into(), dataset: self.dataset.clone() }
    }

    /// Items the edge model scores (the most popular prefix of the catalog).
    pub fn n_items(&self) -> usize {
        self.recommender.model().n_items()
    }

    /// Items in the whole catalog.
    pub fn catalog_items(&self) -> usize {
        self.ids.len()
    }

    /// Items of the catalog embedded with titles (its head).
    pub fn head_items(&self) -> usize {
        self.recommender.catalog().len()
    }

    /// Whether `id` is in the whole catalog.
    pub fn knows(&self, id: &str) -> bool {
        self.recommender.catalog().index_of(id).is_some() || self.ids.contains(id)
    }

    /// The edge model's answer; `source` is popular when no history item is
    /// among the items it covers.
    ///
    /// # Errors
    /// The model run's error, as text.
    pub fn recommend(&self, req: &ValidRequest) -> Result<RecommendationResponse, String> {
        // Ids of the catalog's tail are known, just not scored here: they are
        // not "unknown" to the shopper's answer.
        let catalog = self.recommender.catalog();
        let history: Vec<String> = req.history.iter().filter(|id| catalog.index_of(id).is_some() || !self.ids.contains(id)).cloned().collect();
        let rec = self.recommender.recommend(&history, req.k, req.exclude_seen).map_err(|e| e.to_string())?;
        Ok(self.recommender.policy().response(&rec, Source::Edge, self.info("edge")))
    }

    /// The embedded catalog head, best first (`Catalog::popular_order`).
    pub fn popular_order(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.recommender.catalog().popular_order()
    }

    /// The popular list (minus seen items when asked).
    pub fn popular(&self, req: &ValidRequest) -> RecommendationResponse {
        let policy = self.recommender.policy();
        let rec = policy.finish(policy.prepare(&req.history), None, req.k, req.exclude_seen);
        policy.response(&rec, Source::Popular, self.info("popular"))
    }
}
