//! A verified model directory: the manifest, the catalog and the requested
//! models, each file checked against its manifest sha256 before use.
//!
//! File access is injected (`read`), so the same code serves the origin (file
//! system), the edge (bytes embedded in the worker) and tests.

use crate::catalog::{Catalog, CatalogError};
use crate::contract::ModelKind;
use crate::manifest::{Manifest, ManifestError};
use crate::recommender::{Recommender, RecommenderError};

/// Name of the catalog file in a model directory.
pub const CATALOG_FILE: &str = "catalog.json";
/// Name of the manifest file in a model directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Why a model directory was refused. Nothing is half-loaded: the caller keeps
/// whatever it served before.
#[derive(Debug, thiserror::Error)]
pub enum ModelSetError {
    /// A file could not be read.
    #[error("reading {file}: {reason}")]
    Read {
        /// File name.
        file: String,
        /// The underlying error.
        reason: String,
    },
    /// Manifest malformed, or a file does not match it.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Catalog malformed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A model file failed to load, or disagrees with manifest or catalog.
    #[error("{file}: {source}")]
    Model {
        /// File name.
        file: String,
        /// The underlying error.
        source: RecommenderError,
    },
    /// The model's shape disagrees with the manifest.
    #[error("{file}: manifest says {expected} items, the model scores {actual}")]
    Dims {
        /// File name.
        file: String,
        /// Items in the manifest.
        expected: usize,
        /// Items in the model.
        actual: usize,
    },
}

/// A model directory's verified bytes: manifest, catalog and the requested
/// ONNX files, each checked against the manifest, nothing parsed into a model
/// yet (a server picks its own backend).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The manifest.
    pub manifest: Manifest,
    /// The catalog.
    pub catalog: Catalog,
    /// `(kind, ONNX bytes)` in request order.
    pub models: Vec<(ModelKind, Vec<u8>)>,
}

impl ModelFiles {
    /// Reads and verifies `kinds` from a directory whose files `read(name)` returns.
    ///
    /// # Errors
    /// [`ModelSetError`] on the first unreadable or mismatching file.
    pub fn load<E: std::fmt::Display>(read: impl FnMut(&str) -> Result<Vec<u8>, E>, kinds: &[ModelKind]) -> Result<Self, ModelSetError> {
        ModelFiles::load_with_catalog(read, kinds, CATALOG_FILE)
    }

    /// [`ModelFiles::load`] with the catalog read from `catalog_file`: the
    /// edge reads the head of the catalog ([`crate::catalog::EDGE_CATALOG_FILE`]).
    ///
    /// # Errors
    /// As [`ModelFiles::load`].
    pub fn load_with_catalog<E: std::fmt::Display>(
        mut read: impl FnMut(&str) -> Result<Vec<u8>, E>,
        kinds: &[ModelKind],
        catalog_file: &str,
    ) -> Result<Self, ModelSetError> {
        let mut read_file = |file: &str| read(file).map_err(|e| ModelSetError::Read { file: file.into(), reason: e.to_string() });
        let manifest = Manifest::from_json(&read_file(MANIFEST_FILE)?)?;
        let catalog_bytes = read_file(catalog_file)?;
        manifest.verify(catalog_file, &catalog_bytes)?;
        let catalog = Catalog::from_json(&catalog_bytes)?;
        let mut models = Vec::with_capacity(kinds.len());
        for &kind in kinds {
            let entry = manifest.model(kind)?;
            let bytes = read_file(&entry.file)?;
            manifest.verify(&entry.file, &bytes)?;
            models.push((kind, bytes));
        }
        Ok(ModelFiles { manifest, catalog, models })
    }

    /// Reads and verifies `kinds` from directory `dir` on the file system.
    ///
    /// # Errors
    /// As [`ModelFiles::load`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, kinds: &[ModelKind]) -> Result<Self, ModelSetError> {
        ModelFiles::load(|name| std::fs::read(dir.join(name)), kinds)
    }
}

/// A loaded, verified model directory.
#[derive(Debug, Clone)]
pub struct ModelSet {
    /// The manifest.
    pub manifest: Manifest,
    /// One recommender per requested kind, in request order.
    pub models: Vec<Recommender>,
}

impl ModelSet {
    /// Loads `kinds` from a directory whose files `read(name)` returns.
    ///
    /// # Errors
    /// [`ModelSetError`] on the first unreadable, mismatching or invalid file.
    pub fn load<E: std::fmt::Display>(read: impl FnMut(&str) -> Result<Vec<u8>, E>, kinds: &[ModelKind]) -> Result<Self, ModelSetError> {
        ModelSet::load_with_catalog(read, kinds, CATALOG_FILE)
    }

    /// [`ModelSet::load`] with the catalog read from `catalog_file` (see
    /// [`ModelFiles::load_with_catalog`]).
    ///
    /// # Errors
    /// As [`ModelSet::load`].
    pub fn load_with_catalog<E: std::fmt::Display>(
        read: impl FnMut(&str) -> Result<Vec<u8>, E>,
        kinds: &[ModelKind],
        catalog_file: &str,
    ) -> Result<Self, ModelSetError> {
        let files = ModelFiles::load_with_catalog(read, kinds, catalog_file)?;
        let mut models = Vec::with_capacity(kinds.len());
        for (kind, bytes) in &files.models {
            let entry = files.manifest.model(*kind)?;
            let model = Recommender::from_bytes(files.catalog.clone(), bytes).map_err(|source| ModelSetError::Model { file: entry.file.clone(), source })?;
            if model.model().n_items() != entry.n_items {
                return Err(ModelSetError::Dims { file: entry.file.clone(), expected: entry.n_items, actual: model.model().n_items() });
            }
            models.push(model);
        }
        Ok(ModelSet { manifest: files.manifest, models })
    }

    /// Loads `kinds` from directory `dir` on the file system.
    ///
    /// # Errors
    /// As [`ModelSet::load`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_dir(dir: &std::path::Path, kinds: &[ModelKind]) -> Result<Self, ModelSetError> {
        ModelSet::load(|name| std::fs::read(dir.join(name)), kinds)
    }
}
