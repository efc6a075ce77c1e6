//! edgerec's trainer: turns a shop's interaction log into the full (SASRec,
//! EASE or their blend) and edge (low-rank EASE) models, evaluates them with full-ranking metrics
//! against baselines and peers, and exports ONNX files plus a manifest.
//!
//! * [`data`] — loaders (MovieLens, Instacart, generic CSV)
//! * [`split`] — evaluation protocols
//! * [`metrics`] — Recall/NDCG/HitRate/Coverage, top-k
//! * [`model`] — EASE and its low-rank approximation (the math)
//! * [`evaluate`] — one validation/test phase, baselines
//! * [`pipeline`] — what every pipeline takes and gives (config, report, edge budget)
//! * [`train`] — the pipeline: tune, test once, refit, export
//! * [`retrain`] — from the event store into the model registry, through the promotion gate
//! * [`large_catalog`] — the pipeline for catalogs EASE cannot hold (SASRec, head-of-catalog edge)
//! * [`synthetic`] — shop-shaped synthetic logs for the scale benchmark
//! * [`weighted`] — drawing an index by weight (generator, negatives)
//! * [`onnx_export`] — the ONNX graphs
//! * [`artifacts`] — the model directory and the tract parity check
//! * [`peers`] — splits for, and scoring of, the `implicit` peers
//! * [`report`] — the quality table
//! * [`query`] — real queries through `shared`

pub mod artifacts;
pub mod cold_start;
pub mod data;
pub mod evaluate;
pub mod large_catalog;
pub mod metrics;
pub mod model;
pub mod onnx_export;
pub mod peers;
pub mod pipeline;
pub mod query;
pub mod report;
pub mod retrain;
pub mod sasrec;
pub mod sequence;
pub mod split;
pub mod synthetic;
pub mod train;
pub mod weighted;
