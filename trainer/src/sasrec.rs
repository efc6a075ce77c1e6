//! The sequence model: a causal self-attention recommender in the SASRec family
//! (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018),
//! trained with the cross-entropy loss of SASRec+ (Klenitskiy & Vasilev,
//! "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?",
//! RecSys 2023): a full softmax over the catalog, or over a shared sample of
//! uniform negatives when the catalog is large.
//!
//! Shapes (`B` sequences, `L = max_len` positions, `d` model width, `n` items):
//!
//! ```text
//! history [B, L] (left-padded with n) ─ E[history]·√d + P ─ × mask ─ dropout
//!   ─ layers × { x += Wo·MHA(LN(x), causal + key-padding bias); x += FFN(LN(x)); x ×= mask }
//!   ─ LN ─ h [B, L, d] ─ logits = h · E[0..n]ᵀ  [B, L, n]
//! ```
//!
//! The output layer shares the item embeddings `E`, so the model holds
//! `n·d` floats plus a constant: it grows linearly with the catalog. Automatic
//! differentiation and the optimizer (AdamW) are `candle`'s; every random
//! number (initialization, dropout, shuffling, negatives) comes from one
//! seeded generator, so a run is reproducible.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// Attention bias for masked keys; large enough that `softmax` gives them no
/// weight, finite so that a fully masked (padding) row stays finite.
pub const MASKED: f32 = -1e9;
/// Layer-norm epsilon, the same in training and in the exported graph.
pub const LN_EPS: f64 = 1e-5;

/// Hyper-parameters of one sequence model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SasRecConfig {
    /// Model width `d` (embedding size).
    pub dim: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Attention heads; `dim` must be divisible by it.
    pub heads: usize,
    /// Positions the model reads: the most recent `max_len` items.
    pub max_len: usize,
    /// Dropout probability on embeddings, attention and feed-forward outputs.
    pub dropout: f32,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Sequences per optimizer step.
    pub batch_size: usize,
    /// Upper bound on epochs (early stopping usually ends sooner).
    pub max_epochs: usize,
    /// Epochs without a better validation NDCG@20 before stopping.
    pub patience: usize,
    /// Uniform negatives shared by a batch; `None` (or a catalog not larger
    /// than twice this) uses the full softmax.
    pub negatives: Option<usize>,
    /// Seed of every random number in training.
    pub seed: u64,
    /// Update the item embeddings lazily: only the rows a batch touched, each
    /// with its own Adam moments (as PyTorch's `SparseAdam`, TensorFlow's
    /// `LazyAdam`), so a step costs the batch rather than the catalog. Needs
    /// `negatives` (a full softmax touches every row anyway). See [`SPARSE_ABOVE`].
    #[serde(default)]
    pub sparse_embeddings: bool,
    /// Draw the shared negatives in proportion to `count^0.75` of the training
    /// items instead of uniformly, and subtract `ln(k·q_j)` from every logit
    /// of the sampled softmax (the log-Q correction of TensorFlow's
    /// `sampled_softmax_loss`; Yi et al., "Sampling-Bias-Corrected Neural
    /// Modeling for Large Corpus Item Recommendations", RecSys 2019), so the
    /// served logits still estimate the full softmax. Over a long-tailed
    /// catalog of 10⁵+ items, uniform negatives are almost all tail items and
    /// teach the model little about the head that shoppers actually meet.
    #[serde(default)]
    pub popularity_negatives: bool,
}

/// Catalog size above which the pipeline trains the item embeddings lazily
/// ([`SasRecConfig::sparse_embeddings`]): a dense AdamW step reads and writes
/// the whole `n × d` table about ten times (gradient, moments, update), which
/// at 10⁶ items and `d = 32` is ~1.3 GB of memory traffic per step, more than
/// the batch's own compute.
pub const SPARSE_ABOVE: usize = 1 << 16;

impl SasRecConfig {
    /// Short label for tuning tables.
    pub fn label(&self) -> String {
        format!("d={} layers={} heads={} len={} dropout={}", self.dim, self.layers, self.heads, self.max_len, self.dropout)
    }

    /// Parameters of the exported model over `n_items` items ([`SasRecWeights`]):
    /// item and position embeddings, per block two layer norms, four `d × d`
    /// attention projections and the two feed-forward layers with their
    /// biases, and the final layer norm. Times 4 is its f32 size in bytes.
    pub fn parameters(&self, n_items: usize) -> usize {
        let (d, ff) = (self.dim, FF_MULT * self.dim);
        let block = 4 * d + 4 * (d * d + d) + (d * ff + ff) + (ff * d + d);
        n_items * d + self.max_len * d + self.layers * block + 2 * d
    }
}

/// Why training could not run.
#[derive(Debug, thiserror::Error)]
pub enum SasRecError {
    /// The settings cannot describe a model.
    #[error("sequence model settings: {0}")]
    Config(String),
    /// No user has two items in sequence to learn from.
    #[error("the training log has no sequence with at least two items")]
    NoSequences,
    /// A tensor operation failed (shape bug or out of memory).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
}

/// One transformer block's parameters (`[in, out]` matrices, `x·W + b`).
struct Block {
    ln1: (Var, Var),
    wq: (Var, Var),
    wk: (Var, Var),
    wv: (Var, Var),
    wo: (Var, Var),
    ln2: (Var, Var),
    ff1: (Var, Var),
    ff2: (Var, Var),
}

impl Block {
    /// The `(weight, bias)` pairs in the order of [`SasRecWeights::blocks`].
    fn params(&self) -> [&(Var, Var); 8] {
        [&self.ln1, &self.wq, &self.wk, &self.wv, &self.wo, &self.ln2, &self.ff1, &self.ff2]
    }
}

/// A trained (or training) model. Parameters are `candle` variables.
pub struct SasRec {
    /// Settings it was built with.
    pub config: SasRecConfig,
    /// Items it scores (`E` has `n + 1` rows; row `n` is padding).
    pub n_items: usize,
    item_emb: Var,
    pos_emb: Var,
    blocks: Vec<Block>,
    ln_final: (Var, Var),
}

/// Plain `f32` copies of the parameters, for export (`[rows, cols]` row-major).
#[derive(Debug, Clone)]
pub struct SasRecWeights {
    /// Settings.
    pub config: SasRecConfig,
    /// Items scored.
    pub n_items: usize,
    /// Item embeddings without the padding row, `[n, d]`.
    pub item_emb: Vec<f32>,
    /// Position embeddings, `[max_len, d]` (row `max_len − 1` is the newest item).
    pub pos_emb: Vec<f32>,
    /// Per block, in order: ln1 γ, β `[d]`; Wq, bq; Wk, bk; Wv, bv; Wo, bo (`[d, d]`, `[d]`);
    /// ln2 γ, β; W1 `[d, 4d]`, b1 `[4d]`; W2 `[4d, d]`, b2 `[d]`.
    pub blocks: Vec<Vec<Vec<f32>>>,
    /// Final layer norm γ, β `[d]`.
    pub ln_final: (Vec<f32>, Vec<f32>),
}

/// Feed-forward width relative to `d`: 1×, as in SASRec (two `d × d` layers),
/// not the Transformer's 4×; the wider layer cost a third more time per epoch
/// on this 2-core CPU, where the time budget is tight.
pub const FF_MULT: usize = 1;

fn normal(rng: &mut StdRng, shape: (usize, usize), std: f64) -> Result<Var, SasRecError> {
    let dist = Normal::new(0.0f32, std as f32).map_err(|e| SasRecError::Config(e.to_string()))?;
    let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| dist.sample(rng)).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu)?)?)
}

fn constant(len: usize, value: f32) -> Result<Var, SasRecError> {
    Ok(Var::from_tensor(&Tensor::from_vec(vec![value; len], len, &Device::Cpu)?)?)
}

fn linear(rng: &mut StdRng, fan_in: usize, fan_out: usize) -> Result<(Var, Var), SasRecError> {
    // Xavier/Glorot normal, as the reference SASRec implementation initializes.
    let std = (2.0 / (fan_in + fan_out) as f64).sqrt();
    Ok((normal(rng, (fan_in, fan_out), std)?, constant(fan_out, 0.0)?))
}

fn norm(dim: usize) -> Result<(Var, Var), SasRecError> {
    Ok((constant(dim, 1.0)?, constant(dim, 0.0)?))
}

/// Differentiable layer norm over the last axis (Ba et al., 2016), the same
/// function as ONNX `LayerNormalization` (biased variance).
fn layer_norm(x: &Tensor, (gamma, beta): &(Var, Var)) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let centered = x.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
    centered.broadcast_div(&(var + LN_EPS)?.sqrt()?)?.broadcast_mul(gamma)?.broadcast_add(beta)
}

/// `x·W + b` for `x: [B, L, in]`, as one `[B·L, in] × [in, out]` product
/// (a batched product would also batch the weight gradient).
fn affine(x: &Tensor, (w, b): &(Var, Var)) -> candle_core::Result<Tensor> {
    let (bs, l, d_in) = x.dims3()?;
    x.reshape((bs * l, d_in))?.matmul(w)?.broadcast_add(b)?.reshape((bs, l, ()))
}

fn to_vec(v: &Var) -> candle_core::Result<Vec<f32>> {
    v.as_tensor().flatten_all()?.to_vec1::<f32>()
}

/// One batch of left-padded windows.
struct Batch {
    /// `[B, L]` item indices, padding `n`, as built (row-major).
    ids: Vec<u32>,
    /// `[B, L]` item indices, padding `n`.
    items: Tensor,
    /// `[B, L, 1]` 1.0 for an item, 0.0 for padding.
    mask: Tensor,
    /// `[B, 1, L, L]` additive attention bias: causal and key padding.
    bias: Tensor,
}

fn batch(windows: &[&[u32]], max_len: usize, n: usize) -> candle_core::Result<Batch> {
    let b = windows.len();
    let mut items = vec![n as u32; b * max_len];
    let mut mask = vec![0f32; b * max_len];
    for (r, w) in windows.iter().enumerate() {
        let w = &w[w.len().saturating_sub(max_len)..];
        let start = max_len - w.len();
        items[r * max_len + start..(r + 1) * max_len].copy_from_slice(w);
        mask[r * max_len + start..(r + 1) * max_len].fill(1.0);
    }
    let mut bias = vec![0f32; b * max_len * max_len];
    for r in 0..b {
        for q in 0..max_len {
            for k in 0..max_len {
                if k > q || mask[r * max_len + k] == 0.0 {
                    bias[(r * max_len + q) * max_len + k] = MASKED;
                }
            }
        }
    }
    let dev = Device::Cpu;
    Ok(Batch {
        items: Tensor::from_vec(items.clone(), (b, max_len), &dev)?,
        ids: items,
        mask: Tensor::from_vec(mask, (b, max_len, 1), &dev)?,
        bias: Tensor::from_vec(bias, (b, 1, max_len, max_len), &dev)?,
    })
}

/// Inverted dropout with a mask drawn from `rng` (`None`: inference).
fn dropout(x: &Tensor, p: f32, rng: Option<&mut StdRng>) -> candle_core::Result<Tensor> {
    let Some(rng) = rng.filter(|_| p > 0.0) else { return Ok(x.clone()) };
    let keep = 1.0 / (1.0 - p);
    let mask: Vec<f32> = (0..x.elem_count()).map(|_| if rng.random::<f32>() < p { 0.0 } else { keep }).collect();
    x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
}

impl SasRec {
    /// A freshly initialized model over `n_items` items.
    ///
    /// # Errors
    /// [`SasRecError::Config`] when `dim` is not divisible by `heads` or a size is zero.
    pub fn new(config: SasRecConfig, n_items: usize, rng: &mut StdRng) -> Result<Self, SasRecError> {
        let (d, h) = (config.dim, config.heads);
        if d == 0 || h == 0 || d % h != 0 || config.layers == 0 || config.max_len == 0 || n_items == 0 {
            return Err(SasRecError::Config(format!("dim {d} must be a positive multiple of heads {h}; layers, max_len and items must be positive")));
        }
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(SasRecError::Config(format!("dropout {} must lie in [0, 1)", config.dropout)));
        }
        let emb_std = 1.0 / (d as f64).sqrt();
        let mut item = normal(rng, (n_items + 1, d), emb_std)?.as_tensor().to_vec2::<f32>()?;
        item[n_items].fill(0.0); // the padding row
        let item_emb = Var::from_tensor(&Tensor::new(item, &Device::Cpu)?)?;
        let pos_emb = normal(rng, (config.max_len, d), emb_std)?;
        let mut blocks = Vec::with_capacity(config.layers);
        for _ in 0..config.layers {
            blocks.push(Block {
                ln1: norm(d)?,
                wq: linear(rng, d, d)?,
                wk: linear(rng, d, d)?,
                wv: linear(rng, d, d)?,
                wo: linear(rng, d, d)?,
                ln2: norm(d)?,
                ff1: linear(rng, d, FF_MULT * d)?,
                ff2: linear(rng, FF_MULT * d, d)?,
            });
        }
        Ok(SasRec { config, n_items, item_emb, pos_emb, blocks, ln_final: norm(d)? })
    }

    fn vars(&self) -> Vec<Var> {
        let mut v = vec![self.item_emb.clone(), self.pos_emb.clone(), self.ln_final.0.clone(), self.ln_final.1.clone()];
        for b in &self.blocks {
            for (w, bias) in b.params() {
                v.push(w.clone());
                v.push(bias.clone());
            }
        }
        v
    }

    /// Hidden states `[B, L, d]` of a batch; dropout only when `rng` is given.
    fn hidden(&self, batch: &Batch, rng: Option<&mut StdRng>) -> candle_core::Result<Tensor> {
        self.hidden_from(self.item_emb.as_tensor(), &batch.items, batch, rng)
    }

    /// [`SasRec::hidden`] reading the embeddings of `items` (`[B, L]`) from
    /// `table`: the whole table, or the rows a sparse step gathered.
    fn hidden_from(&self, table: &Tensor, items: &Tensor, batch: &Batch, mut rng: Option<&mut StdRng>) -> candle_core::Result<Tensor> {
        let cfg = &self.config;
        let (b, l) = items.dims2()?;
        let (d, heads) = (cfg.dim, cfg.heads);
        let dh = d / heads;
        let emb = table.index_select(&items.flatten_all()?, 0)?.reshape((b, l, d))?;
        let x = (emb * (d as f64).sqrt())?.broadcast_add(self.pos_emb.as_tensor())?;
        let mut x = dropout(&x, cfg.dropout, rng.as_deref_mut())?.broadcast_mul(&batch.mask)?;
        let scale = 1.0 / (dh as f64).sqrt();
        for blk in &self.blocks {
            let a = layer_norm(&x, &blk.ln1)?;
            let split = |t: Tensor| t.reshape((b, l, heads, dh))?.transpose(1, 2)?.contiguous();
            let q = split(affine(&a, &blk.wq)?)?;
            let k = split(affine(&a, &blk.wk)?)?;
            let v = split(affine(&a, &blk.wv)?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&batch.bias)?;
            let att = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let ctx = att.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, l, d))?;
            x = (x + dropout(&affine(&ctx, &blk.wo)?, cfg.dropout, rng.as_deref_mut())?)?;
            let f = layer_norm(&x, &blk.ln2)?;
            let ff = affine(&affine(&f, &blk.ff1)?.relu()?, &blk.ff2)?;
            x = (x + dropout(&ff, cfg.dropout, rng.as_deref_mut())?)?.broadcast_mul(&batch.mask)?;
        }
        layer_norm(&x, &self.ln_final)
    }

    /// Output item embeddings `E[0..n]`, `[n, d]`.
    fn output_table(&self) -> candle_core::Result<Tensor> {
        self.item_emb.as_tensor().narrow(0, 0, self.n_items)
    }

    /// Next-item logits `[histories.len(), n]` after each history (item
    /// indices `< n`, oldest first; only the last `max_len` are read).
    ///
    /// # Errors
    /// On a tensor failure (out of memory).
    pub fn scores(&self, histories: &[&[u32]]) -> Result<Vec<Vec<f32>>, SasRecError> {
        let mut out = Vec::with_capacity(histories.len());
        let l = self.config.max_len;
        let table = self.output_table()?;
        for chunk in histories.chunks(256) {
            let b = batch(chunk, l, self.n_items)?;
            let h = self.hidden(&b, None)?.narrow(1, l - 1, 1)?.squeeze(1)?;
            let logits = h.matmul(&table.t()?)?;
            out.extend(logits.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// The `k` best items after each history, best first, leaving out the
    /// items of `excluded[i]` for history `i` (item indices `< n`): `[histories, ≤ k]`.
    /// Logits are computed 32 histories at a time, so memory stays at
    /// `32 · n` floats whatever the catalog.
    ///
    /// # Errors
    /// On a tensor failure; [`SasRecError::Config`] when `excluded` is not one slice per history.
    pub fn top_k(&self, histories: &[&[u32]], k: usize, excluded: &[&[u32]]) -> Result<Vec<Vec<u32>>, SasRecError> {
        if excluded.len() != histories.len() {
            return Err(SasRecError::Config(format!("{} exclusion lists for {} histories", excluded.len(), histories.len())));
        }
        let l = self.config.max_len;
        let table = self.output_table()?.t()?;
        let mut out = Vec::with_capacity(histories.len());
        for (chunk, skip) in histories.chunks(32).zip(excluded.chunks(32)) {
            let b = batch(chunk, l, self.n_items)?;
            let h = self.hidden(&b, None)?.narrow(1, l - 1, 1)?.squeeze(1)?;
            let logits = h.matmul(&table)?.flatten_all()?.to_vec1::<f32>()?;
            for (row, skip) in logits.chunks(self.n_items).zip(skip) {
                out.push(best_k(row, k, skip));
            }
        }
        Ok(out)
    }

    /// The parameters as plain arrays (see [`SasRecWeights`]).
    ///
    /// # Errors
    /// On a tensor failure.
    pub fn weights(&self) -> Result<SasRecWeights, SasRecError> {
        let mut blocks = Vec::new();
        for b in &self.blocks {
            let mut v = Vec::new();
            for (w, bias) in b.params() {
                v.push(to_vec(w)?);
                v.push(to_vec(bias)?);
            }
            blocks.push(v);
        }
        Ok(SasRecWeights {
            config: self.config.clone(),
            n_items: self.n_items,
            item_emb: self.output_table()?.flatten_all()?.to_vec1::<f32>()?,
            pos_emb: to_vec(&self.pos_emb)?,
            blocks,
            ln_final: (to_vec(&self.ln_final.0)?, to_vec(&self.ln_final.1)?),
        })
    }

    /// Mean cross-entropy of the next item at every non-padding position of a
    /// batch. With `sparse`, the embeddings come from its host table: only the
    /// rows the batch touches become a variable, returned for the update.
    fn loss(
        &self,
        windows: &[&[u32]],
        rng: &mut StdRng,
        sparse: Option<&SparseAdam>,
        sampler: Option<&NegativeSampler>,
    ) -> candle_core::Result<(Tensor, Option<TouchedRows>)> {
        let cfg = &self.config;
        let l = cfg.max_len;
        // Inputs are each window without its last item; targets are shifted by one.
        let inputs: Vec<&[u32]> = windows.iter().map(|w| &w[..w.len() - 1]).collect();
        let b = batch(&inputs, l, self.n_items)?;
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (r, w) in windows.iter().enumerate() {
            let t = &w[1..];
            let t = &t[t.len().saturating_sub(l)..];
            for (j, &item) in t.iter().enumerate() {
                positions.push((r * l + l - t.len() + j) as u32);
                targets.push(item);
            }
        }
        let dev = Device::Cpu;
        let n_pos = positions.len();
        let d = cfg.dim;
        let negatives = cfg.negatives.filter(|&k| self.n_items > 2 * k);
        // Negatives are drawn before the forward pass: a sparse step must know every row it touches.
        let mut negs: Vec<u32> = match (negatives, sampler) {
            (None, _) => Vec::new(),
            (Some(k), None) => (0..k).map(|_| rng.random_range(0..self.n_items as u32)).collect(),
            (Some(k), Some(q)) => (0..k).map(|_| q.draw(rng)).collect(),
        };
        // log-Q correction terms (see `popularity_negatives`), before the indices become local.
        let correction = match (negatives, sampler) {
            (Some(k), Some(q)) => Some((q.log_expected(&targets, k), q.log_expected(&negs, k))),
            _ => None,
        };
        let (table, items, touched) = match sparse {
            None => (self.item_emb.as_tensor().clone(), b.items.clone(), None),
            Some(host) => {
                let mut rows: Vec<u32> = b.ids.iter().chain(&targets).chain(&negs).copied().collect();
                rows.sort_unstable();
                rows.dedup();
                let local = |i: &mut u32| *i = rows.binary_search(i).expect("every touched row is gathered") as u32;
                let mut ids = b.ids.clone();
                ids.iter_mut().for_each(local);
                targets.iter_mut().for_each(local);
                negs.iter_mut().for_each(local);
                let var = Var::from_tensor(&Tensor::from_vec(host.gather(&rows), (rows.len(), d), &dev)?)?;
                let items = Tensor::from_vec(ids, b.items.dims2()?, &dev)?;
                (var.as_tensor().clone(), items, Some(TouchedRows { var, rows }))
            }
        };
        let h = self.hidden_from(&table, &items, &b, Some(rng))?.reshape((windows.len() * l, d))?.index_select(&Tensor::new(positions, &dev)?, 0)?;
        let loss = match negatives {
            None => {
                let logits = h.matmul(&table.narrow(0, 0, self.n_items)?.t()?)?;
                candle_nn::loss::cross_entropy(&logits, &Tensor::new(targets, &dev)?)?
            }
            Some(_) => {
                // Shared negatives (uniform, or by popularity with log-Q correction):
                // [positive, k negatives] per position, the
                // positive at column 0. A negative that equals the positive is rare
                // (k / n) and left in, as SASRec+ does.
                let pos_emb = table.index_select(&Tensor::new(targets, &dev)?, 0)?;
                let mut pos = (&h * &pos_emb)?.sum_keepdim(1)?;
                let mut neg = h.matmul(&table.index_select(&Tensor::new(negs, &dev)?, 0)?.t()?)?;
                if let Some((pos_q, neg_q)) = correction {
                    let k = neg_q.len();
                    pos = (pos - Tensor::from_vec(pos_q, (n_pos, 1), &dev)?)?;
                    neg = neg.broadcast_sub(&Tensor::from_vec(neg_q, (1, k), &dev)?)?;
                }
                let logits = Tensor::cat(&[pos, neg], 1)?;
                candle_nn::loss::cross_entropy(&logits, &Tensor::zeros(n_pos, DType::U32, &dev)?)?
            }
        };
        Ok((loss, touched))
    }
}

/// The `k` largest entries of `row` by value (ties: lower index first), best
/// first, skipping the indices in `skip`. One pass with a `k`-long sorted
/// buffer: `O(n)` for a catalog row when `k ≪ n`.
pub fn best_k(row: &[f32], k: usize, skip: &[u32]) -> Vec<u32> {
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &s) in row.iter().enumerate() {
        if best.len() == k && best.last().is_none_or(|&(worst, _)| s <= worst) || k == 0 || skip.contains(&(i as u32)) {
            continue;
        }
        let at = best.partition_point(|&(b, _)| b >= s);
        best.insert(at, (s, i as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// Draws items in proportion to `(count + 1)^0.75` (word2vec's smoothing;
/// Mikolov et al., NeurIPS 2013) of their training occurrences.
struct NegativeSampler {
    cumulative: crate::weighted::Cumulative,
    /// `ln q_j` per item.
    log_q: Vec<f32>,
}

impl NegativeSampler {
    fn new(sequences: &[Vec<u32>], n: usize) -> Self {
        let mut counts = vec![0u64; n];
        for &i in sequences.iter().flatten() {
            counts[i as usize] += 1;
        }
        let weights: Vec<f64> = counts.iter().map(|&c| ((c + 1) as f64).powf(0.75)).collect();
        let cumulative = crate::weighted::Cumulative::new(weights.iter().copied());
        let total = cumulative.total();
        NegativeSampler { cumulative, log_q: weights.iter().map(|w| (w / total).ln() as f32).collect() }
    }

    fn draw(&self, rng: &mut StdRng) -> u32 {
        self.cumulative.draw(rng) as u32
    }

    /// `ln(k · q_j)` of each item: the log of its expected count among `k` draws.
    fn log_expected(&self, items: &[u32], k: usize) -> Vec<f32> {
        let ln_k = (k as f32).ln();
        items.iter().map(|&i| self.log_q[i as usize] + ln_k).collect()
    }
}

/// The rows of the item table one sparse step gathered, as a variable.
struct TouchedRows {
    var: Var,
    /// Table rows, ascending; row `r` of `var` is table row `rows[r]`.
    rows: Vec<u32>,
}

/// Adam (Kingma & Ba, ICLR 2015) over the item table, applied to the rows a
/// step touched only ("lazy" Adam): the moments of untouched rows stay as
/// they are, bias correction uses the global step count.
struct SparseAdam {
    table: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    dim: usize,
    step: i32,
    lr: f32,
}

const ADAM_BETAS: (f32, f32) = (0.9, 0.98);
/// Learning rate of the lazily updated item table relative to the model's.
/// A tail item of a 10⁶ catalog is in a batch a few dozen times per run, and
/// an Adam step moves a weight by about the learning rate: at 3e-3 its
/// embedding would barely leave its random start (std 1/√d ≈ 0.18). Sparse
/// embeddings are commonly trained with a larger rate than dense layers.
pub const SPARSE_LR_SCALE: f64 = 10.0;
const ADAM_EPS: f32 = 1e-8;

impl SparseAdam {
    fn new(table: Vec<f32>, dim: usize, lr: f64) -> Self {
        let len = table.len();
        SparseAdam { table, m: vec![0.0; len], v: vec![0.0; len], dim, step: 0, lr: lr as f32 }
    }

    fn gather(&self, rows: &[u32]) -> Vec<f32> {
        let d = self.dim;
        rows.iter().flat_map(|&r| &self.table[r as usize * d..(r as usize + 1) * d]).copied().collect()
    }

    fn update(&mut self, touched: &TouchedRows, grad: &Tensor) -> candle_core::Result<()> {
        let grad = grad.flatten_all()?.to_vec1::<f32>()?;
        let (b1, b2) = ADAM_BETAS;
        self.step += 1;
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        let d = self.dim;
        for (local, &row) in touched.rows.iter().enumerate() {
            let g = &grad[local * d..(local + 1) * d];
            let at = row as usize * d;
            let rows = self.table[at..at + d].iter_mut().zip(&mut self.m[at..at + d]).zip(&mut self.v[at..at + d]);
            for (((w, m), v), &g) in rows.zip(g) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *w -= self.lr * (*m / c1) / ((*v / c2).sqrt() + ADAM_EPS);
            }
        }
        Ok(())
    }
}

/// Training windows: each sequence cut into pieces of at most `max_len + 1`
/// items from its end (so the newest items are always in a full window);
/// pieces shorter than two items carry no next-item pair and are dropped.
pub fn windows(sequences: &[Vec<u32>], max_len: usize) -> Vec<&[u32]> {
    let mut out = Vec::new();
    for s in sequences {
        let mut end = s.len();
        while end >= 2 {
            let start = end.saturating_sub(max_len + 1);
            out.push(&s[start..end]);
            if start == 0 {
                break;
            }
            end = start + 1; // the next window's last item is this one's first input
        }
    }
    out
}

/// What one epoch reports to the caller's progress display and early stopping.
#[derive(Debug, Clone, Copy)]
pub struct EpochReport {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches.
    pub loss: f64,
}

/// Trains a model on `sequences` (item indices `< n_items`, oldest first).
///
/// After every epoch `after_epoch` is called with the model and the epoch's
/// loss; it returns a validation score (higher is better) or `None` when
/// there is nothing to validate on. With scores, training stops after
/// `patience` epochs without improvement and the best epoch's parameters are
/// kept; without, it runs exactly `max_epochs`.
///
/// # Errors
/// [`SasRecError::NoSequences`] when nothing can be learned; tensor failures.
pub fn train(
    sequences: &[Vec<u32>],
    n_items: usize,
    config: &SasRecConfig,
    after_epoch: impl FnMut(&SasRec, EpochReport) -> Result<Option<f64>, SasRecError>,
) -> Result<(SasRec, usize), SasRecError> {
    train_from(sequences, n_items, config, None, after_epoch)
}

/// The parameters of a trained model carried into a refresh (warm start):
/// a new model over a changed catalog starts from them — the item rows by id
/// (new items keep their random initialization), every other parameter as is
/// — and trains a few epochs instead of from scratch.
#[derive(Clone)]
pub struct WarmStart {
    /// The trained model's settings (a refresh keeps them: the shapes must match).
    pub config: SasRecConfig,
    /// Its parameters in [`SasRec`]'s variable order; the first is the item table `[n_old + 1, d]`.
    pub tensors: Vec<Tensor>,
    /// The item id of each of its rows `0..n_old` (the model directory's catalog order).
    pub ids: Vec<String>,
}

impl std::fmt::Debug for WarmStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WarmStart {{ {}, {} items, {} tensors }}", self.config.label(), self.ids.len(), self.tensors.len())
    }
}

/// File of a model directory holding the sequence model's parameters for warm starts.
pub const WARM_START_FILE: &str = "sequence.safetensors";

impl SasRec {
    /// Its parameters as safetensors bytes (names `p000`, `p001`, … in variable order).
    ///
    /// # Errors
    /// On a tensor failure.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, SasRecError> {
        let tensors: std::collections::HashMap<String, Tensor> =
            self.vars().iter().enumerate().map(|(i, v)| (format!("p{i:03}"), v.as_tensor().clone())).collect();
        let path = std::env::temp_dir().join(format!("edgerec-sasrec-{}-{:?}.safetensors", std::process::id(), std::thread::current().id()));
        candle_core::safetensors::save(&tensors, &path)?;
        let bytes = std::fs::read(&path).map_err(|e| SasRecError::Config(format!("{}: {e}", path.display())))?;
        let _ = std::fs::remove_file(&path);
        Ok(bytes)
    }
}

impl WarmStart {
    /// A trained model's parameters as a warm start, `ids` naming its item rows.
    ///
    /// # Errors
    /// On a tensor failure.
    pub fn of(model: &SasRec, ids: Vec<String>) -> Result<Self, SasRecError> {
        let tensors = model.vars().iter().map(|v| v.as_tensor().copy()).collect::<Result<_, _>>()?;
        Ok(WarmStart { config: model.config.clone(), tensors, ids })
    }

    /// Reads the parameters a model directory saved ([`WARM_START_FILE`]), with its settings and item ids.
    ///
    /// # Errors
    /// When the file is missing or malformed, or its shapes do not match `config`.
    pub fn load(path: &std::path::Path, config: SasRecConfig, ids: Vec<String>) -> Result<Self, SasRecError> {
        let map = candle_core::safetensors::load(path, &Device::Cpu)?;
        let tensors: Vec<Tensor> = (0..map.len())
            .map(|i| map.get(&format!("p{i:03}")).cloned().ok_or_else(|| SasRecError::Config(format!("{}: no p{i:03}", path.display()))))
            .collect::<Result<_, _>>()?;
        let rows = tensors.first().map(|t| t.dims()[0]).unwrap_or(0);
        if rows != ids.len() + 1 || tensors[0].dims()[1] != config.dim {
            return Err(SasRecError::Config(format!("{}: an item table of {rows} rows for {} items of width {}", path.display(), ids.len(), config.dim)));
        }
        Ok(WarmStart { config, tensors, ids })
    }

    /// Sets `model`'s parameters from these, its item rows (for `new_ids`, the
    /// new model's item order) matched by id.
    fn init(&self, model: &SasRec, new_ids: &[String]) -> Result<(), SasRecError> {
        let vars = model.vars();
        if vars.len() != self.tensors.len() || new_ids.len() != model.n_items {
            return Err(SasRecError::Config(format!(
                "warm start: {} parameters for {}, {} ids for {} items",
                self.tensors.len(),
                vars.len(),
                new_ids.len(),
                model.n_items
            )));
        }
        let old: std::collections::HashMap<&str, usize> = self.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
        let old_table = self.tensors[0].to_vec2::<f32>()?;
        let mut table = vars[0].as_tensor().to_vec2::<f32>()?;
        for (row, id) in table.iter_mut().zip(new_ids) {
            if let Some(&i) = old.get(id.as_str()) {
                row.copy_from_slice(&old_table[i]);
            }
        }
        vars[0].set(&Tensor::new(table, &Device::Cpu)?)?;
        for (var, value) in vars.iter().zip(&self.tensors).skip(1) {
            if var.as_tensor().dims() != value.dims() {
                return Err(SasRecError::Config(format!("warm start: a parameter of shape {:?} for {:?}", value.dims(), var.as_tensor().dims())));
            }
            var.set(value)?;
        }
        Ok(())
    }
}

/// [`train`], starting from `warm`'s parameters (with the new model's item
/// ids, in index order) instead of a random initialization.
///
/// # Errors
/// As [`train`]; a warm start whose shapes do not match `config`.
pub fn train_from(
    sequences: &[Vec<u32>],
    n_items: usize,
    config: &SasRecConfig,
    warm: Option<(&WarmStart, &[String])>,
    mut after_epoch: impl FnMut(&SasRec, EpochReport) -> Result<Option<f64>, SasRecError>,
) -> Result<(SasRec, usize), SasRecError> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let model = SasRec::new(config.clone(), n_items, &mut rng)?;
    if let Some((warm, ids)) = warm {
        warm.init(&model, ids)?;
    }
    let mut all = windows(sequences, config.max_len);
    if all.is_empty() {
        return Err(SasRecError::NoSequences);
    }
    let params = ParamsAdamW { lr: config.learning_rate, beta1: ADAM_BETAS.0 as f64, beta2: ADAM_BETAS.1 as f64, eps: ADAM_EPS as f64, weight_decay: 0.0 };
    let sparse = config.sparse_embeddings && config.negatives.is_some_and(|k| n_items > 2 * k);
    let mut sparse_adam = sparse
        .then(|| model.item_emb.as_tensor().flatten_all()?.to_vec1::<f32>().map(|t| SparseAdam::new(t, config.dim, config.learning_rate * SPARSE_LR_SCALE)))
        .transpose()?;
    let dense_vars = model.vars().into_iter().skip(usize::from(sparse)).collect(); // item_emb is first
    let mut opt = AdamW::new(dense_vars, params)?;
    let sampler = config.popularity_negatives.then(|| NegativeSampler::new(sequences, n_items));
    let (mut best, mut best_epoch, mut best_weights) = (f64::MIN, 0, None);
    for epoch in 1..=config.max_epochs {
        all.shuffle(&mut rng);
        let mut total = 0.0;
        let mut batches = 0;
        for chunk in all.chunks(config.batch_size) {
            let (loss, touched) = model.loss(chunk, &mut rng, sparse_adam.as_ref(), sampler.as_ref())?;
            total += loss.to_scalar::<f32>()? as f64;
            batches += 1;
            let grads = loss.backward()?;
            opt.step(&grads)?;
            if let (Some(adam), Some(touched)) = (sparse_adam.as_mut(), touched) {
                let grad = grads.get(touched.var.as_tensor()).ok_or_else(|| candle_core::Error::Msg("no gradient for the gathered embeddings".into()))?;
                adam.update(&touched, grad)?;
            }
        }
        if let Some(adam) = &sparse_adam {
            model.item_emb.set(&Tensor::from_slice(&adam.table, (n_items + 1, config.dim), &Device::Cpu)?)?;
        }
        let report = EpochReport { epoch, loss: total / batches as f64 };
        match after_epoch(&model, report)? {
            Some(score) if score > best => {
                (best, best_epoch) = (score, epoch);
                best_weights = Some(model.vars().iter().map(|v| v.as_tensor().copy()).collect::<candle_core::Result<Vec<_>>>()?);
            }
            Some(_) if epoch - best_epoch >= config.patience => break,
            Some(_) => {}
            None => best_epoch = epoch,
        }
    }
    if let Some(saved) = best_weights {
        for (var, value) in model.vars().iter().zip(saved) {
            var.set(&value)?;
        }
    }
    Ok((model, best_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(seed: u64) -> SasRecConfig {
        SasRecConfig {
            dim: 16,
            layers: 1,
            heads: 2,
            max_len: 6,
            dropout: 0.0,
            learning_rate: 1e-2,
            batch_size: 8,
            max_epochs: 30,
            patience: 100,
            negatives: None,
            seed,
            sparse_embeddings: false,
            popularity_negatives: false,
        }
    }

    #[test]
    fn windows_cover_every_next_item_pair_once() {
        let seqs = vec![(0..10).collect::<Vec<u32>>(), vec![3], vec![4, 5]];
        let w = windows(&seqs, 4);
        assert_eq!(w, vec![&[5, 6, 7, 8, 9][..], &[1, 2, 3, 4, 5][..], &[0, 1][..], &[4, 5][..]]);
        let pairs: usize = w.iter().map(|w| w.len() - 1).sum();
        assert_eq!(pairs, 9 + 1, "every consecutive pair exactly once");
    }

    #[test]
    fn sparse_embeddings_with_popularity_negatives_learn_successors_too() {
        // 40 items in a cycle; 8 shared negatives per batch, so only the rows a
        // batch touches are updated, and the log-Q correction is applied.
        let n = 40;
        let seqs: Vec<Vec<u32>> = (0..200).map(|s| (0..10).map(|j| ((s + j) % n) as u32).collect()).collect();
        let cfg = SasRecConfig { negatives: Some(8), sparse_embeddings: true, popularity_negatives: true, max_epochs: 20, ..tiny(3) };
        let (model, _) = train(&seqs, n, &cfg, |_, _| Ok(None)).unwrap();
        let histories: Vec<Vec<u32>> = (0..n as u32).map(|i| vec![(i + n as u32 - 2) % n as u32, (i + n as u32 - 1) % n as u32, i]).collect();
        let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
        let none: Vec<&[u32]> = vec![&[]; refs.len()];
        let top = model.top_k(&refs, 1, &none).unwrap();
        let right = top.iter().enumerate().filter(|(i, t)| t[0] == (*i as u32 + 1) % n as u32).count();
        assert!(right >= 36, "{right} of {n} successors ranked first");
        // top_k agrees with the full logits and leaves out what it is told to.
        let full = model.scores(&refs[..1]).unwrap().remove(0);
        let best = full.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        assert_eq!(top[0][0], best);
        assert!(!model.top_k(&refs[..1], 5, &[&[best]]).unwrap()[0].contains(&best));
    }

    #[test]
    fn best_k_keeps_the_largest_in_order_and_skips() {
        let row = [0.5f32, 3.0, -1.0, 3.0, 2.0, 9.0];
        assert_eq!(best_k(&row, 3, &[]), vec![5, 1, 3]); // ties: lower index first
        assert_eq!(best_k(&row, 3, &[5, 1]), vec![3, 4, 0]);
        assert_eq!(best_k(&row, 10, &[]).len(), 6);
        assert!(best_k(&row, 0, &[]).is_empty());
    }

    #[test]
    fn learns_a_deterministic_successor_and_is_reproducible() {
        // Item i is always followed by i + 1 (mod 5): after training, the top
        // logit after any history is its last item's successor.
        let seqs: Vec<Vec<u32>> = (0..40).map(|s| (0..8).map(|j| ((s + j) % 5) as u32).collect()).collect();
        let (model, epochs) = train(&seqs, 5, &tiny(7), |_, _| Ok(None)).unwrap();
        assert_eq!(epochs, 30);
        let histories: Vec<Vec<u32>> = (0..5).map(|i| vec![(i + 3) % 5, (i + 4) % 5, i]).collect();
        let refs: Vec<&[u32]> = histories.iter().map(Vec::as_slice).collect();
        let scores = model.scores(&refs).unwrap();
        for (i, row) in scores.iter().enumerate() {
            let best = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(best, (i + 1) % 5, "after item {i}: {row:?}");
        }
        let (again, _) = train(&seqs, 5, &tiny(7), |_, _| Ok(None)).unwrap();
        assert_eq!(again.scores(&refs).unwrap(), scores, "same seed, same model");
    }

    #[test]
    fn padding_does_not_change_the_answer() {
        let mut rng = StdRng::seed_from_u64(1);
        let model = SasRec::new(tiny(1), 5, &mut rng).unwrap();
        let short = model.scores(&[&[1, 2]]).unwrap();
        let longer_than_window = model.scores(&[&[0, 3, 4, 0, 3, 4, 1, 2]]).unwrap();
        let same_tail = model.scores(&[&[9 % 5, 3, 4, 0, 3, 4, 1, 2]]).unwrap();
        assert_eq!(longer_than_window, same_tail, "only the last max_len items are read");
        assert_ne!(short, longer_than_window);
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut rng = StdRng::seed_from_u64(1);
        let cfg = SasRecConfig { heads: 3, ..tiny(1) };
        assert!(matches!(SasRec::new(cfg, 5, &mut rng), Err(SasRecError::Config(_))));
        assert!(matches!(train(&[vec![1]], 5, &tiny(1), |_, _| Ok(None)), Err(SasRecError::NoSequences)));
    }
}
