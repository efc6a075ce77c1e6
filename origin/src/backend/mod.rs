//! Inference backends behind one interface, and the choice between them.
//!
//! Order of preference for `--backend auto`: ONNX Runtime with CUDA, ONNX
//! Runtime on CPU, tract. Each step that fails is recorded with its reason,
//! which the startup log, `/readyz` and every answer's `model.backend` show.

mod ort_backend;

use std::sync::Arc;

use shared::inference::{InferenceError, OnnxRecommender, Ranked};

use crate::config::BackendPref;

pub use ort_backend::{OrtBackend, OrtRuntime};

/// A loaded model that scores batches of history rows (see `shared::contract`).
pub trait Backend: Send + Sync + 'static {
    /// Short name: `ort-cuda`, `ort-cpu` or `tract`.
    fn name(&self) -> &'static str;
    /// Runs one batch; row `b` of the answer ranks `rows[b]`.
    ///
    /// # Errors
    /// Invalid rows (index or length out of range) or a failed run.
    fn run(&self, rows: &[Vec<(usize, f32)>]) -> Result<Vec<Ranked>, InferenceError>;
}

/// tract: pure Rust, always available.
pub struct TractBackend(pub OnnxRecommender);

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn run(&self, rows: &[Vec<(usize, f32)>]) -> Result<Vec<Ranked>, InferenceError> {
        self.0.run(rows)
    }
}

/// The backend picked for a model, and why.
pub struct Chosen {
    /// The backend.
    pub backend: Arc<dyn Backend>,
    /// Why this one (the failures of the preferred ones, if any).
    pub reason: String,
}

/// Builds a backend for `onnx` (a model over `n_items` items) following `pref`.
///
/// # Errors
/// When the explicitly requested backend cannot be built, or tract refuses the model.
pub fn choose(pref: BackendPref, ort: Option<&OrtRuntime>, onnx: &[u8], n_items: usize, workers: usize) -> anyhow::Result<Chosen> {
    let mut why = Vec::new();
    let try_ort = |cuda: bool, why: &mut Vec<String>| -> Option<Arc<dyn Backend>> {
        let Some(rt) = ort else {
            why.push("ONNX Runtime library not loaded (set ORT_DYLIB_PATH or --ort-lib)".into());
            return None;
        };
        match OrtBackend::new(rt, onnx, n_items, cuda, workers) {
            Ok(b) => Some(Arc::new(b)),
            Err(e) => {
                why.push(format!("{}: {e:#}", if cuda { "ort-cuda" } else { "ort-cpu" }));
                None
            }
        }
    };
    let tract = || -> anyhow::Result<Arc<dyn Backend>> { Ok(Arc::new(TractBackend(OnnxRecommender::from_bytes(onnx)?))) };
    let backend = match pref {
        BackendPref::Tract => {
            why.push("tract requested".into());
            tract()?
        }
        BackendPref::OrtCuda => try_ort(true, &mut why).ok_or_else(|| anyhow::anyhow!("--backend ort-cuda: {}", why.join("; ")))?,
        BackendPref::OrtCpu => try_ort(false, &mut why).ok_or_else(|| anyhow::anyhow!("--backend ort-cpu: {}", why.join("; ")))?,
        BackendPref::Auto => match try_ort(true, &mut why).or_else(|| try_ort(false, &mut why)) {
            Some(b) => b,
            None => tract()?,
        },
    };
    let reason = if why.is_empty() { format!("{} is the first choice", backend.name()) } else { why.join("; ") };
    Ok(Chosen { backend, reason })
}
