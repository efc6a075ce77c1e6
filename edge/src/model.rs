//! The edge model, catalog and popular list, embedded in the worker at build
//! time (see `build.rs`) and built once per isolate.

use std::rc::Rc;

use shared::contract::ModelKind;
use shared::wire::{ModelInfo, RecommendationResponse, Source, ValidRequest};
use shared::{ModelSet, ModelSetError, Recommender};

const MANIFEST: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/manifest.json"));
const CATALOG: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/catalog.json"));
const EDGE_ONNX: &[u8] = include_bytes!(concat!(env!("EDGEREC_MODEL_DIR"), "/edge.onnx"));

/// Backend name in answers' `model.backend`.
pub const BACKEND: &str = "tract-wasm";

/// The verified, planned edge model and its catalog.
pub struct EdgeModel {
    recommender: Recommender,
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
        let set = ModelSet::load(
            |name| match name {
                "manifest.json" => Ok(MANIFEST.to_vec()),
                "catalog.json" => Ok(CATALOG.to_vec()),
                "edge.onnx" => Ok(EDGE_ONNX.to_vec()),
                other => Err(format!("{other} is not embedded in the worker")),
            },
            &[ModelKind::Edge],
        )?;
        let recommender = set.models.into_iter().next().ok_or(LoadError::NoEdgeModel)?;
        Ok(EdgeModel { recommender, version: set.manifest.version, dataset: set.manifest.dataset })
    }

    fn info(&self, name: &str) -> ModelInfo {
        ModelInfo { name: name.into(), version: self.version.clone(), backend: BACKEND.into(), dataset: self.dataset.clone() }
    }

    /// Items the edge model scores (the most popular prefix of the catalog).
    pub fn n_items(&self) -> usize {
        self.recommender.model().n_items()
    }

    /// Items in the catalog.
    pub fn catalog_items(&self) -> usize {
        self.recommender.catalog().len()
    }

    /// Catalog index of `id`, if the embedded catalog has it.
    pub fn catalog_index(&self, id: &str) -> Option<usize> {
        self.recommender.catalog().index_of(id)
    }

    /// The edge model's answer; `source` is popular when no history item is
    /// among the items it covers.
    ///
    /// # Errors
    /// The model run's error, as text.
    pub fn recommend(&self, req: &ValidRequest) -> Result<RecommendationResponse, String> {
        let rec = self.recommender.recommend(&req.history, req.k, req.exclude_seen).map_err(|e| e.to_string())?;
        Ok(self.recommender.policy().response(&rec, Source::Edge, self.info("edge")))
    }

    /// The popular list (minus seen items when asked).
    pub fn popular(&self, req: &ValidRequest) -> RecommendationResponse {
        let policy = self.recommender.policy();
        let rec = policy.finish(policy.prepare(&req.history), None, req.k, req.exclude_seen);
        policy.response(&rec, Source::Popular, self.info("popular"))
    }
}
