//! The serving model and its hot reload.
//!
//! A reload reads a model directory, verifies every file against the
//! manifest's sha256, builds the backend, warms it with a real query and only
//! then swaps it in atomically (`ArcSwap`). Any failure leaves the current
//! model serving. Requests hold an `Arc` to the model they started with, so
//! in-flight requests finish on it even while a swap happens. The previous
//! model is kept for `/admin/rollback`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use shared::{Manifest, ModelFiles, ModelKind, RankingPolicy};

use crate::backend::{self, OrtRuntime};
use crate::batcher::{BatchConfig, Batcher};
use crate::config::BackendPref;

/// A model ready to serve.
pub struct LoadedModel {
    /// The directory it came from.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Catalog + ranking around the model.
    pub policy: RankingPolicy,
    /// Batched access to the backend.
    pub batcher: Batcher,
    /// Backend name (`ort-cuda`, `ort-cpu`, `tract`).
    pub backend: &'static str,
    /// Why that backend.
    pub backend_reason: String,
    /// Load + warm-up time, seconds.
    pub load_seconds: f64,
}

impl LoadedModel {
    /// Model version (from the manifest).
    pub fn version(&self) -> &str {
        &self.manifest.version
    }
}

/// How the store builds models.
pub struct LoadSettings {
    /// Backend preference.
    pub backend: BackendPref,
    /// The ONNX Runtime, if its library loaded.
    pub ort: Option<OrtRuntime>,
    /// Batching.
    pub batch: BatchConfig,
}

/// Current and previous model, plus the outcome of the last reload.
pub struct ModelStore {
    current: ArcSwapOption<LoadedModel>,
    previous: Mutex<Option<Arc<LoadedModel>>>,
    last_error: Mutex<Option<String>>,
    settings: LoadSettings,
}

impl ModelStore {
    /// An empty store (not ready until the first load succeeds).
    pub fn new(settings: LoadSettings) -> Self {
        ModelStore { current: ArcSwapOption::empty(), previous: Mutex::new(None), last_error: Mutex::new(None), settings }
    }

    /// The serving model, if any.
    pub fn current(&self) -> Option<Arc<LoadedModel>> {
        self.current.load_full()
    }

    /// The last failed load's reason, cleared by a success.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Description of the ONNX Runtime, if loaded.
    pub fn ort_description(&self) -> Option<&str> {
        self.settings.ort.as_ref().map(|o| o.describe.as_str())
    }

    /// Loads, verifies and warms `dir`, then swaps it in.
    ///
    /// # Errors
    /// Any failure, as text; the current model keeps serving.
    pub async fn load(self: &Arc<Self>, dir: &Path) -> Result<Arc<LoadedModel>, String> {
        let store = self.clone();
        let dir = dir.to_path_buf();
        // Reading, hashing and compiling a model is blocking work.
        let built = tokio::task::spawn_blocking(move || store.build(&dir)).await.map_err(|e| format!("load task failed: {e}"))?;
        let result = match built {
            Ok(model) => warm(model).await,
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(model) => {
                let model = Arc::new(model);
                let old = self.current.swap(Some(model.clone()));
                if let Some(old) = old {
                    *self.previous.lock().unwrap_or_else(|p| p.into_inner()) = Some(old);
                }
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                metrics::counter!("model_reloads_total", "result" => "ok").increment(1);
                tracing::info!(version = model.version(), backend = model.backend, reason = %model.backend_reason, seconds = model.load_seconds, dir = %model.dir.display(), "model loaded");
                Ok(model)
            }
            Err(e) => {
                metrics::counter!("model_reloads_total", "result" => "error").increment(1);
                tracing::error!(error = %e, "model load refused; the current model keeps serving");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                Err(e)
            }
        };
        self.publish_info();
        outcome
    }

    /// Swaps the previous model back in.
    ///
    /// # Errors
    /// When there is no previous model.
    pub fn rollback(&self) -> Result<Arc<LoadedModel>, String> {
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        let back = previous.take().ok_or("no previous model to roll back to")?;
        let replaced = self.current.swap(Some(back.clone()));
        *previous = replaced;
        tracing::info!(version = back.version(), "rolled back");
        drop(previous);
        self.publish_info();
        Ok(back)
    }

    fn build(&self, dir: &Path) -> Result<LoadedModel, String> {
        let started = Instant::now();
        let files = ModelFiles::load_dir(dir, &[ModelKind::Full]).map_err(|e| format!("{}: {e}", dir.display()))?;
        let entry = files.manifest.model(ModelKind::Full).map_err(|e| e.to_string())?.clone();
        let policy = RankingPolicy::new(files.catalog, ModelKind::Full, entry.n_items).map_err(|e| e.to_string())?;
        let (_, onnx) = &files.models[0];
        let chosen = backend::choose(self.settings.backend, self.settings.ort.as_ref(), onnx, entry.n_items, self.settings.batch.workers)
            .map_err(|e| format!("{}: {e:#}", entry.file))?;
        let backend = chosen.backend.name();
        Ok(LoadedModel {
            dir: dir.to_path_buf(),
            manifest: files.manifest,
            policy,
            batcher: Batcher::start(chosen.backend, self.settings.batch),
            backend,
            backend_reason: chosen.reason,
            load_seconds: started.elapsed().as_secs_f64(),
        })
    }

    fn publish_info(&self) {
        if let Some(m) = self.current() {
            metrics::gauge!("model_info", "version" => m.version().to_string(), "backend" => m.backend).set(1.0);
            metrics::gauge!("model_items").set(m.policy.n_items() as f64);
        }
    }
}

/// Runs one real query (the most popular item's neighbours) through the new
/// model before it serves, so the first shopper pays no warm-up and a model
/// that cannot answer is refused.
async fn warm(mut model: LoadedModel) -> Result<LoadedModel, String> {
    let started = Instant::now();
    let ranked = model.batcher.run(vec![(0, 1.0)]).await.map_err(|e| format!("warm-up query failed: {e}"))?;
    if ranked.indices.is_empty() {
        return Err("warm-up query returned no items".into());
    }
    model.load_seconds += started.elapsed().as_secs_f64();
    Ok(model)
}
