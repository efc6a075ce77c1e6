//! Runs a contract-conforming ONNX model (see [`crate::contract`]) with
//! `tract-onnx`: parsed from bytes, optimized and planned once, then run many
//! times. Works the same natively and on `wasm32-unknown-unknown`.

use std::sync::Arc;

use tract_onnx::prelude::*;

use crate::contract::{self, ModelKind};

/// Metadata keys the trainer writes into the ONNX `metadata_props`.
pub mod metadata {
    /// `full` or `edge`.
    pub const KIND: &str = "edgerec.kind";
    /// Number of items the model scores (valid indices `0..n_items`).
    pub const N_ITEMS: &str = "edgerec.n_items";
    /// Columns of the outputs.
    pub const TOP_K: &str = "edgerec.top_k";
}

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    /// tract refused the file or the run (malformed protobuf, unsupported op, …).
    #[error("tract: {0:#}")]
    Tract(#[from] TractError),
    /// The file loads but does not follow the contract.
    #[error("model violates the edgerec ONNX contract: {0}")]
    Contract(String),
    /// A history index outside `0..n_items`.
    #[error("item index {index} is out of range for a model over {n_items} items")]
    IndexOutOfRange {
        /// The offending index.
        index: usize,
        /// The model's item count.
        n_items: usize,
    },
    /// A history row longer than [`contract::MAX_HISTORY`].
    #[error("history has {len} items, at most {max} are allowed", max = contract::MAX_HISTORY)]
    HistoryTooLong {
        /// The row's length.
        len: usize,
    },
}

/// One ranked row: `indices[i]` has score `scores[i]`, scores descending.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    /// Item indices in `0..n_items`, length `top_k`.
    pub indices: Vec<usize>,
    /// Scores aligned with `indices`.
    pub scores: Vec<f32>,
}

/// One graph node's time in a profiled run ([`OnnxRecommender::run_profiled`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// The node's name in the optimized graph (fused nodes carry a joined name).
    pub name: String,
    /// The op tract runs for it (`Gather`, `EinSum`, `Topk`, …).
    pub op: String,
    /// Wall time of its evaluation, ms.
    pub ms: f64,
}

/// What an ONNX file says about itself in its `edgerec.*` metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnnxMetadata {
    /// `edgerec.kind`.
    pub kind: ModelKind,
    /// `edgerec.n_items`: items the model scores.
    pub n_items: usize,
    /// `edgerec.top_k`: columns of the outputs.
    pub top_k: usize,
}

/// `ModelProto` with only its `metadata_props` (field 14): prost skips every
/// other field without allocating it, so the weights are never copied.
#[derive(Clone, PartialEq, prost::Message)]
struct MetadataOnly {
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<tract_onnx::pb::StringStringEntryProto>,
}

/// Reads the `edgerec.*` metadata of an ONNX file (a backend that is not
/// tract, e.g. ONNX Runtime, is checked against it before it serves).
///
/// # Errors
/// [`InferenceError::Contract`] when the bytes are not an ONNX model or the
/// metadata is missing, malformed, or inconsistent (`top_k`).
pub fn read_metadata(bytes: &[u8]) -> Result<OnnxMetadata, InferenceError> {
    use prost::Message;
    let m = MetadataOnly::decode(bytes).map_err(|e| InferenceError::Contract(format!("not an ONNX model: {e}")))?;
    let get = |key: &str| {
        m.metadata_props
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.clone())
            .ok_or_else(|| InferenceError::Contract(format!("missing metadata_props {key:?}")))
    };
    let count = |key: &str| -> Result<usize, InferenceError> {
        let raw = get(key)?;
        raw.parse().map_err(|_| InferenceError::Contract(format!("metadata_props {key:?} = {raw:?} is not a count")))
    };
    let kind = match get(metadata::KIND)?.as_str() {
        "full" => ModelKind::Full,
        "edge" => ModelKind::Edge,
        other => return Err(InferenceError::Contract(format!("unknown model kind {other:?}"))),
    };
    let (n_items, top_k) = (count(metadata::N_ITEMS)?, count(metadata::TOP_K)?);
    if n_items == 0 || top_k != contract::output_top_k(n_items) {
        return Err(InferenceError::Contract(format!("top_k {top_k} does not match n_items {n_items} (expected {})", contract::output_top_k(n_items))));
    }
    Ok(OnnxMetadata { kind, n_items, top_k })
}

/// A loaded, optimized model ready to run.
#[derive(Debug, Clone)]
pub struct OnnxRecommender {
    plan: Arc<TypedRunnableModel>,
    kind: ModelKind,
    n_items: usize,
    top_k: usize,
}

fn metadata_value(model: &InferenceModel, key: &str) -> Result<String, InferenceError> {
    let prop =
        model.properties.get(&format!("onnx.metadata_props.{key}")).ok_or_else(|| InferenceError::Contract(format!("missing metadata_props {key:?}")))?;
    Ok(prop.try_as_plain_ram()?.to_scalar::<String>()?.clone())
}

fn metadata_usize(model: &InferenceModel, key: &str) -> Result<usize, InferenceError> {
    let raw = metadata_value(model, key)?;
    raw.parse().map_err(|_| InferenceError::Contract(format!("metadata_props {key:?} = {raw:?} is not a count")))
}

impl OnnxRecommender {
    /// Parses, checks, optimizes and plans an ONNX model from its bytes.
    ///
    /// Checks: the `edgerec.*` metadata is present, inputs are
    /// `history`/`weights` and outputs `scores`/`indices` in that order, and
    /// `top_k` equals [`contract::output_top_k`]`(n_items)`.
    ///
    /// # Errors
    /// [`InferenceError::Tract`] for files tract cannot parse or plan,
    /// [`InferenceError::Contract`] for files that break the contract.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InferenceError> {
        let mut model = tract_onnx::onnx().model_for_read(&mut &bytes[..])?;
        let kind = match metadata_value(&model, metadata::KIND)?.as_str() {
            "full" => ModelKind::Full,
            "edge" => ModelKind::Edge,
            other => return Err(InferenceError::Contract(format!("unknown model kind {other:?}"))),
        };
        let n_items = metadata_usize(&model, metadata::N_ITEMS)?;
        let top_k = metadata_usize(&model, metadata::TOP_K)?;
        if n_items == 0 || top_k != contract::output_top_k(n_items) {
            return Err(InferenceError::Contract(format!("top_k {top_k} does not match n_items {n_items} (expected {})", contract::output_top_k(n_items))));
        }
        let names = |outlets: &[OutletId]| -> Vec<String> { outlets.iter().map(|o| model.node(o.node).name.clone()).collect() };
        let inputs = names(model.input_outlets()?);
        if inputs != [contract::INPUT_HISTORY, contract::INPUT_WEIGHTS] {
            return Err(InferenceError::Contract(format!("inputs are {inputs:?}, expected [history, weights]")));
        }
        let output_labels: Vec<Option<String>> = model.output_outlets()?.iter().map(|o| model.outlet_label(*o).map(str::to_string)).collect();
        let expected = [Some(contract::OUTPUT_SCORES.to_string()), Some(contract::OUTPUT_INDICES.to_string())];
        if output_labels != expected {
            return Err(InferenceError::Contract(format!("outputs are {output_labels:?}, expected [scores, indices]")));
        }
        let batch = model.sym("batch");
        let len = model.sym("L");
        let shape = tvec!(TDim::from(batch), TDim::from(len));
        model.set_input_fact(0, InferenceFact::dt_shape(i64::datum_type(), shape.clone()))?;
        model.set_input_fact(1, InferenceFact::dt_shape(f32::datum_type(), shape))?;
        let plan = model.into_optimized()?.into_runnable()?;
        Ok(OnnxRecommender { plan, kind, n_items, top_k })
    }

    /// Which model this is.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Items the model scores (valid history indices are `0..n_items`).
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Ranked items per output row.
    pub fn top_k(&self) -> usize {
        self.top_k
    }

    /// Scores a batch of histories; row `b` of the answer ranks `rows[b]`.
    ///
    /// Each row is a list of `(item index, weight)`, at most
    /// [`contract::MAX_HISTORY`] long; an empty row scores every item 0.
    /// Rows are padded to the longest one with the padding index.
    ///
    /// # Errors
    /// [`InferenceError::IndexOutOfRange`] / [`InferenceError::HistoryTooLong`]
    /// before the model runs; [`InferenceError::Tract`] if the run fails.
    pub fn run(&self, rows: &[Vec<(usize, f32)>]) -> Result<Vec<Ranked>, InferenceError> {
        self.run_with(rows, |plan, inputs| Ok(plan.run(inputs)?))
    }

    /// [`OnnxRecommender::run`], timing each graph node with `clock` (ms, any
    /// monotonic origin: `Instant` natively, `performance.now()` in wasm).
    /// Node times are appended to `nodes` in plan order, one entry per node
    /// per call.
    ///
    /// # Errors
    /// As [`OnnxRecommender::run`].
    pub fn run_profiled(&self, rows: &[Vec<(usize, f32)>], clock: &mut dyn FnMut() -> f64, nodes: &mut Vec<NodeTime>) -> Result<Vec<Ranked>, InferenceError> {
        self.run_with(rows, |plan, inputs| {
            let mut state = plan.spawn()?;
            let outputs = state.run_plan_with_eval(inputs, |ctx, op_state, node, input| {
                let started = clock();
                let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, input);
                nodes.push(NodeTime { name: node.name.clone(), op: node.op().name().to_string(), ms: clock() - started });
                out
            })?;
            Ok(outputs)
        })
    }

    fn run_with(
        &self,
        rows: &[Vec<(usize, f32)>],
        run: impl FnOnce(&Arc<TypedRunnableModel>, TVec<TValue>) -> Result<TVec<TValue>, InferenceError>,
    ) -> Result<Vec<Ranked>, InferenceError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let batch = PaddedBatch::new(rows, self.n_items)?;
        let history = Tensor::from_shape(&[rows.len(), batch.len], &batch.history)?;
        let weights = Tensor::from_shape(&[rows.len(), batch.len], &batch.weights)?;
        let outputs = run(&self.plan, tvec!(history.into(), weights.into()))?;
        let scores = outputs[0].to_plain_array_view::<f32>()?;
        let indices = outputs[1].to_plain_array_view::<i64>()?;
        if scores.shape() != [rows.len(), self.top_k] || indices.shape() != scores.shape() {
            return Err(InferenceError::Contract(format!(
                "outputs have shapes {:?}/{:?}, expected [{}, {}]",
                scores.shape(),
                indices.shape(),
                rows.len(),
                self.top_k
            )));
        }
        let (Some(scores), Some(indices)) = (scores.as_slice(), indices.as_slice()) else {
            return Err(InferenceError::Contract("outputs are not contiguous".into()));
        };
        rows_from_outputs(scores, indices, rows.len(), self.n_items)
    }
}

/// A batch of history rows padded to one length, as the contract's inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct PaddedBatch {
    /// Columns `L` (the longest row, at least 1).
    pub len: usize,
    /// `history`, row-major `[batch, L]`, each row in the caller's order (oldest
    /// first) and left-padded with [`contract::padding_index`], so the newest
    /// item is always in column `L − 1`.
    pub history: Vec<i64>,
    /// `weights`, row-major `[batch, L]`, 0.0 for padding.
    pub weights: Vec<f32>,
}

impl PaddedBatch {
    /// Validates and pads `rows` of `(index, weight)` for a model over `n_items` items.
    ///
    /// # Errors
    /// [`InferenceError::IndexOutOfRange`] / [`InferenceError::HistoryTooLong`]:
    /// checked here so no backend ever sees an index it could fault on.
    pub fn new(rows: &[Vec<(usize, f32)>], n_items: usize) -> Result<Self, InferenceError> {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        if len > contract::MAX_HISTORY {
            return Err(InferenceError::HistoryTooLong { len });
        }
        let pad = contract::padding_index(n_items) as i64;
        let mut history = vec![pad; rows.len() * len];
        let mut weights = vec![0f32; rows.len() * len];
        for (b, row) in rows.iter().enumerate() {
            let start = b * len + len - row.len();
            for (j, &(index, weight)) in row.iter().enumerate() {
                if index >= n_items {
                    return Err(InferenceError::IndexOutOfRange { index, n_items });
                }
                history[start + j] = index as i64;
                weights[start + j] = weight;
            }
        }
        Ok(PaddedBatch { len, history, weights })
    }
}

/// Splits the contract's outputs (row-major `[batch, top_k]` scores and
/// indices) into one [`Ranked`] per row, checking every index.
///
/// # Errors
/// [`InferenceError::Contract`] when sizes disagree or an index is out of range.
pub fn rows_from_outputs(scores: &[f32], indices: &[i64], batch: usize, n_items: usize) -> Result<Vec<Ranked>, InferenceError> {
    if batch == 0 || scores.len() != indices.len() || !scores.len().is_multiple_of(batch) {
        return Err(InferenceError::Contract(format!("{} scores / {} indices for {batch} rows", scores.len(), indices.len())));
    }
    let top_k = scores.len() / batch;
    (0..batch)
        .map(|b| {
            let row = b * top_k..(b + 1) * top_k;
            let indices = indices[row.clone()]
                .iter()
                .map(|&i| usize::try_from(i).ok().filter(|&i| i < n_items).ok_or_else(|| InferenceError::Contract(format!("output index {i} out of range"))))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Ranked { indices, scores: scores[row].to_vec() })
        })
        .collect()
}
