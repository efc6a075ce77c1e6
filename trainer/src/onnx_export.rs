//! Writes the two models as ONNX graphs following [`shared::contract`].
//!
//! The graphs are built directly from the ONNX protobuf types that
//! `tract-onnx` exposes (`tract_onnx::pb`) and encoded with `prost`, so no
//! Python or ONNX tooling is needed at training time.
//!
//! Full model (EASE, Steck WWW 2019), `B: [n+1, n]` with a zero padding row:
//! `scores, indices = TopK(ReduceSum(Gather(B, history) * weights[..., None], axis=1), top_k)`.
//!
//! Edge model (low-rank), `P: [m+1, r]` (zero padding row), `Q: [r, m]`:
//! `s = ReduceSum(Gather(P, history) * weights[..., None], axis=1) @ Q`,
//! plus, when `beta > 0`, the buy-again term `beta * x` where
//! `x[b, i] = Σ_j weights[b, j] · [history[b, j] == i]` (Equal against a `Range` constant).

use prost::Message;
use shared::contract::{self, ModelKind};
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

/// Nodes shared by both graphs: `ReduceSum(Gather(table, history) * weights[..., None], axis=1)` → `out`.
fn weighted_gather_sum(table: &str, out: &str, nodes: &mut Vec<pb::NodeProto>) {
    nodes.push(node("Gather", &[table, contract::INPUT_HISTORY], &["gathered"], vec![attr_int("axis", 0)]));
    nodes.push(node("Unsqueeze", &[contract::INPUT_WEIGHTS, "axes_2"], &["weights_3d"], vec![]));
    nodes.push(node("Mul", &["gathered", "weights_3d"], &["weighted"], vec![]));
    nodes.push(node("ReduceSum", &["weighted", "axes_1"], &[out], vec![attr_int("keepdims", 0)]));
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

/// Encodes the full model for item-item weights `b: [n, n]` (`s = x · b`).
pub fn full_model(b: &DenseF32) -> Vec<u8> {
    assert_eq!(b.rows, b.cols, "EASE weights are square");
    let n = b.rows;
    let mut nodes = Vec::new();
    weighted_gather_sum("B", "item_scores", &mut nodes);
    let init = vec![tensor_f32("B", &[n + 1, n], &with_padding_row(b))];
    let doc = format!("edgerec full model: EASE over {n} items; scores = x·B (Steck, WWW 2019)");
    finish_model(ModelKind::Full, n, "item_scores", nodes, init, doc)
}

/// Encodes the edge model `s = x · p · q + beta · x` for `p: [m, r]`, `q: [r, m]`.
pub fn edge_model(p: &DenseF32, q: &DenseF32, beta: f32) -> Vec<u8> {
    assert_eq!((p.cols, q.cols), (q.rows, p.rows), "low-rank factors must be [m, r] and [r, m]");
    let (m, r) = (p.rows, p.cols);
    let mut nodes = Vec::new();
    weighted_gather_sum("P", "latent", &mut nodes);
    let mut init = vec![tensor_f32("P", &[m + 1, r], &with_padding_row(p)), tensor_f32("Q", &[r, m], &q.data)];
    if beta > 0.0 {
        nodes.push(node("MatMul", &["latent", "Q"], &["low_rank_scores"], vec![]));
        let range: Vec<i64> = (0..m as i64).collect();
        init.push(tensor_i64("item_range", &[1, 1, m], &range));
        init.push(tensor_f32("beta", &[1], &[beta]));
        nodes.push(node("Unsqueeze", &[contract::INPUT_HISTORY, "axes_2"], &["history_3d"], vec![]));
        nodes.push(node("Equal", &["history_3d", "item_range"], &["one_hot_bool"], vec![]));
        nodes.push(node("Cast", &["one_hot_bool"], &["one_hot"], vec![attr_int("to", DataType::Float as i64)]));
        nodes.push(node("Mul", &["one_hot", "weights_3d"], &["weighted_one_hot"], vec![]));
        nodes.push(node("ReduceSum", &["weighted_one_hot", "axes_1"], &["x_dense"], vec![attr_int("keepdims", 0)]));
        nodes.push(node("Mul", &["x_dense", "beta"], &["buy_again"], vec![]));
        nodes.push(node("Add", &["low_rank_scores", "buy_again"], &["item_scores"], vec![]));
    } else {
        nodes.push(node("MatMul", &["latent", "Q"], &["item_scores"], vec![]));
    }
    let doc = format!("edgerec edge model: rank-{r} approximation over the {m} most popular items, buy-again beta={beta}");
    finish_model(ModelKind::Edge, m, "item_scores", nodes, init, doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::OnnxRecommender;

    #[test]
    fn full_model_runs_in_tract_and_computes_x_times_b() {
        // 3 items; B rows: item 0 → [0, 2, 1], item 1 → [1, 0, 3], item 2 → [0.5, 0.5, 0].
        let b = DenseF32 { rows: 3, cols: 3, data: vec![0.0, 2.0, 1.0, 1.0, 0.0, 3.0, 0.5, 0.5, 0.0] };
        let model = OnnxRecommender::from_bytes(&full_model(&b)).unwrap();
        assert_eq!((model.n_items(), model.top_k()), (3, 3));
        let out = model.run(&[vec![(0, 1.0), (1, 2.0)], vec![(2, 1.0)]]).unwrap();
        // Row 0: 1·[0,2,1] + 2·[1,0,3] = [2, 2, 7].
        assert_eq!(out[0].indices[0], 2);
        assert_eq!(out[0].scores, vec![7.0, 2.0, 2.0]);
        assert_eq!(out[1].scores, vec![0.5, 0.5, 0.0]);
        assert_eq!(out[1].indices[2], 2);
    }

    #[test]
    fn edge_model_with_buy_again_term_runs_in_tract() {
        // m = 2, r = 1: P = [[1], [2]], Q = [[3, 1]]; beta = 10.
        let p = DenseF32 { rows: 2, cols: 1, data: vec![1.0, 2.0] };
        let q = DenseF32 { rows: 1, cols: 2, data: vec![3.0, 1.0] };
        let model = OnnxRecommender::from_bytes(&edge_model(&p, &q, 10.0)).unwrap();
        let out = model.run(&[vec![(1, 1.0)]]).unwrap();
        // latent = 2; low-rank = [6, 2]; + 10·[0, 1] = [6, 12].
        assert_eq!(out[0].indices, vec![1, 0]);
        assert_eq!(out[0].scores, vec![12.0, 6.0]);
        let plain = OnnxRecommender::from_bytes(&edge_model(&p, &q, 0.0)).unwrap();
        assert_eq!(plain.run(&[vec![(1, 1.0)]]).unwrap()[0].scores, vec![6.0, 2.0]);
    }

    #[test]
    fn out_of_range_history_is_refused_before_the_model_runs() {
        let b = DenseF32 { rows: 2, cols: 2, data: vec![0.0; 4] };
        let model = OnnxRecommender::from_bytes(&full_model(&b)).unwrap();
        let err = model.run(&[vec![(2, 1.0)]]).unwrap_err();
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    #[test]
    fn truncated_file_is_an_error_not_a_panic() {
        let b = DenseF32 { rows: 2, cols: 2, data: vec![0.0; 4] };
        let bytes = full_model(&b);
        assert!(OnnxRecommender::from_bytes(&bytes[..bytes.len() / 2]).is_err());
        assert!(OnnxRecommender::from_bytes(b"not onnx").is_err());
    }
}
