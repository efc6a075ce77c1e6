//! The ONNX model contract shared by the full and the edge model.
//!
//! Both models are plain ONNX graphs (opset [`OPSET`]) with the same interface,
//! so the origin, the edge worker and the tests treat them alike:
//!
//! | name      | kind   | dtype   | shape          | meaning |
//! |-----------|--------|---------|----------------|---------|
//! | `history` | input  | int64   | `[batch, L]`   | item indices in `0..n_items`, **ordered oldest to newest, left-padded**: [`padding_index`]`(n_items) == n_items` fills the start of short rows, so the newest item is always in column `L − 1` |
//! | `weights` | input  | float32 | `[batch, L]`   | weight of each history entry (1.0 per view or purchase; 0.0 for padding), aligned with `history` |
//! | `scores`  | output | float32 | `[batch, top_k]` | model scores, sorted in descending order |
//! | `indices` | output | int64   | `[batch, top_k]` | item indices of `scores`, in `0..n_items` |
//!
//! `batch` and `L` are dynamic (`L >= 1`). `top_k` is fixed per model file and
//! recorded in the manifest: `top_k = min(n_items, MAX_K + MAX_HISTORY)`, so a
//! caller that removes the (at most [`MAX_HISTORY`]) history items from the
//! output still has [`MAX_K`] items left whenever the catalog has them —
//! "exclude seen" is a host-side filter and costs no second model run.
//!
//! An index outside `0..=n_items` is a contract violation: callers must
//! validate (see [`crate::Catalog::resolve`]); on wasm an out-of-range gather
//! aborts the instance.
//!
//! The order rule: a history is what the shopper did, oldest first; a repeated
//! item appears as often as it happened. Callers never sort or deduplicate it
//! (see [`crate::request::canonicalize`]). Models that read only the bag of
//! items ignore the order; models that read the sequence need it.
//!
//! The full model is one of five, whichever wins on validation (the manifest's
//! `models.full.params.architecture` says which):
//! * `ease`: `s = x · B` (Steck, "Embarrassingly Shallow Autoencoders for
//!   Sparse Data", WWW 2019), where `x[i]` is the sum of `weights` over the
//!   history entries equal to `i`, each first decayed by recency as
//!   `weights[j] · r^(L−1−j)` (`params.decay = r`; 1 = none);
//! * `ease-low-rank`: `s ≈ x · P · Q + β · x`, EASE at a rank that serves as
//!   well as the dense `B` (chosen on validation; no `[n, n]` matrix);
//! * `sasrec`: next-item logits of a causal self-attention model over the
//!   newest `max_len` entries (Kang & McAuley, ICDM 2018; the graph crops or
//!   pads `L` to `max_len` itself, so any `L ≥ 1` works);
//! * `sasrec+ease`: `s = logits + γ · x · B` (`x` decayed as for `ease`);
//!   `sasrec+ease-low-rank` with the low-rank EASE in place of `B`.
//!
//! The edge model computes a low-rank approximation `s ≈ x · P · Q + β · x` of
//! EASE over the most popular items (the same decay).

/// ONNX opset the trainer writes and the loaders expect (ONNX 1.12, 2022).
pub const OPSET: i64 = 17;
/// ONNX IR version matching [`OPSET`].
pub const IR_VERSION: i64 = 8;

/// Name of the `int64 [batch, L]` history input.
pub const INPUT_HISTORY: &str = "history";
/// Name of the `float32 [batch, L]` weights input.
pub const INPUT_WEIGHTS: &str = "weights";
/// Name of the `float32 [batch, top_k]` scores output.
pub const OUTPUT_SCORES: &str = "scores";
/// Name of the `int64 [batch, top_k]` indices output.
pub const OUTPUT_INDICES: &str = "indices";

/// Largest `k` a request may ask for.
pub const MAX_K: usize = 100;
/// Longest history a request may carry (items); longer requests are refused
/// by the servers (HTTP 422), and the trainer keeps the most recent entries.
pub const MAX_HISTORY: usize = 500;

/// The index that pads a history row: one past the last item. Its rows in the
/// model's weight matrices are zero, so padding contributes nothing.
pub const fn padding_index(n_items: usize) -> usize {
    n_items
}

/// Number of ranked items a model over `n_items` items outputs per row.
pub const fn output_top_k(n_items: usize) -> usize {
    let want = MAX_K + MAX_HISTORY;
    if n_items < want { n_items } else { want }
}

/// Which of the two models a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The full model over the whole catalog (EASE, SASRec or their blend); served by the origin.
    Full,
    /// Compact low-rank model over the most popular items; ships in the worker.
    Edge,
}

impl ModelKind {
    /// File name of this model inside a model directory (`full.onnx`, `edge.onnx`).
    pub fn file_name(self) -> &'static str {
        match self {
            ModelKind::Full => "full.onnx",
            ModelKind::Edge => "edge.onnx",
        }
    }

    /// Lower-case name used in manifests and API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Full => "full",
            ModelKind::Edge => "edge",
        }
    }
}
