//! Per-client rate limit (token bucket, GCRA via the `governor` crate).
//!
//! Behind the edge every request comes from a few edge addresses, so the
//! socket's address would throttle all shoppers of one edge together (and
//! the 429s used to open the edge's breaker). The client is therefore the
//! shopper's address the edge forwards in `x-edgerec-client-ip`, but only on
//! requests whose edge credential checked out ([`crate::edge_auth`]);
//! otherwise the socket's. Loopback clients (the local edge, tests, probes)
//! are exempt unless configured otherwise. An IPv6 client is its /64 (one
//! subscriber's prefix: rotating through its 2⁶⁴ addresses must not buy a
//! fresh bucket each time). The table of clients is pruned
//! ([`ClientRateLimit::prune`]) so a stream of new addresses cannot grow it
//! without bound.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::edge_auth::EdgeVouched;
use crate::error::HttpError;

/// Header in which a vouched edge forwards the shopper's address.
pub const CLIENT_IP_HEADER: &str = "x-edgerec-client-ip";

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

    /// Whether `client` may make one more request now (counted against its [`client_key`]).
    pub fn check(&self, client: IpAddr) -> bool {
        (!self.include_loopback && client.is_loopback()) || self.limiter.check_key(&client_key(client)).is_ok()
    }

    /// Forgets clients whose bucket has refilled (they would start full
    /// anyway) and returns how many remain.
    pub fn prune(&self) -> usize {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        self.limiter.len()
    }

    /// Clients in the table.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

/// The key a client address is counted under, by the rate limit and the
/// per-client connection cap: an IPv4 address as it is (an IPv4-mapped IPv6
/// address as its IPv4), an IPv6 address as its /64 prefix (RFC 4291: the
/// interface identifier is the low 64 bits, which a host may rotate at will,
/// RFC 8981).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        },
    }
}

/// The client a request is counted against: the forwarded shopper address
/// when the edge credential vouches for it, else the socket's peer.
pub fn client_of(peer: SocketAddr, headers: &HeaderMap, vouched: bool) -> IpAddr {
    let forwarded = || headers.get(CLIENT_IP_HEADER)?.to_str().ok()?.trim().parse::<IpAddr>().ok();
    if vouched { forwarded().unwrap_or(peer.ip()) } else { peer.ip() }
}

/// Middleware: 429 with `Retry-After` once a client exceeds its quota.
pub async fn limit(State(rl): State<Arc<ClientRateLimit>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request, next: Next) -> Response {
    let vouched = request.extensions().get::<EdgeVouched>().is_some();
    let client = client_of(peer, request.headers(), vouched);
    if !rl.check(client) {
        metrics::counter!("requests_shed_total", "reason" => "rate_limit").increment(1);
        let mut e = HttpError::new(axum::http::StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
        e.retry_after = Some(1);
        return e.into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "203.0.113.7:5000".parse().unwrap()
    }

    /// Hardening 14: the forwarded address counts only when vouched for.
    #[test]
    fn forwarded_addresses_count_only_beside_a_valid_credential() {
        let mut h = HeaderMap::new();
        h.insert(CLIENT_IP_HEADER, "198.51.100.23".parse().unwrap());
        assert_eq!(client_of(peer(), &h, true), "198.51.100.23".parse::<IpAddr>().unwrap());
        assert_eq!(client_of(peer(), &h, false), peer().ip(), "anyone can send the header");
        h.insert(CLIENT_IP_HEADER, "not an address".parse().unwrap());
        assert_eq!(client_of(peer(), &h, true), peer().ip());
    }

    #[test]
    fn shoppers_behind_one_edge_have_their_own_buckets() {
        let rl = ClientRateLimit::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(1).unwrap(), false);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        assert!(rl.check(a));
        assert!(!rl.check(a), "a's burst is spent");
        assert!(rl.check(b), "b is not throttled for a");
        assert!(rl.check("127.0.0.1".parse().unwrap()) && rl.check("127.0.0.1".parse().unwrap()), "loopback exempt");
    }

    /// Hardening round 2, item 9: rotating addresses within one /64 walked
    /// around the limit, each address a fresh bucket.
    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let rl = ClientRateLimit::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap(), false);
        let allowed = (0..100u16).filter(|i| rl.check(format!("2001:db8:1:2::{i:x}").parse().unwrap())).count();
        assert_eq!(allowed, 3, "one bucket of 3 for the whole /64");
        assert!(rl.check("2001:db8:1:3::1".parse().unwrap()), "the next /64 is another client");
        assert_eq!(client_key("::ffff:198.51.100.7".parse().unwrap()), "198.51.100.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_key("198.51.100.7".parse().unwrap()), "198.51.100.7".parse::<IpAddr>().unwrap());
    }

    /// Hardening 14: the per-client table does not grow without bound.
    #[test]
    fn pruning_forgets_clients_whose_bucket_refilled() {
        let rl = ClientRateLimit::new(NonZeroU32::new(1_000).unwrap(), NonZeroU32::new(1).unwrap(), true);
        for i in 0..5_000u32 {
            rl.check(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(rl.len(), 5_000);
        std::thread::sleep(std::time::Duration::from_millis(20)); // 1 ms refills a bucket of 1 at 1000/s
        assert_eq!(rl.prune(), 0);
    }
}
