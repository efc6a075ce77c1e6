//! The edge's failover path: which of the cache, the origin, the edge model
//! and the popular list answers a request. Plain async Rust, generic over its
//! environment ([`EdgeEnv`]: clock, Cache API, origin `fetch`, edge model), so
//! the worker only wires it to workerd and native tests drive it with fakes.
//!
//! ```text
//!  request ─► no known item? ──yes──► popular list
//!               │no
//!               ▼
//!  cache: fresh ──► serve (cache)
//!         stale-while-revalidate ──► serve (cache), revalidate in background
//!               │ miss / older
//!               ▼
//!  origin-first: breaker admits? ─no─┐        edge-first: edge model ──► serve (edge),
//!     │yes   (half-open: probe in the │                    refresh cache in background
//!     │       background, go right) ─┤
//!     ▼                              │
//!  start origin fetch (deadline) ─┐  │
//!  edge model computes            │  │
//!  origin in time? ─yes─► serve (origin), store in cache, breaker success
//!     │no (timeout/5xx/bad body: breaker failure)
//!     ▼                              ▼
//!  edge model ok ─► serve (edge) ─ else ─► stale-if-error cache (stale-cache) ─ else ─► popular
//! ```
//!
//! The breaker and freshness rules are [`crate::failover`]'s.

use std::cell::RefCell;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use crate::edge_config::{EdgeConfig, Strategy};
use crate::failover::{Admission, CircuitBreaker, Freshness, freshness};
use crate::wire::{RecommendationResponse, Source, ValidRequest};

/// An origin answer kept in the edge cache, with when it was stored (ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// The origin's answer as it was served.
    pub body: RecommendationResponse,
    /// Store time, ms since the Unix epoch.
    pub stored_at_ms: u64,
}

/// Why the origin gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginFailure {
    /// No answer within the deadline (the request was aborted).
    #[error("no answer within the {0} ms deadline")]
    Timeout(u64),
    /// Connection refused, reset, DNS, …
    #[error("network error: {0}")]
    Network(String),
    /// An HTTP status other than 200.
    #[error("HTTP {0}")]
    Status(u16),
    /// 200 with a body that is not a recommendation answer (truncated, malformed).
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The breaker is open (or a half-open probe is already out): not asked.
    #[error("circuit breaker open")]
    BreakerOpen,
    /// The breaker is half-open: the probe goes in the background
    /// ([`FollowUp::Probe`]) and this shopper does not wait on it.
    #[error("circuit breaker half-open, probing in the background")]
    ProbingInBackground,
    /// No `ORIGIN_URL` is configured.
    #[error("no origin configured")]
    NotConfigured,
    /// The request's deadline was spent before the origin could be asked
    /// (a slow cache lookup): not the origin's fault.
    #[error("deadline spent before the origin was asked")]
    DeadlineSpent,
}

impl OriginFailure {
    /// Whether the failure says the origin is unwell (counts toward opening
    /// the breaker). A 4xx other than 408/429 says our request was refused,
    /// not that the origin is down.
    pub fn counts_against_origin(&self) -> bool {
        match self {
            OriginFailure::Status(s) => !(400..500).contains(s) || *s == 408 || *s == 429,
            OriginFailure::BreakerOpen | OriginFailure::ProbingInBackground | OriginFailure::NotConfigured | OriginFailure::DeadlineSpent => false,
            _ => true,
        }
    }
}

/// What the failover path needs from its host (the worker, or a test).
pub trait EdgeEnv {
    /// Wall clock, ms since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// The cached origin answer under `key`, if any.
    fn cache_get(&self, key: &str) -> impl Future<Output = Option<CachedAnswer>>;
    /// `GET {origin}/v1/recommendations?{query}`, aborted after `deadline_ms`.
    fn origin(&self, query: &str, deadline_ms: u64) -> impl Future<Output = Result<RecommendationResponse, OriginFailure>>;
    /// The edge model's answer (`source` edge, or popular when it had nothing to go on).
    ///
    /// # Errors
    /// Why the model could not run.
    fn edge_model(&self, req: &ValidRequest) -> Result<RecommendationResponse, String>;
    /// The bundled popular list (`source` popular), never fails.
    fn popular(&self, req: &ValidRequest) -> RecommendationResponse;
    /// Whether any history id is in the catalog.
    fn knows_any(&self, history: &[String]) -> bool;
}

/// Durations for `Server-Timing`, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    /// Edge model compute, when it ran.
    pub edge_ms: Option<u64>,
    /// Origin round trip (or time until the deadline), when it was asked.
    pub origin_ms: Option<u64>,
    /// Cache lookup, when it ran.
    pub cache_ms: Option<u64>,
    /// The whole path.
    pub total_ms: u64,
}

impl Timing {
    /// The `Server-Timing` header value (W3C Server Timing), e.g.
    /// `cache;dur=0, origin;dur=12, edge;dur=3, total;dur=15`.
    pub fn header(&self) -> String {
        let mut parts = Vec::new();
        for (name, dur) in [("cache", self.cache_ms), ("origin", self.origin_ms), ("edge", self.edge_ms)] {
            if let Some(d) = dur {
                parts.push(format!("{name};dur={d}"));
            }
        }
        parts.push(format!("total;dur={}", self.total_ms));
        parts.join(", ")
    }
}

/// Work the host does after answering (Workers: `ctx.wait_until`).
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUp {
    /// Nothing.
    None,
    /// Store this origin answer in the cache under the request's key.
    Store(RecommendationResponse),
    /// Ask the origin in the background ([`revalidate`]) and store its answer.
    Revalidate,
    /// Run the breaker's half-open probe in the background ([`probe`]; this
    /// request claimed it) and store its answer.
    Probe,
}

/// The answer and what the path did to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The body to send; `source` says who answered.
    pub body: RecommendationResponse,
    /// Durations.
    pub timing: Timing,
    /// Background work.
    pub follow_up: FollowUp,
    /// Why the origin's answer was not used, when it was asked or skipped.
    pub origin_failure: Option<OriginFailure>,
}

/// Polls `fut` once (starting its I/O), returning its output if already done.
async fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Option<F::Output> {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| match fut.take().expect("polled once").poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Asks the origin through the breaker, giving it `deadline_ms`: rejected
/// calls fail at once with [`OriginFailure::BreakerOpen`], a spent budget
/// (`deadline_ms == 0`) with [`OriginFailure::DeadlineSpent`]; outcomes are recorded.
async fn ask_origin<E: EdgeEnv>(
    env: &E,
    cfg: &EdgeConfig,
    breaker: &RefCell<CircuitBreaker>,
    query: &str,
    deadline_ms: u64,
) -> Result<RecommendationResponse, OriginFailure> {
    if cfg.origin_url.is_none() {
        return Err(OriginFailure::NotConfigured);
    }
    if deadline_ms == 0 {
        return Err(OriginFailure::DeadlineSpent);
    }
    if breaker.borrow_mut().admit(env.now_ms()) == Admission::Rejected {
        return Err(OriginFailure::BreakerOpen);
    }
    let result = env.origin(query, deadline_ms).await;
    record(env, breaker, &result);
    result
}

fn record<E: EdgeEnv>(env: &E, breaker: &RefCell<CircuitBreaker>, result: &Result<RecommendationResponse, OriginFailure>) {
    match result {
        Ok(_) => breaker.borrow_mut().on_success(),
        Err(e) if e.counts_against_origin() => breaker.borrow_mut().on_failure(env.now_ms()),
        // The origin answered, just not with what we wanted: it is up.
        Err(_) => breaker.borrow_mut().on_success(),
    }
}

/// Answers `req` along the path in the module docs. Never fails: the popular
/// list is the last resort.
///
/// `cfg.deadline_ms` bounds the shopper's wait on the origin counted from the
/// request's arrival, not from the fetch: time the cache lookup took comes
/// out of the origin's budget, so a slow lookup under load cannot push the
/// answer past the deadline (plus the fallback's own few ms).
pub async fn serve<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, breaker: &RefCell<CircuitBreaker>, req: &ValidRequest) -> Served {
    let start = env.now_ms();
    let mut timing = Timing::default();
    let done = |mut body: RecommendationResponse, source: Source, mut timing: Timing, follow_up, origin_failure: Option<OriginFailure>| {
        body.source = source;
        if let Some(f) = &origin_failure {
            if !matches!(f, OriginFailure::NotConfigured) && source != Source::Origin {
                body.warnings.push(format!("origin not used: {f}"));
            }
        }
        timing.total_ms = env.now_ms().saturating_sub(start);
        Served { body, timing, follow_up, origin_failure }
    };

    // Nothing to personalize on: every model would answer the popular list.
    if !env.knows_any(&req.history) {
        let body = env.popular(req);
        return done(body, Source::Popular, timing, FollowUp::None, None);
    }

    let key = crate::request::canonical_query(req);
    let t = env.now_ms();
    let cached = env.cache_get(&key).await;
    timing.cache_ms = Some(env.now_ms().saturating_sub(t));
    let mut stale = None;
    if let Some(c) = cached {
        match freshness(cfg.cache, c.stored_at_ms, env.now_ms()) {
            Freshness::Fresh => return done(c.body, Source::Cache, timing, FollowUp::None, None),
            Freshness::StaleWhileRevalidate => {
                let follow = if cfg.origin_url.is_some() { FollowUp::Revalidate } else { FollowUp::None };
                return done(c.body, Source::Cache, timing, follow, None);
            }
            Freshness::StaleIfError => stale = Some(c.body),
            Freshness::Expired => {}
        }
    }

    let (edge, origin_failure, follow_up) = match cfg.strategy {
        Strategy::EdgeFirst => {
            let t = env.now_ms();
            let edge = env.edge_model(req);
            timing.edge_ms = Some(env.now_ms().saturating_sub(t));
            let follow = if cfg.origin_url.is_some() { FollowUp::Revalidate } else { FollowUp::None };
            if let Ok(body) = edge {
                let source = body.source;
                return done(body, source, timing, follow, None);
            }
            (edge, None, FollowUp::None)
        }
        // Half-open: the origin was failing a moment ago. Its probe runs after
        // the answer (`wait_until`), so no shopper waits a deadline on it; a
        // success closes the breaker for the next request.
        Strategy::OriginFirst if cfg.origin_url.is_some() && breaker.borrow_mut().try_claim_probe(env.now_ms()) => {
            let t = env.now_ms();
            let edge = env.edge_model(req);
            timing.edge_ms = Some(env.now_ms().saturating_sub(t));
            (edge, Some(OriginFailure::ProbingInBackground), FollowUp::Probe)
        }
        Strategy::OriginFirst => {
            let t = env.now_ms();
            let budget = cfg.deadline_ms.saturating_sub(t.saturating_sub(start));
            let mut origin = pin!(ask_origin(env, cfg, breaker, &key, budget));
            // Start the fetch (and its deadline timer) before the edge model
            // takes the thread, so both run at once.
            let early = poll_once(origin.as_mut()).await;
            let te = env.now_ms();
            let edge = env.edge_model(req);
            timing.edge_ms = Some(env.now_ms().saturating_sub(te));
            let result = match early {
                Some(r) => r,
                None => origin.await,
            };
            let asked = !matches!(result, Err(OriginFailure::BreakerOpen | OriginFailure::NotConfigured | OriginFailure::DeadlineSpent));
            if asked {
                timing.origin_ms = Some(env.now_ms().saturating_sub(t));
            }
            match result {
                Ok(body) => {
                    let source = if body.source == Source::Popular { Source::Popular } else { Source::Origin };
                    let store = FollowUp::Store(body.clone());
                    return done(body, source, timing, store, None);
                }
                Err(e) => (edge, Some(e), FollowUp::None),
            }
        }
    };
    match (edge, stale) {
        (Ok(body), _) => {
            let source = body.source;
            done(body, source, timing, follow_up, origin_failure)
        }
        (Err(edge_error), Some(body)) => {
            let mut s = done(body, Source::StaleCache, timing, follow_up, origin_failure);
            s.body.warnings.push(format!("edge model failed: {edge_error}"));
            s
        }
        (Err(edge_error), None) => {
            let mut s = done(env.popular(req), Source::Popular, timing, follow_up, origin_failure);
            s.body.warnings.push(format!("edge model failed: {edge_error}"));
            s
        }
    }
}

/// Background refresh (stale-while-revalidate, edge-first): asks the origin
/// through the breaker, with the whole `cfg.deadline_ms` (no shopper waits on
/// it), and returns its answer to store, if it gave one.
pub async fn revalidate<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, breaker: &RefCell<CircuitBreaker>, req: &ValidRequest) -> Option<RecommendationResponse> {
    ask_origin(env, cfg, breaker, &crate::request::canonical_query(req), cfg.deadline_ms).await.ok()
}

/// The half-open probe a [`serve`] call claimed ([`FollowUp::Probe`]): asks
/// the origin with the whole `cfg.deadline_ms`, without asking the breaker
/// again, and records the outcome (success closes the breaker, failure
/// re-opens it). Returns the origin's answer to store, if it gave one.
pub async fn probe<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, breaker: &RefCell<CircuitBreaker>, req: &ValidRequest) -> Option<RecommendationResponse> {
    let result = env.origin(&crate::request::canonical_query(req), cfg.deadline_ms).await;
    record(env, breaker, &result);
    result.ok()
}

/// A readiness probe's outcome (the worker's cron handler probes the
/// origin's `/readyz`): success closes the breaker at once, so a recovered
/// origin gets traffic before the open period ends; failure counts like any
/// other origin failure.
pub fn record_probe(breaker: &RefCell<CircuitBreaker>, ok: bool, now_ms: u64) {
    if ok {
        breaker.borrow_mut().on_success();
    } else {
        breaker.borrow_mut().on_failure(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::failover::{BreakerConfig, BreakerState, CachePolicy};
    use crate::wire::{ModelInfo, RecommendedItem};

    /// Runs a future whose fakes never park (every await is ready at once).
    fn block_on<F: Future>(f: F) -> F::Output {
        let mut f = pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn answer(source: Source, first: &str) -> RecommendationResponse {
        RecommendationResponse {
            items: vec![RecommendedItem { item_id: first.into(), score: 1.0, title: None }],
            source,
            model: ModelInfo { name: "m".into(), version: "v1".into(), backend: "fake".into() },
            warnings: vec![],
        }
    }

    /// How the fake origin behaves: latency in ms, then an outcome.
    #[derive(Clone)]
    enum Origin {
        Answers(u64),
        Fails(u64, OriginFailure),
    }

    struct Fake {
        clock: Cell<u64>,
        cache: RefCell<HashMap<String, CachedAnswer>>,
        origin: RefCell<Origin>,
        origin_calls: Cell<u32>,
        edge_ok: Cell<bool>,
        edge_ms: u64,
        cache_ms: Cell<u64>,
    }

    impl Fake {
        fn new(origin: Origin) -> Self {
            Fake { clock: Cell::new(1_000_000), cache: RefCell::default(), origin: RefCell::new(origin), origin_calls: Cell::new(0), edge_ok: Cell::new(true), edge_ms: 3, cache_ms: Cell::new(0) }
        }
        fn advance(&self, ms: u64) {
            self.clock.set(self.clock.get() + ms);
        }
    }

    impl EdgeEnv for Fake {
        fn now_ms(&self) -> u64 {
            self.clock.get()
        }
        async fn cache_get(&self, key: &str) -> Option<CachedAnswer> {
            self.advance(self.cache_ms.get());
            self.cache.borrow().get(key).cloned()
        }
        async fn origin(&self, _query: &str, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
            self.origin_calls.set(self.origin_calls.get() + 1);
            let (latency, outcome) = match self.origin.borrow().clone() {
                Origin::Answers(ms) => (ms, Ok(answer(Source::Origin, "from-origin"))),
                Origin::Fails(ms, e) => (ms, Err(e)),
            };
            if latency > deadline_ms {
                self.advance(deadline_ms);
                return Err(OriginFailure::Timeout(deadline_ms));
            }
            self.advance(latency);
            outcome
        }
        fn edge_model(&self, _req: &ValidRequest) -> Result<RecommendationResponse, String> {
            self.advance(self.edge_ms);
            if self.edge_ok.get() { Ok(answer(Source::Edge, "from-edge")) } else { Err("model broken".into()) }
        }
        fn popular(&self, _req: &ValidRequest) -> RecommendationResponse {
            answer(Source::Popular, "popular")
        }
        fn knows_any(&self, history: &[String]) -> bool {
            history.iter().any(|h| h != "unknown")
        }
    }

    fn cfg() -> EdgeConfig {
        EdgeConfig {
            origin_url: Some("http://origin".into()),
            breaker: BreakerConfig { failure_threshold: 2, open_ms: 1_000, backoff: 2, max_open_ms: 10_000 },
            cache: CachePolicy { max_age_s: 10, stale_while_revalidate_s: 10, stale_if_error_s: 100 },
            ..EdgeConfig::default()
        }
    }

    fn req() -> ValidRequest {
        ValidRequest { history: vec!["50".into()], k: 1, exclude_seen: true }
    }

    fn breaker() -> RefCell<CircuitBreaker> {
        RefCell::new(CircuitBreaker::new(cfg().breaker))
    }

    /// Serves once and performs the follow-up store, as the worker does.
    fn serve_and_store(env: &Fake, cfg: &EdgeConfig, b: &RefCell<CircuitBreaker>) -> Served {
        let s = block_on(serve(env, cfg, b, &req()));
        if let FollowUp::Store(body) = &s.follow_up {
            env.cache.borrow_mut().insert(crate::request::canonical_query(&req()), CachedAnswer { body: body.clone(), stored_at_ms: env.now_ms() });
        }
        s
    }

    #[test]
    fn origin_in_time_answers_and_is_stored_then_served_from_cache() {
        let env = Fake::new(Origin::Answers(20));
        let b = breaker();
        let s = serve_and_store(&env, &cfg(), &b);
        assert_eq!(s.body.source, Source::Origin);
        assert_eq!(s.body.items[0].item_id, "from-origin");
        assert_eq!(s.timing.origin_ms, Some(23), "edge compute (3) overlaps the origin call's start");
        assert!(s.timing.header().contains("origin;dur=23"));
        let s = serve_and_store(&env, &cfg(), &b);
        assert_eq!(s.body.source, Source::Cache);
        assert_eq!(s.body.items[0].item_id, "from-origin");
        assert_eq!(env.origin_calls.get(), 1, "a fresh cache hit does not ask the origin");
    }

    #[test]
    fn slow_origin_misses_the_deadline_and_the_edge_answers_within_it() {
        let env = Fake::new(Origin::Answers(500));
        let s = block_on(serve(&env, &cfg(), &breaker(), &req()));
        assert_eq!(s.body.source, Source::Edge);
        assert_eq!(s.origin_failure, Some(OriginFailure::Timeout(150)));
        assert!(s.timing.total_ms <= cfg().deadline_ms + env.edge_ms, "waited {} ms", s.timing.total_ms);
        assert!(s.body.warnings.iter().any(|w| w.contains("deadline")));
        assert_eq!(s.follow_up, FollowUp::None, "edge answers are not cached");
    }

    #[test]
    fn a_slow_cache_lookup_comes_out_of_the_origin_budget() {
        let env = Fake::new(Origin::Answers(500));
        env.cache_ms.set(60);
        let b = breaker();
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.origin_failure), (Source::Edge, Some(OriginFailure::Timeout(90))));
        assert_eq!(s.timing.total_ms, cfg().deadline_ms + env.edge_ms, "cache 60 + origin 90 (+ the fake's serial edge compute): the wait stops at the deadline");
        // A lookup that eats the whole budget: the origin is not asked and not blamed.
        env.cache_ms.set(200);
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.origin_failure), (Source::Edge, Some(OriginFailure::DeadlineSpent)));
        assert_eq!(env.origin_calls.get(), 1);
        assert_eq!(b.borrow_mut().state(env.now_ms()), BreakerState::Closed { failures: 1 });
    }

    #[test]
    fn failures_open_the_breaker_and_then_the_origin_is_not_asked() {
        let env = Fake::new(Origin::Fails(1, OriginFailure::Status(500)));
        let b = breaker();
        for _ in 0..2 {
            assert_eq!(block_on(serve(&env, &cfg(), &b, &req())).body.source, Source::Edge);
        }
        assert!(matches!(b.borrow_mut().state(env.now_ms()), BreakerState::Open { .. }));
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.origin_failure), (Source::Edge, Some(OriginFailure::BreakerOpen)));
        assert_eq!(env.origin_calls.get(), 2);
        assert_eq!(s.timing.origin_ms, None);
        assert_eq!(s.timing.total_ms, env.edge_ms, "an open breaker costs no waiting");
    }

    #[test]
    fn after_the_open_period_a_background_probe_fails_back_to_the_origin() {
        let env = Fake::new(Origin::Fails(1, OriginFailure::Network("refused".into())));
        let b = breaker();
        for _ in 0..2 {
            block_on(serve(&env, &cfg(), &b, &req()));
        }
        assert_eq!(block_on(serve(&env, &cfg(), &b, &req())).body.source, Source::Edge, "still open");
        env.advance(1_000);
        // Half-open, origin still down: the shopper gets the edge at once, the probe runs afterwards.
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.follow_up.clone(), s.origin_failure), (Source::Edge, FollowUp::Probe, Some(OriginFailure::ProbingInBackground)));
        assert_eq!(s.timing.total_ms, env.edge_ms, "no wait on the probe");
        assert_eq!(env.origin_calls.get(), 2);
        assert!(block_on(probe(&env, &cfg(), &b, &req())).is_none());
        assert!(matches!(b.borrow_mut().state(env.now_ms()), BreakerState::Open { .. }), "the failed probe re-opens");
        // Next period the origin is back: the probe closes the breaker and the next request goes to the origin.
        *env.origin.borrow_mut() = Origin::Answers(5);
        env.advance(2_000);
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.follow_up.clone()), (Source::Edge, FollowUp::Probe));
        let other = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((other.origin_failure, other.follow_up), (Some(OriginFailure::BreakerOpen), FollowUp::None), "one probe at a time");
        assert!(block_on(probe(&env, &cfg(), &b, &req())).is_some());
        assert_eq!(b.borrow_mut().state(env.now_ms()), BreakerState::Closed { failures: 0 });
        assert_eq!(block_on(serve(&env, &cfg(), &b, &req())).body.source, Source::Origin);
    }

    #[test]
    fn refused_requests_do_not_count_against_the_origin() {
        let env = Fake::new(Origin::Fails(1, OriginFailure::Status(422)));
        let b = breaker();
        for _ in 0..5 {
            assert_eq!(block_on(serve(&env, &cfg(), &b, &req())).body.source, Source::Edge);
        }
        assert_eq!(b.borrow_mut().state(env.now_ms()), BreakerState::Closed { failures: 0 });
        for (f, counts) in [(OriginFailure::Status(503), true), (OriginFailure::Status(429), true), (OriginFailure::Malformed("eof".into()), true), (OriginFailure::Status(404), false)] {
            assert_eq!(f.counts_against_origin(), counts, "{f}");
        }
    }

    #[test]
    fn stale_while_revalidate_serves_the_cache_and_asks_for_a_refresh() {
        let env = Fake::new(Origin::Answers(5));
        let b = breaker();
        serve_and_store(&env, &cfg(), &b);
        env.advance(15_000);
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.follow_up.clone()), (Source::Cache, FollowUp::Revalidate));
        assert_eq!(env.origin_calls.get(), 1);
        assert!(block_on(revalidate(&env, &cfg(), &b, &req())).is_some());
        assert_eq!(env.origin_calls.get(), 2);
    }

    #[test]
    fn edge_model_failure_falls_back_to_stale_cache_then_popular() {
        let env = Fake::new(Origin::Answers(5));
        let b = breaker();
        serve_and_store(&env, &cfg(), &b);
        env.advance(50_000); // past max-age + swr, within stale-if-error
        *env.origin.borrow_mut() = Origin::Fails(1, OriginFailure::Status(503));
        env.edge_ok.set(false);
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!(s.body.source, Source::StaleCache);
        assert_eq!(s.body.items[0].item_id, "from-origin");
        assert!(s.body.warnings.iter().any(|w| w.contains("edge model failed")));
        env.advance(100_000); // past stale-if-error
        let s = block_on(serve(&env, &cfg(), &b, &req()));
        assert_eq!((s.body.source, s.body.items[0].item_id.as_str()), (Source::Popular, "popular"));
    }

    #[test]
    fn stale_cache_is_not_preferred_over_a_working_edge_model() {
        let env = Fake::new(Origin::Answers(5));
        let b = breaker();
        serve_and_store(&env, &cfg(), &b);
        env.advance(50_000);
        *env.origin.borrow_mut() = Origin::Fails(1, OriginFailure::Status(500));
        assert_eq!(block_on(serve(&env, &cfg(), &b, &req())).body.source, Source::Edge);
    }

    #[test]
    fn edge_first_serves_the_edge_and_refreshes_in_the_background() {
        let env = Fake::new(Origin::Answers(5));
        let c = EdgeConfig { strategy: Strategy::EdgeFirst, ..cfg() };
        let s = block_on(serve(&env, &c, &breaker(), &req()));
        assert_eq!((s.body.source, s.follow_up), (Source::Edge, FollowUp::Revalidate));
        assert_eq!(env.origin_calls.get(), 0, "the answer did not wait for the origin");
    }

    #[test]
    fn unknown_histories_get_the_popular_list_without_asking_anyone() {
        let env = Fake::new(Origin::Answers(5));
        let r = ValidRequest { history: vec!["unknown".into()], k: 1, exclude_seen: true };
        let s = block_on(serve(&env, &cfg(), &breaker(), &r));
        assert_eq!(s.body.source, Source::Popular);
        assert_eq!(env.origin_calls.get(), 0);
    }

    #[test]
    fn without_an_origin_the_edge_answers_and_nothing_is_refreshed() {
        let env = Fake::new(Origin::Answers(5));
        let c = EdgeConfig { origin_url: None, ..cfg() };
        let s = block_on(serve(&env, &c, &breaker(), &req()));
        assert_eq!((s.body.source, s.body.warnings.len()), (Source::Edge, 0));
        assert_eq!(env.origin_calls.get(), 0);
    }

    #[test]
    fn probe_success_closes_an_open_breaker_early() {
        let env = Fake::new(Origin::Fails(1, OriginFailure::Status(500)));
        let b = breaker();
        for _ in 0..2 {
            block_on(serve(&env, &cfg(), &b, &req()));
        }
        assert!(matches!(b.borrow_mut().state(env.now_ms()), BreakerState::Open { .. }));
        record_probe(&b, true, env.now_ms());
        assert_eq!(b.borrow_mut().state(env.now_ms()), BreakerState::Closed { failures: 0 });
    }
}
