//! `POST /v1/events` (the edge credential), `PUT`/`DELETE /v1/items`
//! (the admin token) and `GET /v1/catalog/changes` (the edge's catalog sync).
//!
//! A batch is acknowledged only after the store made it durable; a retried
//! batch (same `event_id`s) is stored once. Parsing and field rules are
//! `shared::events`, the same code the edge runs before it queues a batch.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use event_store::StoreError;
use serde::Deserialize;
use shared::events::{self, CatalogChanges, EventsAccepted, ItemBatch, ItemIn, ItemRecord, MAX_ITEMS_PER_PUT};

use crate::api::require_json;
use crate::error::HttpError;
use crate::state::AppState;

/// Largest `PUT /v1/items` body, bytes (1,000 items of ~2 KiB).
pub const MAX_ITEMS_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Most records one `GET /v1/catalog/changes` returns.
pub const MAX_CHANGES_PAGE: usize = 5_000;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn store_failed(e: StoreError) -> HttpError {
    tracing::error!(error = %e, "event store call failed");
    metrics::counter!("event_store_errors_total").increment(1);
    HttpError::overloaded(format!("the event store failed, nothing was stored: {e}"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, HttpError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("store task: {e}")))?.map_err(store_failed)
}

/// `POST /v1/events` with `{"events": [...]}`: 200 with [`EventsAccepted`]
/// once durable; 413 over the size limits, 422 naming the field.
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<EventsAccepted>, HttpError> {
    require_json(&headers)?;
    let body = body.map_err(|e| HttpError::field(e.status(), "body", e.body_text()))?;
    let mut batch = events::parse_batch(&body, now_ms())?;
    let received = batch.len();
    let live = state.live.clone();
    batch.retain(|e| live.admit(&e.shopper()));
    let rate_limited = received - batch.len();
    let unknown_items = {
        let model = state.store.current();
        let catalog = live.catalog();
        batch.iter().filter(|e| model.as_ref().is_none_or(|m| m.policy.catalog().index_of(&e.item_id).is_none()) && catalog.get(&e.item_id).is_none()).count()
    };
    let acted_at: Vec<i64> = batch.iter().map(|e| e.time_ms).collect();
    let started = std::time::Instant::now();
    let appended = if batch.is_empty() { Default::default() } else { blocking(move || live.store.append(&batch)).await? };
    metrics::histogram!("event_append_seconds").record(started.elapsed().as_secs_f64());
    metrics::counter!("events_received_total").increment(received as u64);
    metrics::counter!("events_stored_total").increment(appended.stored as u64);
    metrics::counter!("events_duplicate_total").increment(appended.duplicates as u64);
    metrics::counter!("events_unknown_item_total").increment(unknown_items as u64);
    metrics::counter!("events_rate_limited_total").increment(rate_limited as u64);
    // From the shopper's action (the event's time) to durable here: the edge queue's backlog shows up as lag.
    let (lag, stored_at) = (metrics::histogram!("event_ingest_lag_seconds"), now_ms());
    acted_at.into_iter().for_each(|t| lag.record((stored_at - t).max(0) as f64 / 1000.0));
    Ok(Json(EventsAccepted { received, stored: appended.stored, duplicates: appended.duplicates, unknown_items, rate_limited }))
}

/// Answer of an item write.
#[derive(Debug, serde::Serialize)]
pub struct ItemsWritten {
    /// Items written.
    pub items: usize,
    /// The catalog version after the write (answers carry it once applied).
    pub catalog_version: u64,
}

async fn write_items(state: &AppState, records: Vec<ItemRecord>) -> Result<Json<ItemsWritten>, HttpError> {
    let live = state.live.clone();
    let n = records.len();
    let version = blocking(move || {
        let v = live.store.put_items(&records)?;
        // Our own write is honoured at once; the poller brings other origins' writes.
        live.catch_up()?;
        Ok(v)
    })
    .await?;
    Ok(Json(ItemsWritten { items: n, catalog_version: version }))
}

/// `PUT /v1/items/{id}` with an [`ItemIn`]: creates or replaces the item.
pub async fn put_item(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ItemsWritten>, HttpError> {
    require_json(&headers)?;
    let body = body.map_err(|e| HttpError::field(e.status(), "body", e.body_text()))?;
    let item: ItemIn = events::parse_json_body(&body)?;
    if item.item_id.as_deref().is_some_and(|given| given != id) {
        return Err(HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, "item_id", format!("the body names {:?}, the path {id:?}", item.item_id)));
    }
    let record = events::check_item(&id, item, now_ms()).map_err(|(field, why)| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, field, why))?;
    write_items(&state, vec![record]).await
}

/// `PUT /v1/items` with `{"items": [{"item_id", ...}]}`: at most
/// [`MAX_ITEMS_PER_PUT`], all or none.
pub async fn put_items(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<ItemsWritten>, HttpError> {
    require_json(&headers)?;
    let body = body.map_err(|e| HttpError::field(e.status(), "body", e.body_text()))?;
    let batch: ItemBatch = events::parse_json_body(&body)?;
    if batch.items.len() > MAX_ITEMS_PER_PUT {
        return Err(HttpError::field(StatusCode::PAYLOAD_TOO_LARGE, "items", format!("{} items, at most {MAX_ITEMS_PER_PUT} per request", batch.items.len())));
    }
    let now = now_ms();
    let mut records = Vec::with_capacity(batch.items.len());
    for (i, item) in batch.items.into_iter().enumerate() {
        let Some(id) = item.item_id.clone() else {
            return Err(HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, format!("items[{i}].item_id"), "each item of the bulk form needs its item_id"));
        };
        let record = events::check_item(&id, item, now)
            .map_err(|(field, why)| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, format!("items[{i}].{field}"), why))?;
        records.push(record);
    }
    write_items(&state, records).await
}

/// `DELETE /v1/items/{id}`: retires the item (never recommended until a later `PUT`); 404 when the store never had it.
pub async fn delete_item(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Json<ItemsWritten>, HttpError> {
    let live = state.live.clone();
    let retired = blocking(move || {
        let v = live.store.retire_item(&id)?;
        live.catch_up()?;
        Ok(v)
    })
    .await?;
    match retired {
        Some(v) => Ok(Json(ItemsWritten { items: 1, catalog_version: v })),
        None => Err(HttpError::field(StatusCode::NOT_FOUND, "item_id", "no such item in the catalog store (PUT it first)")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    since: Option<u64>,
    limit: Option<usize>,
}

/// `GET /v1/catalog/changes?since=V&limit=N`: records changed after version
/// `V` (default 0), oldest first, at most `N` (default and cap [`MAX_CHANGES_PAGE`]).
pub async fn catalog_changes(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Result<Json<CatalogChanges>, HttpError> {
    let q: ChangesQuery = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|e| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, "query", format!("expected since=<version>&limit=<n>: {e}")))?;
    let limit = q.limit.unwrap_or(MAX_CHANGES_PAGE).clamp(1, MAX_CHANGES_PAGE);
    let since = q.since.unwrap_or(0);
    let live = state.live.clone();
    Ok(Json(blocking(move || live.store.catalog_changes(since, limit)).await?))
}
