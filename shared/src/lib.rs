//! # edgerec `shared`
//!
//! The one crate every edgerec component links: the trainer writes what it
//! defines, the origin and the edge worker read it.
//!
//! * [`contract`] — the ONNX model contract (input/output names, shapes, padding).
//! * [`manifest`] — the model directory's `manifest.json` and its sha256 checks.
//! * [`catalog`] — external item id ↔ model index, titles, popularity.
//! * [`failover`] — the edge's circuit breaker and cache freshness (RFC 5861), clock injected.
//! * [`failover_path`] — the edge's whole failover path (cache → origins under a
//!   deadline, with failover, hedging and per-origin ejection ∥ edge model →
//!   stale cache → popular), generic over its environment; its balancer,
//!   failure classes and `Server-Timing` in submodules.
//! * [`origin_answer`] — what the edge accepts from the origin (count, ids, order, dataset).
//! * [`edge_config`] — the edge's settings from `wrangler.toml` `[vars]`.
//! * [`request`] — request parsing and validation shared by origin and edge
//!   (HTTP status and field of every error), the canonical cache key.
//! * [`inference`] — loads a contract-conforming ONNX file with `tract-onnx`
//!   and runs it (natively and on `wasm32-unknown-unknown`).
//! * [`model_set`] — a verified model directory: manifest, catalog, models.
//! * [`recommender`] — catalog + model + popular list: external ids in,
//!   ranked items out, unknown ids reported rather than fatal.
//! * [`events`] — `POST /v1/events` batches and `PUT /v1/items` records, checked alike at edge and origin.
//! * [`live_catalog`] — query-time catalog rules (unavailable items, filters, cold start) at origin and edge.
//! * [`wire`] — the JSON request/response types shared by origin and edge.
//!
//! Compiles natively and for `wasm32-unknown-unknown` (no threads, no file
//! system: everything is loaded from byte slices).

pub mod catalog;
pub mod contract;
pub mod edge_config;
pub mod events;
pub mod failover;
pub mod failover_path;
pub mod inference;
pub mod live_catalog;
pub mod manifest;
pub mod model_set;
pub mod origin_answer;
pub mod recommender;
pub mod request;
pub mod wire;

pub use catalog::{Catalog, CatalogItem, ResolvedHistory};
pub use contract::ModelKind;
pub use inference::{InferenceError, OnnxRecommender, Ranked};
pub use manifest::{FileEntry, Manifest, ManifestError};
pub use model_set::{ModelFiles, ModelSet, ModelSetError};
pub use recommender::{Prepared, RankingPolicy, Recommendation, Recommender, RecommenderError};
