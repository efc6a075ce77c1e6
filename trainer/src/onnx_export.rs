//! Writes the two models as ONNX graphs following [`shared::contract`].
//!
//! The graphs are built directly from the ONNX protobuf types that
//! `tract-onnx` exposes (`tract_onnx::pb`) and encoded with `prost`, so no
//! Python or ONNX tooling is needed at training time.
//!
//! Full model (EASE, Steck WWW 2019), `B: [n+1, n]` with a zero padding row:
//! `scores, indices = TopK(weights[:, None, :] @ Gather(B, history), top_k)` (the sum of the
//! history's rows of `B`, as one batched MatMul: see `weighted_gather_sum`).
//!
//! Low-rank model (the edge model; a full model where it serves as well), `P: [m+1, r]` (zero padding row), `Q: [r, m]`:
//! `s = (weights[:, None, :] @ Gather(P, history)) @ Q`,
//! plus, when `beta > 0`, the buy-again term `beta * x` where
//! `x[b, i] = Σ_j weights[b, j] · [history[b, j] == i]` (Equal against a `Range` constant).
//!
//! Every graph may first decay `weights` by recency ([`recency_weights`]):
//! `weights[b, j] · r^(L−1−j)`, so the newest column counts fully (the
//! time-decayed input of `crate::model::recency_input`).

use prost::Message;
use shared::contract::{self, ModelKind};

use crate::sasrec::{self, SasRecWeights};
use shared::inference::metadata;
use tract_onnx::pb::{self, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension, type_proto};

/// A dense row-major float32 matrix `[rows, cols]`.
#[derive(Debug, Clone)]
pub struct DenseF32 {
    /// Row count.
    pub rows: usize,
    /// Column count.
    pub cols: usize,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

impl DenseF32 {
    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }
}

fn tensor_f32(name: &str, dims: &[usize], values: &[f32]) -> pb::TensorProto {
    assert_eq!(dims.iter().product::<usize>(), values.len(), "tensor {name}: dims/values mismatch");
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Float as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, dims: &[usize], values: &[i64]) -> pb::TensorProto {
    assert_eq!(dims.iter().product::<usize>(), values.len(), "tensor {name}: dims/values mismatch");
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: DataType::Int64 as i32,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn value_info(name: &str, elem: DataType, dims: &[&str]) -> pb::ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| pb::tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => dimension::Value::DimValue(v),
                Err(_) => dimension::Value::DimParam((*d).into()),
            }),
            ..Default::default()
        })
        .collect();
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor { elem_type: elem as i32, shape: Some(pb::TensorShapeProto { dim }) })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn attr_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn attr_ints(name: &str, ints: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: ints.to_vec(), ..Default::default() }
}

fn attr_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f, ..Default::default() }
}

fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        name: format!("{op}_{}", outputs[0]),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attrs,
        ..Default::default()
    }
}

/// Nodes shared by the graphs: the weighted sum of the history's rows of
/// `table`, `Σ_j weights[b, j] · table[history[b, j]]` → `out: [batch, cols]`,
/// as one batched matrix product `Squeeze(MatMul(weights[:, None, :], Gather(table, history)), 1)`
/// (`[batch, 1, L] × [batch, L, cols]`).
///
/// Why a MatMul and not `ReduceSum(Gather(..) * weights[..., None], axis=1)`,
/// the same sum: ONNX Runtime ran that `Mul` + `ReduceSum` over the gathered
/// `[L, n]` EASE rows in 39 % of the full model's time, and the MatMul takes the
/// model from 0.49 to 0.30 ms per single-row run (docs/performance.md).
fn weighted_gather_sum(table: &str, weights: &str, out: &str, nodes: &mut Vec<pb::NodeProto>) {
    nodes.push(node("Gather", &[table, contract::INPUT_HISTORY], &["gathered"], vec![attr_int("axis", 0)]));
    nodes.push(node("Unsqueeze", &[weights, "axes_1"], &["weights_row"], vec![]));
    nodes.push(node("MatMul", &["weights_row", "gathered"], &["weighted_sum_row"], vec![]));
    nodes.push(node("Squeeze", &["weighted_sum_row", "axes_1"], &[out], vec![]));
}

/// Nodes that decay `weights` by recency: `weights[b, j] · r^(L−1−j)`
/// (`r = decay`; left padding keeps the newest entry in column `L − 1`, and
/// padding's weight is 0 whatever its factor). The age `L − 1 − j` is an
/// exclusive reverse `CumSum` over a row of ones, so `L` stays dynamic; the
/// factor is `Exp(age · ln r)`. Returns the name of the weights to use:
/// `weights` itself when `decay ≥ 1` (no nodes added).
fn recency_weights(decay: f32, nodes: &mut Vec<pb::NodeProto>, init: &mut Vec<pb::TensorProto>) -> &'static str {
    if decay >= 1.0 {
        return contract::INPUT_WEIGHTS;
    }
    init.push(tensor_f32("recency_zero", &[1], &[0.0]));
    init.push(tensor_f32("recency_one", &[1], &[1.0]));
    init.push(tensor_f32("recency_log_decay", &[1], &[decay.ln()]));
    init.push(tensor_i64("recency_axis", &[], &[1]));
    nodes.push(node("Mul", &[contract::INPUT_WEIGHTS, "recency_zero"], &["recency_zeros"], vec![]));
    nodes.push(node("Add", &["recency_zeros", "recency_one"], &["recency_ones"], vec![]));
    nodes.push(node("CumSum", &["recency_ones", "recency_axis"], &["recency_age"], vec![attr_int("exclusive", 1), attr_int("reverse", 1)]));
    nodes.push(node("Mul", &["recency_age", "recency_log_decay"], &["recency_log_factor"], vec![]));
    nodes.push(node("Exp", &["recency_log_factor"], &["recency_factor"], vec![]));
    nodes.push(node("Mul", &[contract::INPUT_WEIGHTS, "recency_factor"], &["weights_recent"], vec![]));
    "weights_recent"
}

fn finish_model(
    kind: ModelKind,
    n_items: usize,
    scores_node: &str,
    mut nodes: Vec<pb::NodeProto>,
    mut initializers: Vec<pb::TensorProto>,
    doc: String,
) -> Vec<u8> {
    let top_k = contract::output_top_k(n_items);
    initializers.push(tensor_i64("axes_1", &[1], &[1]));
    initializers.push(tensor_i64("axes_2", &[1], &[2]));
    initializers.push(tensor_i64("top_k", &[1], &[top_k as i64]));
    nodes.push(node(
        "TopK",
        &[scores_node, "top_k"],
        &[contract::OUTPUT_SCORES, contract::OUTPUT_INDICES],
        vec![attr_int("axis", -1), attr_int("largest", 1), attr_int("sorted", 1)],
    ));
    let k = top_k.to_string();
    let graph = pb::GraphProto {
        name: format!("edgerec_{}", kind.as_str()),
        node: nodes,
        initializer: initializers,
        input: vec![
            value_info(contract::INPUT_HISTORY, DataType::Int64, &["batch", "L"]),
            value_info(contract::INPUT_WEIGHTS, DataType::Float, &["batch", "L"]),
        ],
        output: vec![
            value_info(contract::OUTPUT_SCORES, DataType::Float, &["batch", &k]),
            value_info(contract::OUTPUT_INDICES, DataType::Int64, &["batch", &k]),
        ],
        ..Default::default()
    };
    let props = [(metadata::KIND, kind.as_str().to_string()), (metadata::N_ITEMS, n_items.to_string()), (metadata::TOP_K, top_k.to_string())];
    let model = pb::ModelProto {
        ir_version: contract::IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: contract::OPSET }],
        producer_name: "edgerec-trainer".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: doc,
        graph: Some(graph),
        metadata_props: props.into_iter().map(|(key, value)| pb::StringStringEntryProto { key: key.into(), value }).collect(),
        ..Default::default()
    };
    model.encode_to_vec()
}

/// Appends the all-zero padding row to a `[n, cols]` matrix.
fn with_padding_row(m: &DenseF32) -> Vec<f32> {
    let mut data = Vec::with_capacity((m.rows + 1) * m.cols);
    data.extend_from_slice(&m.data);
    data.resize((m.rows + 1) * m.cols, 0.0);
    data
}

/// Encodes the full model for item-item weights `b: [n, n]` (`s = x · b`,
/// `x` decayed by recency with `decay`, 1 = none).
pub fn full_model(b: &DenseF32, decay: f32) -> Vec<u8> {
    assert_eq!(b.rows, b.cols, "EASE weights are square");
    let n = b.rows;
    let (mut nodes, mut init) = (Vec::new(), Vec::new());
    let weights = recency_weights(decay, &mut nodes, &mut init);
    weighted_gather_sum("B", weights, "item_scores", &mut nodes);
    init.push(tensor_f32("B", &[n + 1, n], &with_padding_row(b)));
    let doc = format!("edgerec full model: EASE over {n} items; scores = x·B (Steck, WWW 2019), recency decay {decay}");
    finish_model(ModelKind::Full, n, "item_scores", nodes, init, doc)
}

/// Nodes of `out = (weights · Gather(P, history)) · Q + beta · x` (the
/// buy-again term only when `beta > 0`: `x[b, i] = Σ_j weights[b, j] ·
/// [history[b, j] == i]`, an `Equal` against a `Range` constant), with
/// `P: [m, r]` (a zero padding row appended) and `Q: [r, m]`.
fn low_rank_scores(p: &DenseF32, q: &DenseF32, beta: f32, weights: &str, out: &str, nodes: &mut Vec<pb::NodeProto>, init: &mut Vec<pb::TensorProto>) {
    let (m, r) = (p.rows, p.cols);
    weighted_gather_sum("low_rank_P", weights, "latent", nodes);
    init.push(tensor_f32("low_rank_P", &[m + 1, r], &with_padding_row(p)));
    init.push(tensor_f32("low_rank_Q", &[r, m], &q.data));
    if beta > 0.0 {
        nodes.push(node("MatMul", &["latent", "low_rank_Q"], &["low_rank_scores"], vec![]));
        let range: Vec<i64> = (0..m as i64).collect();
        init.push(tensor_i64("item_range", &[1, 1, m], &range));
        init.push(tensor_f32("beta", &[1], &[beta]));
        nodes.push(node("Unsqueeze", &[contract::INPUT_HISTORY, "axes_2"], &["history_3d"], vec![]));
        nodes.push(node("Unsqueeze", &[weights, "axes_2"], &["weights_3d"], vec![]));
        nodes.push(node("Equal", &["history_3d", "item_range"], &["one_hot_bool"], vec![]));
        nodes.push(node("Cast", &["one_hot_bool"], &["one_hot"], vec![attr_int("to", DataType::Float as i64)]));
        nodes.push(node("Mul", &["one_hot", "weights_3d"], &["weighted_one_hot"], vec![]));
        nodes.push(node("ReduceSum", &["weighted_one_hot", "axes_1"], &["x_dense"], vec![attr_int("keepdims", 0)]));
        nodes.push(node("Mul", &["x_dense", "beta"], &["buy_again"], vec![]));
        nodes.push(node("Add", &["low_rank_scores", "buy_again"], &[out], vec![]));
    } else {
        nodes.push(node("MatMul", &["latent", "low_rank_Q"], &[out], vec![]));
    }
}

/// The item-item part of a blend with the sequence model: EASE's dense
/// weights (the buy-again diagonal folded in) or its low-rank approximation.
#[derive(Debug, Clone, Copy)]
pub enum ItemItem<'a> {
    /// `x · B`, `B: [n, n]`.
    Dense(&'a DenseF32),
    /// `x · P · Q + beta · x`, `P: [n, r]`, `Q: [r, n]`.
    LowRank {
        /// `[n, r]`.
        p: &'a DenseF32,
        /// `[r, n]`.
        q: &'a DenseF32,
        /// Buy-again weight.
        beta: f32,
    },
}

/// Encodes a low-rank model `s = x · p · q + beta · x` for `p: [m, r]`, `q: [r, m]`
/// (`x` decayed by recency with `decay`, 1 = none): the edge model, or a
/// full model that needs no dense `[n, n]` matrix.
pub fn low_rank_model(kind: ModelKind, p: &DenseF32, q: &DenseF32, beta: f32, decay: f32) -> Vec<u8> {
    assert_eq!((p.cols, q.cols), (q.rows, p.rows), "low-rank factors must be [m, r] and [r, m]");
    let (m, r) = (p.rows, p.cols);
    let (mut nodes, mut init) = (Vec::new(), Vec::new());
    let weights = recency_weights(decay, &mut nodes, &mut init);
    low_rank_scores(p, q, beta, weights, "item_scores", &mut nodes, &mut init);
    let doc = format!(
        "edgerec {} model: rank-{r} approximation of EASE over the {m} most popular items, buy-again beta={beta}, recency decay {decay}",
        kind.as_str()
    );
    finish_model(kind, m, "item_scores", nodes, init, doc)
}

/// Encodes the sequence model (SASRec, see [`crate::sasrec`]) as a `kind`
/// model, optionally blended with EASE: `s = logits + gamma · EASE(x)` for
/// `ease = Some((part, gamma))` (dense or low-rank, [`ItemItem`]), the EASE
/// part's input decayed by recency with `decay` (1 = none).
///
/// The graph reads `history` as ordered, oldest first, left-padded with
/// `n` ([`contract`]); it left-pads or crops it to the model's `max_len`
/// newest entries itself (`Tile` + `Concat` + `Slice`), so callers may pass any
/// `L >= 1`. `weights` feeds only the EASE part. Standard opset-17 ops only:
/// `Gather`, `MatMul`, `Gemm`, `LayerNormalization`, `Softmax`, `Relu`,
/// `Reshape`, `Transpose`, `TopK` and elementwise arithmetic.
pub fn sequence_model(kind: ModelKind, w: &SasRecWeights, ease: Option<(ItemItem<'_>, f32)>, decay: f32) -> Vec<u8> {
    let cfg = &w.config;
    let (n, d, l, heads) = (w.n_items, cfg.dim, cfg.max_len, cfg.heads);
    let dh = d / heads;
    let mut nodes = Vec::new();
    let mut init = vec![
        tensor_f32("E", &[n, d], &w.item_emb),
        tensor_f32("P", &[l, d], &w.pos_emb),
        tensor_f32("sqrt_d", &[1], &[(d as f32).sqrt()]),
        tensor_f32("attn_scale", &[1], &[1.0 / (dh as f32).sqrt()]),
        tensor_f32("one_f", &[1], &[1.0]),
        tensor_f32("masked_f", &[1], &[sasrec::MASKED]),
        tensor_i64("pad_item", &[1], &[n as i64]),
        tensor_i64("last_item", &[1], &[n as i64 - 1]),
        tensor_i64("zero_i64", &[1], &[0]),
        tensor_i64("one_i64", &[1], &[1]),
        tensor_i64("tile_reps", &[2], &[1, l as i64]),
        tensor_i64("crop_start", &[1], &[-(l as i64)]),
        tensor_i64("crop_end", &[1], &[i64::MAX]),
        tensor_i64("axes_12", &[2], &[1, 2]),
        tensor_i64("heads_shape", &[4], &[0, 0, heads as i64, dh as i64]),
        tensor_i64("model_shape", &[3], &[0, 0, d as i64]),
        tensor_i64("newest", &[], &[l as i64 - 1]),
    ];
    let causal: Vec<f32> = (0..l * l).map(|i| if i % l > i / l { sasrec::MASKED } else { 0.0 }).collect();
    init.push(tensor_f32("causal", &[l, l], &causal));
    // Left-pad with `l` padding columns, then keep the newest `l`: [batch, l].
    nodes.push(node("Slice", &[contract::INPUT_HISTORY, "zero_i64", "one_i64", "one_i64"], &["first_col"], vec![]));
    nodes.push(node("Mul", &["first_col", "zero_i64"], &["zero_col"], vec![]));
    nodes.push(node("Add", &["zero_col", "pad_item"], &["pad_col"], vec![]));
    nodes.push(node("Tile", &["pad_col", "tile_reps"], &["pad_block"], vec![]));
    nodes.push(node("Concat", &["pad_block", contract::INPUT_HISTORY], &["padded"], vec![attr_int("axis", 1)]));
    nodes.push(node("Slice", &["padded", "crop_start", "crop_end", "one_i64"], &["seq"], vec![]));
    // Masks: [batch, l, 1] for positions, [batch, 1, l, l] additive attention bias.
    nodes.push(node("Equal", &["seq", "pad_item"], &["is_pad"], vec![]));
    nodes.push(node("Not", &["is_pad"], &["is_item"], vec![]));
    nodes.push(node("Cast", &["is_item"], &["mask"], vec![attr_int("to", DataType::Float as i64)]));
    nodes.push(node("Unsqueeze", &["mask", "axes_2"], &["mask3"], vec![]));
    nodes.push(node("Sub", &["one_f", "mask"], &["pad_f"], vec![]));
    nodes.push(node("Mul", &["pad_f", "masked_f"], &["key_bias"], vec![]));
    nodes.push(node("Unsqueeze", &["key_bias", "axes_12"], &["key_bias4"], vec![]));
    nodes.push(node("Add", &["causal", "key_bias4"], &["attn_bias"], vec![]));
    // Embeddings: the padding index is clamped into range and then zeroed by the mask.
    nodes.push(node("Min", &["seq", "last_item"], &["seq_idx"], vec![]));
    nodes.push(node("Gather", &["E", "seq_idx"], &["emb"], vec![attr_int("axis", 0)]));
    nodes.push(node("Mul", &["emb", "sqrt_d"], &["emb_scaled"], vec![]));
    nodes.push(node("Add", &["emb_scaled", "P"], &["x_in"], vec![]));
    nodes.push(node("Mul", &["x_in", "mask3"], &["x_0"], vec![]));
    let ln = |x: &str, g: &str, b: &str, out: &str| {
        node("LayerNormalization", &[x, g, b], &[out], vec![attr_int("axis", -1), attr_float("epsilon", sasrec::LN_EPS as f32)])
    };
    let names = ["ln1_g", "ln1_b", "wq", "bq", "wk", "bk", "wv", "bv", "wo", "bo", "ln2_g", "ln2_b", "w1", "b1", "w2", "b2"];
    let mut x = "x_0".to_string();
    for (i, params) in w.blocks.iter().enumerate() {
        let p = |s: &str| format!("b{i}_{s}");
        for (name, values) in names.iter().zip(params) {
            let dims: Vec<usize> = match *name {
                "wq" | "wk" | "wv" | "wo" => vec![d, d],
                "w1" => vec![d, sasrec::FF_MULT * d],
                "w2" => vec![sasrec::FF_MULT * d, d],
                _ => vec![values.len()],
            };
            init.push(tensor_f32(&p(name), &dims, values));
        }
        nodes.push(ln(&x, &p("ln1_g"), &p("ln1_b"), &p("a")));
        for (proj, perm) in [("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])] {
            nodes.push(node("MatMul", &[&p("a"), &p(&format!("w{proj}"))], &[&p(&format!("{proj}_mm"))], vec![]));
            nodes.push(node("Add", &[&p(&format!("{proj}_mm")), &p(&format!("b{proj}"))], &[&p(&format!("{proj}_lin"))], vec![]));
            nodes.push(node("Reshape", &[&p(&format!("{proj}_lin")), "heads_shape"], &[&p(&format!("{proj}_heads"))], vec![]));
            nodes.push(node("Transpose", &[&p(&format!("{proj}_heads"))], &[&p(proj)], vec![attr_ints("perm", &perm)]));
        }
        nodes.push(node("MatMul", &[&p("q"), &p("k")], &[&p("qk")], vec![]));
        nodes.push(node("Mul", &[&p("qk"), "attn_scale"], &[&p("qk_scaled")], vec![]));
        nodes.push(node("Add", &[&p("qk_scaled"), "attn_bias"], &[&p("logits")], vec![]));
        nodes.push(node("Softmax", &[&p("logits")], &[&p("att")], vec![attr_int("axis", -1)]));
        nodes.push(node("MatMul", &[&p("att"), &p("v")], &[&p("ctx_heads")], vec![]));
        nodes.push(node("Transpose", &[&p("ctx_heads")], &[&p("ctx_t")], vec![attr_ints("perm", &[0, 2, 1, 3])]));
        nodes.push(node("Reshape", &[&p("ctx_t"), "model_shape"], &[&p("ctx")], vec![]));
        nodes.push(node("MatMul", &[&p("ctx"), &p("wo")], &[&p("o_mm")], vec![]));
        nodes.push(node("Add", &[&p("o_mm"), &p("bo")], &[&p("o")], vec![]));
        nodes.push(node("Add", &[&x, &p("o")], &[&p("x_att")], vec![]));
        nodes.push(ln(&p("x_att"), &p("ln2_g"), &p("ln2_b"), &p("f")));
        nodes.push(node("MatMul", &[&p("f"), &p("w1")], &[&p("h1_mm")], vec![]));
        nodes.push(node("Add", &[&p("h1_mm"), &p("b1")], &[&p("h1_lin")], vec![]));
        nodes.push(node("Relu", &[&p("h1_lin")], &[&p("h1")], vec![]));
        nodes.push(node("MatMul", &[&p("h1"), &p("w2")], &[&p("h2_mm")], vec![]));
        nodes.push(node("Add", &[&p("h2_mm"), &p("b2")], &[&p("h2")], vec![]));
        nodes.push(node("Add", &[&p("x_att"), &p("h2")], &[&p("x_ff")], vec![]));
        nodes.push(node("Mul", &[&p("x_ff"), "mask3"], &[&p("x")], vec![]));
        x = p("x");
    }
    init.push(tensor_f32("lnf_g", &[d], &w.ln_final.0));
    init.push(tensor_f32("lnf_b", &[d], &w.ln_final.1));
    nodes.push(ln(&x, "lnf_g", "lnf_b", "hidden"));
    nodes.push(node("Gather", &["hidden", "newest"], &["user_state"], vec![attr_int("axis", 1)]));
    nodes.push(node("Gemm", &["user_state", "E"], &["seq_scores"], vec![attr_int("transB", 1)]));
    let doc = match ease {
        Some((part, gamma)) => {
            let weights = recency_weights(decay, &mut nodes, &mut init);
            match part {
                ItemItem::Dense(b) => {
                    assert_eq!((b.rows, b.cols), (n, n), "EASE weights must cover the sequence model's items");
                    weighted_gather_sum("B", weights, "ease_scores", &mut nodes);
                    init.push(tensor_f32("B", &[n + 1, n], &with_padding_row(b)));
                }
                ItemItem::LowRank { p, q, beta } => {
                    assert_eq!((p.rows, q.cols), (n, n), "low-rank EASE must cover the sequence model's items");
                    low_rank_scores(p, q, beta, weights, "ease_scores", &mut nodes, &mut init);
                }
            }
            init.push(tensor_f32("gamma", &[1], &[gamma]));
            nodes.push(node("Mul", &["ease_scores", "gamma"], &["ease_weighted"], vec![]));
            nodes.push(node("Add", &["seq_scores", "ease_weighted"], &["item_scores"], vec![]));
            let how = if matches!(part, ItemItem::Dense(_)) { "EASE" } else { "low-rank EASE" };
            format!("edgerec {} model: SASRec ({}) over {n} items blended with {how}, gamma={gamma}", kind.as_str(), cfg.label())
        }
        None => {
            nodes.push(node("Identity", &["seq_scores"], &["item_scores"], vec![]));
            format!("edgerec {} model: SASRec ({}) over {n} items (Kang & McAuley, ICDM 2018)", kind.as_str(), cfg.label())
        }
    };
    finish_model(kind, n, "item_scores", nodes, init, doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::OnnxRecommender;

    #[test]
    fn full_model_runs_in_tract_and_computes_x_times_b() {
        // 3 items; B rows: item 0 → [0, 2, 1], item 1 → [1, 0, 3], item 2 → [0.5, 0.5, 0].
        let b = DenseF32 { rows: 3, cols: 3, data: vec![0.0, 2.0, 1.0, 1.0, 0.0, 3.0, 0.5, 0.5, 0.0] };
        let model = OnnxRecommender::from_bytes(&full_model(&b, 1.0)).unwrap();
        assert_eq!((model.n_items(), model.top_k()), (3, 3));
        let out = model.run(&[vec![(0, 1.0), (1, 2.0)], vec![(2, 1.0)]]).unwrap();
        // Row 0: 1·[0,2,1] + 2·[1,0,3] = [2, 2, 7].
        assert_eq!(out[0].indices[0], 2);
        assert_eq!(out[0].scores, vec![7.0, 2.0, 2.0]);
        assert_eq!(out[1].scores, vec![0.5, 0.5, 0.0]);
        assert_eq!(out[1].indices[2], 2);
    }

    #[test]
    fn recency_decay_in_tract_weighs_the_newest_entry_most_whatever_the_padding() {
        // B = I (3 items): the scores are the decayed input x itself.
        let b = DenseF32 { rows: 3, cols: 3, data: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0] };
        let model = OnnxRecommender::from_bytes(&full_model(&b, 0.5)).unwrap();
        // Row 0 (oldest first): 0, 1, 0 → x = [1 + 0.25, 0.5, 0]; row 1 is left-padded to L = 3.
        let out = model.run(&[vec![(0, 1.0), (1, 1.0), (0, 1.0)], vec![(2, 2.0)]]).unwrap();
        assert_eq!(out[0].indices, vec![0, 1, 2]);
        assert_eq!(out[0].scores, vec![1.25, 0.5, 0.0]);
        assert_eq!(out[1].indices[0], 2);
        assert_eq!(out[1].scores[0], 2.0, "the newest entry is not decayed, padded or not");
        assert_eq!(out[0].scores, crate::model::recency_input(&[(0, 1.0), (1, 1.0), (0, 1.0)], 3, 0.5).iter().map(|&v| v as f32).collect::<Vec<_>>());
        // The edge graph decays its buy-again term and its low-rank part alike.
        let p = DenseF32 { rows: 2, cols: 1, data: vec![1.0, 2.0] };
        let q = DenseF32 { rows: 1, cols: 2, data: vec![3.0, 1.0] };
        let edge = OnnxRecommender::from_bytes(&low_rank_model(ModelKind::Edge, &p, &q, 10.0, 0.5)).unwrap();
        // x = [0.5, 1]: latent = 0.5 + 2 = 2.5 → [7.5, 2.5] + 10·[0.5, 1] = [12.5, 12.5].
        assert_eq!(edge.run(&[vec![(0, 1.0), (1, 1.0)]]).unwrap()[0].scores, vec![12.5, 12.5]);
    }

    #[test]
    fn edge_model_with_buy_again_term_runs_in_tract() {
        // m = 2, r = 1: P = [[1], [2]], Q = [[3, 1]]; beta = 10.
        let p = DenseF32 { rows: 2, cols: 1, data: vec![1.0, 2.0] };
        let q = DenseF32 { rows: 1, cols: 2, data: vec![3.0, 1.0] };
        let model = OnnxRecommender::from_bytes(&low_rank_model(ModelKind::Edge, &p, &q, 10.0, 1.0)).unwrap();
        let out = model.run(&[vec![(1, 1.0)]]).unwrap();
        // latent = 2; low-rank = [6, 2]; + 10·[0, 1] = [6, 12].
        assert_eq!(out[0].indices, vec![1, 0]);
        assert_eq!(out[0].scores, vec![12.0, 6.0]);
        let plain = OnnxRecommender::from_bytes(&low_rank_model(ModelKind::Edge, &p, &q, 0.0, 1.0)).unwrap();
        assert_eq!(plain.run(&[vec![(1, 1.0)]]).unwrap()[0].scores, vec![6.0, 2.0]);
    }

    #[test]
    fn sequence_model_in_tract_matches_the_trainer_for_short_long_and_blended_histories() {
        use rand::SeedableRng;
        let cfg = crate::sasrec::SasRecConfig {
            dim: 8,
            layers: 2,
            heads: 2,
            max_len: 4,
            dropout: 0.0,
            learning_rate: 1e-3,
            batch_size: 4,
            max_epochs: 1,
            patience: 1,
            negatives: None,
            seed: 3,
            sparse_embeddings: false,
            popularity_negatives: false,
        };
        let n = 6;
        let model = crate::sasrec::SasRec::new(cfg, n, &mut rand::rngs::StdRng::seed_from_u64(3)).unwrap();
        let weights = model.weights().unwrap();
        let b = DenseF32 { rows: n, cols: n, data: (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect() };
        let cfg = &weights.config;
        let floats = weights.item_emb.len() + weights.pos_emb.len() + weights.blocks.iter().flatten().map(Vec::len).sum::<usize>() + 2 * cfg.dim;
        assert_eq!(floats, cfg.parameters(n), "the size estimate counts every exported parameter");
        // A rank-2 item-item part P·Q + 0.5·I, and its dense equal for the expected scores.
        let p = DenseF32 { rows: n, cols: 2, data: (0..2 * n).map(|i| (i % 5) as f32 * 0.2 - 0.3).collect() };
        let q = DenseF32 { rows: 2, cols: n, data: (0..2 * n).map(|i| (i % 3) as f32 * 0.4 - 0.1).collect() };
        let pq_dense = DenseF32 {
            rows: n,
            cols: n,
            data: (0..n * n).map(|k| (0..2).map(|r| p.row(k / n)[r] * q.row(r)[k % n]).sum::<f32>() + if k / n == k % n { 0.5 } else { 0.0 }).collect(),
        };
        let low_rank = ItemItem::LowRank { p: &p, q: &q, beta: 0.5 };
        let cases = [
            (None, None, 0.0f32, 1.0f32),
            (Some(ItemItem::Dense(&b)), Some(&b), 2.0, 1.0),
            (Some(ItemItem::Dense(&b)), Some(&b), 2.0, 0.8),
            (Some(low_rank), Some(&pq_dense), 3.0, 0.8),
        ];
        for (part, ease, gamma, decay) in cases {
            let onnx = OnnxRecommender::from_bytes(&sequence_model(ModelKind::Edge, &weights, part.map(|part| (part, gamma)), decay)).unwrap();
            assert_eq!(onnx.top_k(), n);
            // L = 1, L < max_len, L > max_len (only the newest 4 count), in one batch.
            let histories: Vec<Vec<u32>> = vec![vec![5], vec![2, 0, 1], vec![3, 3, 4, 1, 0, 2, 5]];
            let rows: Vec<Vec<(usize, f32)>> = histories.iter().map(|h| h.iter().map(|&i| (i as usize, 1.0)).collect()).collect();
            let got = onnx.run(&rows).unwrap();
            let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
            let want = model.scores(&refs).unwrap();
            for ((g, w), h) in got.iter().zip(&want).zip(&histories) {
                for (&i, &s) in g.indices.iter().zip(&g.scores) {
                    let age = |k: usize| (h.len() - 1 - k) as i32;
                    let ease_part: f32 =
                        ease.map_or(0.0, |b| gamma * h.iter().enumerate().map(|(k, &j)| decay.powi(age(k)) * b.row(j as usize)[i]).sum::<f32>());
                    assert!((s - (w[i] + ease_part)).abs() < 1e-4, "item {i}: tract {s} vs trainer {}", w[i] + ease_part);
                }
            }
        }
    }

    /// The profiled run (bench-edge's per-node table) answers what the plain
    /// run answers, with one timing per evaluated node, the graph's ops among them.
    #[test]
    fn profiled_run_matches_the_plain_run_and_times_each_node() {
        let p = DenseF32 { rows: 3, cols: 2, data: vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0] };
        let q = DenseF32 { rows: 2, cols: 3, data: vec![1.0, 2.0, 0.0, 0.0, 1.0, 3.0] };
        let model = OnnxRecommender::from_bytes(&low_rank_model(ModelKind::Edge, &p, &q, 0.0, 1.0)).unwrap();
        let rows = vec![vec![(0, 1.0), (2, 2.0)], vec![(1, 1.0)]];
        let mut ticks = 0.0;
        let mut clock = || {
            ticks += 1.0;
            ticks
        };
        let mut nodes = Vec::new();
        let profiled = model.run_profiled(&rows, &mut clock, &mut nodes).unwrap();
        assert_eq!(profiled, model.run(&rows).unwrap());
        assert!(nodes.iter().all(|n| n.ms == 1.0), "one clock tick per node: {nodes:?}");
        let ops: Vec<&str> = nodes.iter().map(|n| n.op.as_str()).collect();
        assert!(ops.contains(&"Gather") && ops.contains(&"Topk"), "{ops:?}");
        let again = nodes.len();
        model.run_profiled(&rows, &mut clock, &mut nodes).unwrap();
        assert_eq!(nodes.len(), 2 * again, "a second run appends one entry per node");
    }

    #[test]
    fn out_of_range_history_is_refused_before_the_model_runs() {
        let b = DenseF32 { rows: 2, cols: 2, data: vec![0.0; 4] };
        let model = OnnxRecommender::from_bytes(&full_model(&b, 1.0)).unwrap();
        let err = model.run(&[vec![(2, 1.0)]]).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let b = DenseF32 { rows: 2, cols: 2, data: vec![0.0; 4] };
        let bytes = full_model(&b, 1.0);
        assert!(OnnxRecommender::from_bytes(&bytes[..bytes.len() / 2]).is_err());
        assert!(OnnxRecommender::from_bytes(b"not onnx").is_err());
    }
}
