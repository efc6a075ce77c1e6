//! Per-client rate limit (token bucket, GCRA via the `governor` crate),
//! keyed by the peer IP. Loopback clients (the local edge, tests, probes)
//! are exempt unless configured otherwise.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::HttpError;

/// The limiter and its loopback policy.
pub struct ClientRateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    include_loopback: bool,
}

impl ClientRateLimit {
    /// `per_second` sustained with bursts of `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32, include_loopback: bool) -> Self {
        ClientRateLimit { limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)), include_loopback }
    }
}

/// Middleware: 429 with `Retry-After` once a client exceeds its quota.
pub async fn limit(State(rl): State<Arc<ClientRateLimit>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    let ip = peer.ip();
    if (rl.include_loopback || !ip.is_loopback()) && rl.limiter.check_key(&ip).is_err() {
        metrics::counter!("requests_shed_total", "reason" => "rate_limit").increment(1);
        let mut e = HttpError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        e.retry_after = Some(1);
        return e.into_response();
    }
    next.run(request).await
}
