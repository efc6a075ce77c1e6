//! ONNX Runtime through the `ort` crate, loaded at run time from
//! `libonnxruntime.so` (`load-dynamic`: nothing is downloaded at build time).

use std::path::Path;
use std::sync::Mutex;

use ort::ep::{self, ExecutionProvider};
use ort::session::Session;
use ort::value::Tensor;
use shared::inference::{InferenceError, PaddedBatch, Ranked, rows_from_outputs};

use super::Backend;

/// The process-wide ONNX Runtime environment (one per process).
pub struct OrtRuntime {
    env: ort::environment::Environment,
    /// Library path and version, for logs.
    pub describe: String,
}

impl OrtRuntime {
    /// Loads `libonnxruntime.so` from `path`.
    ///
    /// # Errors
    /// When the library is missing or not an ONNX Runtime (no `OrtGetApiBase`).
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let env = ort::init_from(path).map_err(|e| anyhow::anyhow!("loading {}: {e}", path.display()))?.with_name("edgerec-origin").build()?;
        Ok(OrtRuntime { env, describe: format!("ONNX Runtime from {}", path.display()) })
    }
}

/// One session per inference worker: `Session::run` needs `&mut`.
pub struct OrtBackend {
    sessions: Vec<Mutex<Session>>,
    n_items: usize,
    cuda: bool,
}

impl OrtBackend {
    /// Builds `workers` sessions for `onnx` (a model over `n_items` items, from the manifest), on CUDA (registration must
    /// succeed: `error_on_failure`) or on CPU with one intra-op thread each.
    ///
    /// # Errors
    /// When a session cannot be created or CUDA cannot be registered.
    pub fn new(rt: &OrtRuntime, onnx: &[u8], n_items: usize, cuda: bool, workers: usize) -> anyhow::Result<Self> {
        // Builder errors carry the builder back (not Send); keep their message only.
        fn msg<T, R>(r: Result<T, ort::Error<R>>) -> anyhow::Result<T> {
            r.map_err(|e| anyhow::anyhow!("{e}"))
        }
        if cuda && !ep::CUDA::is_available().unwrap_or(false) {
            anyhow::bail!("this ONNX Runtime build has no CUDA execution provider (install onnxruntime-gpu)");
        }
        let mut sessions = Vec::with_capacity(workers.max(1));
        for _ in 0..workers.max(1) {
            let mut builder = msg(msg(Session::builder(&rt.env))?.with_intra_threads(1))?;
            if cuda {
                builder = msg(builder.with_execution_providers([ep::CUDA::default().build().error_on_failure()]))?;
            }
            sessions.push(Mutex::new(msg(builder.commit_from_memory(onnx))?));
        }
        Ok(OrtBackend { sessions, n_items, cuda })
    }
}

impl Backend for OrtBackend {
    fn name(&self) -> &'static str {
        if self.cuda { "ort-cuda" } else { "ort-cpu" }
    }

    fn run(&self, rows: &[Vec<(usize, f32)>]) -> Result<Vec<Ranked>, InferenceError> {
        let batch = PaddedBatch::new(rows, self.n_items)?;
        let ort_err = |e: ort::Error| InferenceError::Contract(format!("onnxruntime: {e}"));
        let shape = [rows.len() as i64, batch.len as i64];
        let history = Tensor::from_array((shape, batch.history)).map_err(ort_err)?;
        let weights = Tensor::from_array((shape, batch.weights)).map_err(ort_err)?;
        // The batcher runs at most `workers` batches at once, so a free session exists;
        // try_lock spreads them, lock() is the fallback.
        let mut session = self.sessions.iter().find_map(|s| s.try_lock().ok()).unwrap_or_else(|| self.sessions[0].lock().unwrap_or_else(|p| p.into_inner()));
        let outputs = session.run(ort::inputs![shared::contract::INPUT_HISTORY => history, shared::contract::INPUT_WEIGHTS => weights]).map_err(ort_err)?;
        let (_, scores) = outputs[shared::contract::OUTPUT_SCORES].try_extract_tensor::<f32>().map_err(ort_err)?;
        let (_, indices) = outputs[shared::contract::OUTPUT_INDICES].try_extract_tensor::<i64>().map_err(ort_err)?;
        rows_from_outputs(scores, indices, rows.len(), self.n_items)
    }
}
