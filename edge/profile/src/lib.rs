//! Where the edge model's time goes per request, measured the same way
//! natively and as wasm32 in V8 (node, the engine workerd embeds): model
//! start-up (sha256 checks, parse, optimize, plan), then per request the id
//! mapping, each node of the optimized graph, the ranking around the model
//! and the JSON answer.
//!
//! Inside a deployed Worker the clock does not advance during computation, so
//! this per-stage split can only be taken outside workerd;
//! `cargo xtask bench-edge` prints it beside the end-to-end figure through
//! `wrangler dev`.

use serde::{Deserialize, Serialize};
use shared::catalog::EDGE_CATALOG_FILE;
use shared::contract::ModelKind;
use shared::inference::NodeTime;
use shared::wire::{ModelInfo, Source};
use shared::{ModelSet, ModelSetError, RankingPolicy, Recommendation, Recommender};

/// Answers per request, as the worker asks for by default.
const K: usize = 10;

/// The three files the worker embeds, as bytes.
pub struct EdgeFiles<'a> {
    /// `manifest.json`.
    pub manifest: &'a [u8],
    /// `edge_catalog.json`.
    pub catalog: &'a [u8],
    /// `edge.onnx`.
    pub onnx: &'a [u8],
}

/// One stage's mean time per request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stage {
    /// `prepare`, `node <name> (<op>)`, `finish`, `response`.
    pub name: String,
    /// Mean per request, ms.
    pub ms: f64,
}

/// A profile of the edge model's requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    /// Verifying, parsing, optimizing and planning the model, once, ms.
    pub startup_ms: f64,
    /// Mean ms of one whole request (`recommend` + the JSON answer), without
    /// the per-node clock reads.
    pub request_ms: f64,
    /// Per-stage means, in request order (graph nodes in plan order).
    pub stages: Vec<Stage>,
    /// Requests timed per figure.
    pub requests: usize,
}

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The files do not load.
    #[error(transparent)]
    Load(#[from] ModelSetError),
    /// A model run failed.
    #[error(transparent)]
    Run(#[from] shared::recommender::RecommenderError),
    /// A profiled model run failed.
    #[error(transparent)]
    Inference(#[from] shared::InferenceError),
    /// The manifest has no edge model.
    #[error("the manifest lists no edge model")]
    NoEdgeModel,
}

fn load(files: &EdgeFiles) -> Result<Recommender, ProfileError> {
    let set = ModelSet::load_with_catalog(
        |name| match name {
            "manifest.json" => Ok(files.manifest.to_vec()),
            EDGE_CATALOG_FILE => Ok(files.catalog.to_vec()),
            "edge.onnx" => Ok(files.onnx.to_vec()),
            other => Err(format!("{other} is not an edge file")),
        },
        &[ModelKind::Edge],
        EDGE_CATALOG_FILE,
    )?;
    set.models.into_iter().next().ok_or(ProfileError::NoEdgeModel)
}

/// The JSON answer the worker would send for `r`; answers its length.
fn response_bytes(policy: &RankingPolicy, r: &Recommendation) -> usize {
    let info = ModelInfo { name: "edge".into(), version: String::new(), backend: "profile".into(), dataset: String::new() };
    serde_json::to_vec(&policy.response(r, Source::Edge, info)).map_or(0, |v| v.len())
}

/// One request as the worker computes it for a model answer: ids to
/// indices, the model run, ranking, the JSON answer. Answers its length.
///
/// # Errors
/// The model run's error.
pub fn answer(rec: &Recommender, history: &[String]) -> Result<usize, ProfileError> {
    Ok(response_bytes(rec.policy(), &rec.recommend(history, K, true)?))
}

/// Loads the edge model from `files` and profiles `passes` passes over
/// `histories` (external ids, oldest first), after one untimed warm-up pass.
/// `clock` returns ms from any fixed origin.
///
/// # Errors
/// [`ProfileError`] when the files do not load or a run fails.
pub fn profile(files: &EdgeFiles, histories: &[Vec<String>], passes: usize, clock: &mut dyn FnMut() -> f64) -> Result<Profile, ProfileError> {
    let started = clock();
    let rec = load(files)?;
    let startup_ms = clock() - started;
    let (policy, model) = (rec.policy(), rec.model());
    let requests = passes * histories.len();
    let mut bytes = 0;
    for h in histories {
        bytes += answer(&rec, h)?; // warm-up (and, in wasm, the JIT's tier-up)
    }

    // Stage by stage, a clock read around each.
    let mut stages: Vec<Stage> = Vec::new();
    let mut add = |name: String, ms: f64| match stages.iter_mut().find(|s| s.name == name) {
        Some(s) => s.ms += ms / requests.max(1) as f64,
        None => stages.push(Stage { name, ms: ms / requests.max(1) as f64 }),
    };
    let mut nodes: Vec<NodeTime> = Vec::new();
    for _ in 0..passes {
        for h in histories {
            let t0 = clock();
            let prepared = policy.prepare(h);
            let t1 = clock();
            nodes.clear();
            let ranked = if prepared.row.is_empty() { None } else { model.run_profiled(std::slice::from_ref(&prepared.row), clock, &mut nodes)?.pop() };
            let t2 = clock();
            let r = policy.finish(prepared, ranked.as_ref(), K, true);
            let t3 = clock();
            bytes += response_bytes(policy, &r);
            let t4 = clock();
            add("prepare: ids to model indices".into(), t1 - t0);
            for n in &nodes {
                add(format!("node {} ({})", n.name, n.op), n.ms);
            }
            add("model run: padding, tensors, outputs".into(), (t2 - t1) - nodes.iter().map(|n| n.ms).sum::<f64>());
            add("finish: seen filter, top k".into(), t3 - t2);
            add("response: ids, titles, JSON".into(), t4 - t3);
        }
    }

    // Then whole requests, with no clock inside them.
    let started = clock();
    for _ in 0..passes {
        for h in histories {
            bytes += answer(&rec, h)?;
        }
    }
    let request_ms = (clock() - started) / requests.max(1) as f64;
    std::hint::black_box(bytes);
    Ok(Profile { startup_ms, request_ms, stages, requests })
}

#[cfg(target_arch = "wasm32")]
mod wasm {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        /// `performance.now()`: ms, µs resolution in node.
        #[wasm_bindgen(js_namespace = performance)]
        fn now() -> f64;
    }

    /// The edge model loaded once, answering requests round-robin over a
    /// list of histories: `cargo xtask bench-edge` times it inside workerd,
    /// from outside, as `requests(n)` against `requests(0)`.
    #[wasm_bindgen]
    pub struct Bench {
        rec: shared::Recommender,
        histories: Vec<Vec<String>>,
        next: usize,
    }

    #[wasm_bindgen]
    impl Bench {
        /// Verifies and plans the model from the three files' bytes; `histories_json` is `[[id, …], …]`.
        ///
        /// # Errors
        /// Files that do not load, or unparsable or empty histories, as a JS `Error`.
        #[wasm_bindgen(constructor)]
        pub fn new(manifest: &[u8], catalog: &[u8], onnx: &[u8], histories_json: &str) -> Result<Bench, JsError> {
            let histories: Vec<Vec<String>> = serde_json::from_str(histories_json)?;
            if histories.is_empty() {
                return Err(JsError::new("no histories"));
            }
            let rec = super::load(&super::EdgeFiles { manifest, catalog, onnx })?;
            Ok(Bench { rec, histories, next: 0 })
        }

        /// Answers `n` requests ([`super::answer`]); returns the answers' total bytes.
        ///
        /// # Errors
        /// A model run's error, as a JS `Error`.
        pub fn requests(&mut self, n: usize) -> Result<usize, JsError> {
            let mut bytes = 0;
            for _ in 0..n {
                bytes += super::answer(&self.rec, &self.histories[self.next])?;
                self.next = (self.next + 1) % self.histories.len();
            }
            Ok(bytes)
        }
    }

    /// The module's linear memory now, bytes (what counts against an
    /// isolate's 128 MB, beside the small JS heap of the glue).
    #[wasm_bindgen]
    pub fn wasm_memory_bytes() -> usize {
        core::arch::wasm32::memory_size(0) * 65536
    }

    /// [`super::profile`] from JavaScript: the three files' bytes, the
    /// histories as a JSON `[[id, …], …]`; answers the [`super::Profile`] as JSON.
    ///
    /// # Errors
    /// The profile's error, or unparsable histories, as a JS `Error`.
    #[wasm_bindgen]
    pub fn profile_edge(manifest: &[u8], catalog: &[u8], onnx: &[u8], histories_json: &str, passes: usize) -> Result<String, JsError> {
        let histories: Vec<Vec<String>> = serde_json::from_str(histories_json)?;
        let files = super::EdgeFiles { manifest, catalog, onnx };
        let p = super::profile(&files, &histories, passes, &mut now)?;
        Ok(serde_json::to_string(&p)?)
    }
}
