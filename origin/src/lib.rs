//! # edgerec origin
//!
//! The full model behind axum: ONNX Runtime (CUDA when a GPU and its libraries
//! are present, CPU otherwise) with tract as the always-available fallback;
//! dynamic micro-batching; health, readiness and Prometheus metrics; hot model
//! reload with sha256 verification and rollback; load shedding, deadlines,
//! rate limits, CORS, request ids, JSON logs and graceful shutdown.
//!
//! Request flow: connection limits (header-read timeout, connection cap) →
//! tower layers (request id, trace, CORS, metrics, edge credential, rate limit,
//! concurrency limit + load shed, deadline, 64 KiB body limit) → [`api`]
//! (validate, map ids) → [`batcher`] (micro-batch, blocking pool) →
//! [`backend`] (ORT or tract) → [`api`] (drop seen, the live catalog's rules
//! ([`live_data`]), fill to `k`, JSON). Events and item changes: [`events_api`]
//! → the event store (`event-store`: SQLite or PostgreSQL).

pub mod api;
pub mod backend;
pub mod batcher;
pub mod config;
pub mod edge_auth;
pub mod error;
pub mod events_api;
pub mod live_data;
pub mod model_store;
pub mod ops;
pub mod parity;
pub mod rate_limit;
pub mod registry_cli;
pub mod registry_follow;
pub mod rollout;
pub mod server;
pub mod state;
pub mod telemetry;

#[cfg(test)]
mod router_tests;
