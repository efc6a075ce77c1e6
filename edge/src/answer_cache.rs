//! Origin answers in the Workers Cache API. The Cache API has no
//! stale-while-revalidate or stale-if-error (RFC 5861), so each entry carries
//! its store time in `x-edgerec-stored-at` and is kept for the longest window
//! ([`shared::edge_config::EdgeConfig::cache_ttl_s`]); `shared::failover`
//! decides how fresh it is.

use shared::failover_path::CachedAnswer;
use shared::wire::RecommendationResponse;
use worker::{Cache, Headers, Response};

const STORED_AT: &str = "x-edgerec-stored-at";

/// The cache key URL for a key of `shared::failover_path::cache_key`
/// (generation, origin model version, canonical query), on the serving host
/// (the Cache API keys by URL; on Cloudflare it is scoped to the zone).
pub fn key_url(host_origin: &str, key: &str) -> String {
    format!("{host_origin}/__edgerec/cache/v2/recommendations?{key}")
}

/// The entry under `url`, if present and readable.
pub async fn get(url: &str) -> Option<CachedAnswer> {
    let mut response = Cache::default().get(url, false).await.ok()??;
    let stored_at_ms = response.headers().get(STORED_AT).ok()??.parse().ok()?;
    let body = response.bytes().await.ok()?;
    let body = serde_json::from_slice::<RecommendationResponse>(&body).ok()?;
    Some(CachedAnswer { body, stored_at_ms })
}

/// Stores `body` under `url`, stamped `now_ms`, kept `ttl_s` seconds.
///
/// # Errors
/// The Cache API's error.
pub async fn put(url: &str, body: &RecommendationResponse, now_ms: u64, ttl_s: u64) -> worker::Result<()> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    headers.set("cache-control", &format!("public, max-age={ttl_s}"))?;
    headers.set(STORED_AT, &now_ms.to_string())?;
    let json = serde_json::to_vec(body).map_err(|e| worker::Error::RustError(e.to_string()))?;
    let response = Response::from_bytes(json)?.with_headers(headers);
    Cache::default().put(url, response).await
}
