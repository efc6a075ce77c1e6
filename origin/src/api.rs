//! `GET`/`POST /v1/recommendations`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::wire::{ModelInfo, RecommendationRequest, RecommendationResponse, RecommendedItem, Source, ValidRequest};

use crate::batcher::BatchError;
use crate::error::HttpError;
use crate::state::AppState;

/// Query parameters of the cacheable `GET` form: `history` is a comma-separated id list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecommendationQuery {
    user_id: Option<String>,
    history: Option<String>,
    k: Option<String>,
    exclude_seen: Option<String>,
}

fn parse_query(q: RecommendationQuery) -> Result<RecommendationRequest, HttpError> {
    let k = match q.k.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<usize>().map_err(|_| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, "k", format!("k must be an integer between 1 and {}, got {raw:?}", shared::contract::MAX_K)))?),
    };
    let exclude_seen = match q.exclude_seen.as_deref() {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(raw) => return Err(HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, "exclude_seen", format!("exclude_seen must be true or false, got {raw:?}"))),
    };
    let history = match q.history.as_deref() {
        None | Some("") => Vec::new(),
        Some(raw) => raw.split(',').map(|s| s.trim().to_string()).collect(),
    };
    Ok(RecommendationRequest { user_id: q.user_id, history, k, exclude_seen })
}

/// `GET /v1/recommendations?history=1,2,3&k=10&exclude_seen=true`.
pub async fn get_recommendations(
    State(state): State<Arc<AppState>>,
    query: Result<Query<RecommendationQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(q) = query.map_err(|e| HttpError::new(StatusCode::BAD_REQUEST, format!("bad query string: {}", e.body_text())))?;
    let req = parse_query(q)?;
    let mut response = recommend(&state, req).await?;
    // Answers depend only on the query: shared caches (the edge, a CDN) may keep them briefly
    // and fall back to them when we fail (RFC 5861).
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60, stale-while-revalidate=60, stale-if-error=86400"));
    Ok(response)
}

/// `POST /v1/recommendations` with a JSON [`RecommendationRequest`].
pub async fn post_recommendations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, HttpError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return Err(HttpError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type must be application/json"));
    }
    // Over the body limit → 413, reported as JSON like every other error.
    let body = body.map_err(|e| HttpError::field(e.status(), "body", e.body_text()))?;
    let req = parse_json(&body)?;
    let mut response = recommend(&state, req).await?;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Parses a request body: syntax errors are 400, well-formed JSON of the
/// wrong shape is 422 naming the field path (e.g. `history[3]`).
pub fn parse_json(body: &[u8]) -> Result<RecommendationRequest, HttpError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, RecommendationRequest>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { message_field(&inner.to_string()).unwrap_or_else(|| "body".into()) } else { path };
                HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, field, inner.to_string())
            }
            _ => HttpError::new(StatusCode::BAD_REQUEST, format!("malformed JSON: {inner}")),
        }
    })
}

/// serde names missing/unknown fields only in its message: "missing field `history`".
fn message_field(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = start + msg[start..].find('`')?;
    Some(msg[start..end].to_string())
}

async fn recommend(state: &AppState, req: RecommendationRequest) -> Result<Response, HttpError> {
    let ValidRequest { history, k, exclude_seen } =
        req.validate().map_err(|e| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, e.field, e.to_string()))?;
    let model = state.store.current().ok_or_else(|| HttpError::overloaded("no model loaded yet"))?;
    let prepared = model.policy.prepare(&history);
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
    let rec = model.policy.finish(prepared, ranked.as_ref(), k, exclude_seen);
    let catalog = model.policy.catalog();
    let mut warnings = Vec::new();
    if !rec.unknown.is_empty() {
        warnings.push(format!("unknown item ids ignored: {}", rec.unknown.join(", ")));
    }
    let body = RecommendationResponse {
        items: rec
            .items
            .iter()
            .filter_map(|&(i, score)| catalog.get(i).map(|item| RecommendedItem { item_id: item.id.clone(), score, title: item.title.clone() }))
            .collect(),
        source: if rec.popular_fallback { Source::Popular } else { Source::Origin },
        model: ModelInfo { name: "full".into(), version: model.version().to_string(), backend: model.backend.to_string() },
        warnings,
    };
    let source = if rec.popular_fallback { "popular" } else { "origin" };
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert("x-rec-source", HeaderValue::from_static(source));
    Ok(response)
}
