//! The serving model and its hot reload.
//!
//! A reload reads a model directory, verifies every file against the
//! manifest's sha256, builds the backend, warms it with a real query and only
//! then swaps it in atomically (`ArcSwap`). Any failure leaves the current
//! model serving. Requests hold an `Arc` to the model they started with, so
//! in-flight requests finish on it even while a swap happens.
//!
//! Model changes (reload, SIGHUP, rollback) are serialized: one at a time, in
//! the order they were asked for, so a slow older reload can never override
//! a newer one. Each swap pushes the model it replaced onto a bounded history
//! of good versions; rollback walks back through it (the model rolled away
//! from is dropped, so a second rollback never brings a bad model back). Only
//! the newest history entry stays in memory (instant rollback); older ones
//! are reloaded from their directory and must still hold the recorded version.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwapOption;
use shared::{Manifest, ModelFiles, ModelKind, ModelSetError, RankingPolicy, RecommenderError};

use crate::backend::{self, OrtRuntime};
use crate::batcher::{BatchConfig, Batcher};
use crate::config::BackendPref;

/// Good versions kept for rollback.
pub const HISTORY_LEN: usize = 8;

/// A model ready to serve.
pub struct LoadedModel {
    /// The directory it came from (canonical).
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

/// Why a model change was refused; the serving model is untouched.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// A `path` outside the configured models root (after resolving `..` and links).
    #[error("{path} is not a directory under the models root {root}")]
    OutsideRoot {
        /// The path asked for.
        path: PathBuf,
        /// The models root.
        root: PathBuf,
    },
    /// The directory cannot be resolved (missing, unreadable).
    #[error("{path}: {source}")]
    Path {
        /// The path asked for.
        path: PathBuf,
        /// The file system's error.
        source: std::io::Error,
    },
    /// A file is missing, fails its sha256, or the manifest or catalog is malformed.
    #[error("{dir}: {source}")]
    Files {
        /// The model directory.
        dir: PathBuf,
        /// What was wrong.
        source: ModelSetError,
    },
    /// Model and catalog disagree.
    #[error("{0}")]
    Catalog(#[from] RecommenderError),
    /// No backend could load the model file.
    #[error("{file}: {reason}")]
    Backend {
        /// The model file.
        file: String,
        /// The backend's error chain.
        reason: String,
    },
    /// The warm-up query failed or returned nothing.
    #[error("warm-up query failed: {0}")]
    Warmup(String),
    /// The blocking load task died.
    #[error("load task failed: {0}")]
    Task(String),
    /// Nothing to roll back to.
    #[error("no previous model to roll back to")]
    NoPrevious,
    /// A history entry's directory now holds another version.
    #[error("rollback to {dir}: it now holds version {found}, version {expected} was recorded")]
    HistoryChanged {
        /// The directory.
        dir: PathBuf,
        /// The recorded version.
        expected: String,
        /// The version there now.
        found: String,
    },
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

/// A good version that served before the current one.
struct HistoryEntry {
    dir: PathBuf,
    version: String,
    /// Kept for the newest entry only (instant rollback).
    loaded: Option<Arc<LoadedModel>>,
}

/// The serving model, its history, and the outcome of the last reload.
pub struct ModelStore {
    current: ArcSwapOption<LoadedModel>,
    /// Held for the whole of a model change (FIFO: tokio's mutex is fair).
    changes: tokio::sync::Mutex<()>,
    /// Good versions before the current one, oldest first; locked only briefly,
    /// so readers never wait for a model change in progress.
    history: Mutex<Vec<HistoryEntry>>,
    last_error: Mutex<Option<String>>,
    /// The `model_info` series last set to 1 (version, backend).
    published: Mutex<Option<(String, &'static str)>>,
    settings: LoadSettings,
}

/// Resolves `requested` (absolute, or relative to the working directory) and
/// checks that it lies under `root`, both canonicalized, so neither `..` nor a
/// symbolic link leads out.
///
/// # Errors
/// [`ReloadError::Path`] when it cannot be resolved, [`ReloadError::OutsideRoot`].
pub fn resolve_under_root(root: &Path, requested: &Path) -> Result<PathBuf, ReloadError> {
    let canon = |p: &Path| std::fs::canonicalize(p).map_err(|source| ReloadError::Path { path: p.to_path_buf(), source });
    let root_c = canon(root)?;
    let dir = canon(requested)?;
    if dir.starts_with(&root_c) && dir.is_dir() { Ok(dir) } else { Err(ReloadError::OutsideRoot { path: requested.to_path_buf(), root: root.to_path_buf() }) }
}

impl ModelStore {
    /// An empty store (not ready until the first load succeeds).
    pub fn new(settings: LoadSettings) -> Self {
        ModelStore {
            current: ArcSwapOption::empty(),
            changes: tokio::sync::Mutex::new(()),
            history: Mutex::new(Vec::new()),
            last_error: Mutex::new(None),
            published: Mutex::new(None),
            settings,
        }
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

    /// Serves `model` at once, without reading, verifying or warming anything:
    /// for the router tests, whose fake backends have no model directory.
    #[cfg(test)]
    pub(crate) fn serve_unverified(&self, model: LoadedModel) {
        self.current.store(Some(Arc::new(model)));
    }

    /// Versions rollback would walk back through, newest first.
    pub fn history(&self) -> Vec<String> {
        self.good_versions().iter().rev().map(|e| e.version.clone()).collect()
    }

    fn good_versions(&self) -> std::sync::MutexGuard<'_, Vec<HistoryEntry>> {
        self.history.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads, verifies and warms `dir`, then swaps it in, after any model
    /// change asked for earlier has finished.
    ///
    /// # Errors
    /// [`ReloadError`]; the current model keeps serving.
    pub async fn load(self: &Arc<Self>, dir: &Path) -> Result<Arc<LoadedModel>, ReloadError> {
        let _turn = self.changes.lock().await;
        let result = self.build_and_warm(dir).await;
        let outcome = match result {
            Ok(model) => {
                let model = Arc::new(model);
                if let Some(old) = self.current.swap(Some(model.clone())) {
                    let mut history = self.good_versions();
                    for e in history.iter_mut() {
                        e.loaded = None;
                    }
                    history.push(HistoryEntry { dir: old.dir.clone(), version: old.version().to_string(), loaded: Some(old) });
                    if history.len() > HISTORY_LEN {
                        history.remove(0);
                    }
                }
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
                metrics::counter!("model_reloads_total", "result" => "ok").increment(1);
                tracing::info!(version = model.version(), backend = model.backend, reason = %model.backend_reason, seconds = model.load_seconds, dir = %model.dir.display(), "model loaded");
                Ok(model)
            }
            Err(e) => {
                metrics::counter!("model_reloads_total", "result" => "error").increment(1);
                tracing::error!(error = %e, "model load refused; the current model keeps serving");
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                Err(e)
            }
        };
        self.publish_info();
        outcome
    }

    /// Swaps the newest good version of the history back in; the model
    /// rolled away from is dropped.
    ///
    /// # Errors
    /// [`ReloadError::NoPrevious`], or why an older version could not be reloaded
    /// (its entry is kept, the current model keeps serving).
    pub async fn rollback(self: &Arc<Self>) -> Result<Arc<LoadedModel>, ReloadError> {
        let _turn = self.changes.lock().await;
        let (dir, expected, loaded) = {
            let history = self.good_versions();
            let entry = history.last().ok_or(ReloadError::NoPrevious)?;
            (entry.dir.clone(), entry.version.clone(), entry.loaded.clone())
        };
        let back = match loaded {
            Some(m) => m,
            None => {
                let model = self.build_and_warm(&dir).await?;
                if model.version() != expected {
                    return Err(ReloadError::HistoryChanged { dir, expected, found: model.version().to_string() });
                }
                Arc::new(model)
            }
        };
        // Only model changes touch the history, and this one holds the turn: the entry is still last.
        self.good_versions().pop();
        self.current.swap(Some(back.clone()));
        tracing::info!(version = back.version(), "rolled back");
        self.publish_info();
        Ok(back)
    }

    async fn build_and_warm(self: &Arc<Self>, dir: &Path) -> Result<LoadedModel, ReloadError> {
        let store = self.clone();
        let dir = dir.to_path_buf();
        // Reading, hashing and compiling a model is blocking work.
        let model = tokio::task::spawn_blocking(move || store.build(&dir)).await.map_err(|e| ReloadError::Task(e.to_string()))??;
        warm(model).await
    }

    fn build(&self, dir: &Path) -> Result<LoadedModel, ReloadError> {
        let started = Instant::now();
        let dir = std::fs::canonicalize(dir).map_err(|source| ReloadError::Path { path: dir.to_path_buf(), source })?;
        let files = ModelFiles::load_dir(&dir, &[ModelKind::Full]).map_err(|source| ReloadError::Files { dir: dir.clone(), source })?;
        let entry = files.manifest.model(ModelKind::Full).map_err(|e| ReloadError::Files { dir: dir.clone(), source: e.into() })?.clone();
        let policy = RankingPolicy::new(files.catalog, ModelKind::Full, entry.n_items)?;
        let (_, onnx) = &files.models[0];
        // The manifest's word is checked against the file's own: a wrong item
        // count passed the warm-up (one item) and failed under load.
        let meta = shared::inference::read_metadata(onnx).map_err(|e| ReloadError::Backend { file: entry.file.clone(), reason: e.to_string() })?;
        if meta.kind != ModelKind::Full || meta.n_items != entry.n_items {
            return Err(ReloadError::Backend {
                file: entry.file.clone(),
                reason: format!("the file is a {:?} model over {} items, the manifest says a full model over {} items", meta.kind, meta.n_items, entry.n_items),
            });
        }
        let chosen = backend::choose(self.settings.backend, self.settings.ort.as_ref(), onnx, entry.n_items, self.settings.batch.workers)
            .map_err(|e| ReloadError::Backend { file: entry.file.clone(), reason: format!("{e:#}") })?;
        let backend = chosen.backend.name();
        Ok(LoadedModel {
            dir,
            manifest: files.manifest,
            policy,
            batcher: Batcher::start(chosen.backend, self.settings.batch),
            backend,
            backend_reason: chosen.reason,
            load_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// `model_info{version, backend}` is 1 for the serving model only: the
    /// series of the one it replaced drops to 0, so `model_info == 1` names
    /// exactly one version per origin (the version-skew alert compares them).
    fn publish_info(&self) {
        if let Some(m) = self.current() {
            let now = (m.version().to_string(), m.backend);
            let before = self.published.lock().unwrap_or_else(|p| p.into_inner()).replace(now.clone());
            if let Some((version, backend)) = before.filter(|b| *b != now) {
                metrics::gauge!("model_info", "version" => version, "backend" => backend).set(0.0);
            }
            metrics::gauge!("model_info", "version" => now.0, "backend" => now.1).set(1.0);
            metrics::gauge!("model_items").set(m.policy.n_items() as f64);
        }
    }
}

/// Runs one real query (the most popular item's neighbours) through the new
/// model before it serves, so the first shopper pays no warm-up and a model
/// that cannot answer is refused.
async fn warm(mut model: LoadedModel) -> Result<LoadedModel, ReloadError> {
    let started = Instant::now();
    // The first and the last item: a model over fewer items than its catalog
    // fails on the last one here, not on a shopper's request.
    let last = model.policy.n_items().saturating_sub(1);
    for index in [0, last] {
        let ranked = model.batcher.run(vec![(index, 1.0)]).await.map_err(|e| ReloadError::Warmup(format!("item index {index}: {e}")))?;
        if ranked.indices.is_empty() {
            return Err(ReloadError::Warmup("no items returned".into()));
        }
    }
    model.load_seconds += started.elapsed().as_secs_f64();
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening 13: `path` may only name directories under the models root.
    #[test]
    fn reload_paths_must_stay_under_the_models_root() {
        let base = std::env::temp_dir().join(format!("edgerec-root-test-{}", std::process::id()));
        let root = base.join("models");
        std::fs::create_dir_all(root.join("shop-v2")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        assert_eq!(resolve_under_root(&root, &root.join("shop-v2")).unwrap(), std::fs::canonicalize(root.join("shop-v2")).unwrap());
        for escape in [root.join("../elsewhere"), base.join("elsewhere"), PathBuf::from("/etc"), root.join("shop-v2/../..")] {
            assert!(matches!(resolve_under_root(&root, &escape), Err(ReloadError::OutsideRoot { .. })), "{}", escape.display());
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(base.join("elsewhere"), root.join("link")).unwrap();
            assert!(matches!(resolve_under_root(&root, &root.join("link")), Err(ReloadError::OutsideRoot { .. })), "a link out is out");
        }
        assert!(matches!(resolve_under_root(&root, &root.join("missing")), Err(ReloadError::Path { .. })));
        let _ = std::fs::remove_dir_all(base);
    }
}
