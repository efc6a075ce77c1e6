//! `manifest.json`: what a model directory holds and how to verify it.
//!
//! Written by the trainer, read by the origin (which refuses a directory whose
//! files do not match) and by the edge build. Every file is listed with its
//! sha256 (FIPS 180-4, lower-case hex) and its size in bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::ModelKind;

/// Current manifest format; readers refuse other values.
pub const MANIFEST_FORMAT: u32 = 1;

/// One file of a model directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// sha256 of the file's bytes, lower-case hex (64 characters).
    pub sha256: String,
    /// File size in bytes.
    pub bytes: u64,
}

impl FileEntry {
    /// Describes `data` (hash and length).
    pub fn of(data: &[u8]) -> Self {
        FileEntry { sha256: sha256_hex(data), bytes: data.len() as u64 }
    }
}

/// Shape facts of one exported model, enough to call it without opening it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    /// File name inside the directory (`full.onnx` / `edge.onnx`).
    pub file: String,
    /// Items the model scores: valid indices are `0..n_items` (a prefix of the catalog).
    pub n_items: usize,
    /// Columns of the `scores`/`indices` outputs.
    pub top_k: usize,
    /// Hyper-parameters the model was trained with (free-form, for humans).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
}

/// The whole `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Unique model version, `<dataset>-<UTC timestamp>-<sha8 of full.onnx>`.
    pub version: String,
    /// RFC 3339 UTC time the artifacts were written.
    pub created_at: String,
    /// Dataset name (`movielens`, `instacart`, or a shop's own).
    pub dataset: String,
    /// Items in the catalog (`catalog.json`); model indices are `0..catalog_items`.
    pub catalog_items: usize,
    /// Distinct items in the interaction log before the `min_count` filter.
    pub log_items: usize,
    /// Users in the interaction log.
    pub log_users: usize,
    /// Interactions (rows) in the log.
    pub log_interactions: usize,
    /// True where repeat purchases are the norm (baskets): seen items stay
    /// rankable, so callers default `exclude_seen` to false for this dataset.
    #[serde(default)]
    pub repeat_purchases: bool,
    /// The exported models by kind.
    pub models: BTreeMap<String, ModelEntry>,
    /// Every file of the directory except the manifest itself.
    pub files: BTreeMap<String, FileEntry>,
    /// Held-out evaluation results (see `docs/quality.md`), free-form.
    #[serde(default)]
    pub metrics: serde_json::Value,
}

/// Why a manifest or a file it lists was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest is not valid JSON of the expected shape.
    #[error("manifest.json is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The manifest's `format` is not one this build reads.
    #[error("manifest.json has format {found}, this build reads format {MANIFEST_FORMAT}")]
    Format {
        /// The value found.
        found: u32,
    },
    /// A file the caller needs is not listed.
    #[error("manifest.json does not list {0}")]
    Missing(String),
    /// A model kind the caller needs is not listed.
    #[error("manifest.json has no {0} model")]
    MissingModel(&'static str),
    /// A file's bytes do not match the manifest.
    #[error("{file}: expected sha256 {expected} ({expected_bytes} bytes), got {actual} ({actual_bytes} bytes)")]
    Mismatch {
        /// File name.
        file: String,
        /// sha256 recorded in the manifest.
        expected: String,
        /// sha256 of the bytes offered.
        actual: String,
        /// Size recorded in the manifest.
        expected_bytes: u64,
        /// Size of the bytes offered.
        actual_bytes: u64,
    },
    /// A listed file name is not a bare name inside the model directory.
    #[error("manifest.json lists {0:?}: file names must be bare names (no '/', '\\', '..')")]
    NotBareName(String),
}

/// Whether `name` names a file directly inside a directory: not empty, not
/// `.`/`..`, no path separator (a manifest must not reach outside its directory).
pub fn is_bare_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

impl Manifest {
    /// Parses `manifest.json` and checks its format number.
    ///
    /// # Errors
    /// [`ManifestError::Malformed`], [`ManifestError::Format`], or
    /// [`ManifestError::NotBareName`] for a listed file outside the directory.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes)?;
        if m.format != MANIFEST_FORMAT {
            return Err(ManifestError::Format { found: m.format });
        }
        let names = m.files.keys().chain(m.models.values().map(|e| &e.file));
        if let Some(bad) = names.into_iter().find(|n| !is_bare_name(n)) {
            return Err(ManifestError::NotBareName(bad.clone()));
        }
        Ok(m)
    }

    /// Checks that `data` is exactly the file `name` the manifest lists.
    ///
    /// # Errors
    /// [`ManifestError::Missing`] if `name` is not listed, [`ManifestError::Mismatch`]
    /// if its hash or size differ.
    pub fn verify(&self, name: &str, data: &[u8]) -> Result<(), ManifestError> {
        let expected = self.files.get(name).ok_or_else(|| ManifestError::Missing(name.to_string()))?;
        let actual = FileEntry::of(data);
        if &actual != expected {
            return Err(ManifestError::Mismatch {
                file: name.to_string(),
                expected: expected.sha256.clone(),
                actual: actual.sha256,
                expected_bytes: expected.bytes,
                actual_bytes: actual.bytes,
            });
        }
        Ok(())
    }

    /// The entry of model `kind`.
    ///
    /// # Errors
    /// [`ManifestError::MissingModel`] when the manifest has none.
    pub fn model(&self, kind: ModelKind) -> Result<&ModelEntry, ManifestError> {
        self.models.get(kind.as_str()).ok_or(ManifestError::MissingModel(kind.as_str()))
    }
}

/// sha256 of `data` as lower-case hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(name: &str, data: &[u8]) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            version: "t".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            dataset: "t".into(),
            catalog_items: 0,
            log_items: 0,
            log_users: 0,
            log_interactions: 0,
            repeat_purchases: false,
            models: BTreeMap::new(),
            files: [(name.to_string(), FileEntry::of(data))].into(),
            metrics: serde_json::Value::Null,
        }
    }

    #[test]
    fn sha256_matches_fips_180_4_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn verify_accepts_same_bytes_and_refuses_changed_ones() {
        let m = manifest_with("full.onnx", b"model bytes");
        m.verify("full.onnx", b"model bytes").unwrap();
        let err = m.verify("full.onnx", b"model bytez").unwrap_err();
        assert!(matches!(err, ManifestError::Mismatch { .. }), "{err}");
        let err = m.verify("edge.onnx", b"model bytes").unwrap_err();
        assert!(matches!(err, ManifestError::Missing(_)), "{err}");
    }

    /// Hardening 13: a manifest cannot make a loader read outside its directory.
    #[test]
    fn file_names_must_be_bare() {
        for bad in ["../full.onnx", "/etc/passwd", "sub/full.onnx", "..", "a\\b", ""] {
            let json = serde_json::to_vec(&manifest_with(bad, b"")).unwrap();
            assert!(matches!(Manifest::from_json(&json), Err(ManifestError::NotBareName(_))), "{bad:?}");
        }
        let json = serde_json::to_vec(&manifest_with("full.onnx", b"")).unwrap();
        assert!(Manifest::from_json(&json).is_ok());
    }

    #[test]
    fn unknown_format_is_refused() {
        let mut m = manifest_with("a", b"");
        m.format = 99;
        let json = serde_json::to_vec(&m).unwrap();
        assert!(matches!(Manifest::from_json(&json), Err(ManifestError::Format { found: 99 })));
        assert!(matches!(Manifest::from_json(b"{"), Err(ManifestError::Malformed(_))));
    }
}
