//! `GET`/`POST /v1/recommendations`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::failover::CachePolicy;
use shared::request;
use shared::wire::{ModelInfo, RecommendationRequest, Source, ValidRequest};

use crate::batcher::BatchError;
use crate::edge_auth::EdgeVouched;
use crate::error::HttpError;
use crate::state::AppState;

/// `GET /v1/recommendations?history=1,2,3&k=10&exclude_seen=true`.
pub async fn get_recommendations(
    State(state): State<Arc<AppState>>,
    vouched: Option<Extension<EdgeVouched>>,
    RawQuery(query): RawQuery,
) -> Result<Response, HttpError> {
    let req = request::parse_query(query.as_deref().unwrap_or(""))?;
    let mut response = recommend(&state, req).await?;
    // Answers depend only on the query: shared caches (the edge, a CDN) may keep them briefly
    // and fall back to them when we fail (RFC 5861), by the edge's own default windows.
    // An answer given for the edge credential is the edge's alone: a shared cache in
    // front of us must not hand it to callers without the credential (RFC 9111 §5.2.2.7;
    // the edge keeps its own cache by its own policy).
    let cache_control = if vouched.is_some() {
        HeaderValue::from_static("private, no-store")
    } else {
        HeaderValue::from_str(&CachePolicy::DEFAULT.cache_control()).expect("ASCII header value")
    };
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, cache_control);
    }
    Ok(response)
}

/// `POST /v1/recommendations` with a JSON [`RecommendationRequest`] (at most 64 KiB).
pub async fn post_recommendations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    require_json(&headers)?;
    // Over the body limit → 413, reported as JSON like every other error.
    let body = body.map_err(|e| HttpError::field(e.status(), "body", e.body_text()))?;
    let req = request::parse_json(&body)?;
    let mut response = recommend(&state, req).await?;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// 415 unless the request says its body is JSON (every `POST`/`PUT` of the API).
///
/// # Errors
/// 415 with the rule.
pub fn require_json(headers: &HeaderMap) -> Result<(), HttpError> {
    if request::is_json_content_type(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
        Ok(())
    } else {
        Err(HttpError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"))
    }
}

/// Most history items read from the store for a logged-in shopper.
pub const STORED_HISTORY: usize = 50;

/// Extra model items asked for beyond `k`, at most, to stand in for hidden ones
/// (the popular list fills any gap past them).
const HIDDEN_HEADROOM: usize = 100;

async fn recommend(state: &AppState, req: RecommendationRequest) -> Result<Response, HttpError> {
    let mut req = request::validate(req)?;
    let model = state.store.current().ok_or_else(|| HttpError::overloaded("no model loaded yet"))?;
    // A logged-in shopper without a history: the store's, so every device sees the same answer.
    if req.history.is_empty()
        && let Some(user) = req.user_id.clone()
    {
        let live = state.live.clone();
        match tokio::task::spawn_blocking(move || live.store.history(&user, STORED_HISTORY)).await {
            Ok(Ok(history)) => req.history = history,
            // The answer degrades to the popular list rather than failing.
            Ok(Err(e)) => tracing::warn!(error = %e, "reading a shopper's history failed"),
            Err(e) => tracing::error!(error = %e, "history task failed"),
        }
    }
    let ValidRequest { history, k, exclude_seen, .. } = &req;
    // Ask past `k` for what the live catalog will take out.
    let wide_k = k + state.live.catalog().hidden_count().min(HIDDEN_HEADROOM) + req.exclude.len();
    let prepared = model.policy.prepare(history);
    let ranked = if prepared.row.is_empty() {
        None
    } else {
        match model.batcher.run(prepared.row.clone()).await {
            Ok(r) => Some(r),
            Err(BatchError::QueueFull) => {
                metrics::counter!("requests_shed_total", "reason" => "queue_full").increment(1);
                return Err(HttpError::overloaded("inference queue is full"));
            }
            Err(e) => return Err(HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        }
    };
    let rec = model.policy.finish(prepared, ranked.as_ref(), wide_k, *exclude_seen);
    let info =
        ModelInfo { name: "full".into(), version: model.version().to_string(), backend: model.backend.to_string(), dataset: model.manifest.dataset.clone() };
    let mut body = model.policy.response(&rec, Source::Origin, info);
    let catalog = model.policy.catalog();
    state.live.catalog().apply(&mut body, &req, |id| catalog.index_of(id).is_some(), catalog.popular_order());
    let source = body.source.as_str();
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert("x-rec-source", HeaderValue::from_static(source));
    if req.user_id.is_some() {
        // Built from one shopper's stored history: no shared cache may keep it.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    }
    Ok(response)
}
