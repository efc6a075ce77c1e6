//! The edge's failover path: which of the cache, the origin, the edge model
//! and the popular list answers a request. Plain async Rust, generic over its
//! environment ([`EdgeEnv`]: clock, Cache API, origin `fetch`, edge model), so
//! the worker only wires it to workerd and native tests drive it with fakes.
//!
//! ```text
//!  request ─► empty history? ──yes──► popular list
//!               │no
//!               ▼
//!  canonical request: unknown ids dropped, catalog order (the cache key and
//!  the origin's query); no known id at all: ask the origin, never the cache
//!               ▼
//!  cache (key: generation, origin model version, query):
//!         fresh ──► serve (cache)
//!         stale-while-revalidate ──► serve (cache), revalidate in background
//!               │ miss / older
//!               ▼
//!  origin-first: breaker admits? ─no─┐        edge-first: edge model ──► serve (edge),
//!     │yes   (half-open: probe in the │                    refresh cache in background
//!     │       background, go right) ─┤
//!     ▼                              │
//!  start origin fetch (deadline) ─┐  │
//!  edge model computes            │  │
//!  origin in time with a valid answer? ─yes─► serve (origin), store in cache, breaker success
//!     │no (timeout/5xx/invalid answer: breaker failure; 429/422: neither)
//!     ▼                              ▼
//!  edge model ok ─► serve (edge) ─ else ─► stale-if-error cache (stale-cache) ─ else ─► popular
//! ```
//!
//! The breaker and freshness rules are [`crate::failover`]'s; what counts as
//! a valid origin answer is [`crate::origin_answer`]'s. State that outlives a
//! request (the breaker, the origin's model version, revalidations in
//! flight) is one [`EdgeState`] per isolate.

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use crate::edge_config::{EdgeConfig, Strategy};
use crate::failover::{Admission, CircuitBreaker, Freshness, Outcome, freshness};
use crate::origin_answer::{self, Expected};
use crate::request::{Canonical, canonical_query, canonicalize};
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
    /// 200 with a body that is not a valid answer to the request: truncated,
    /// malformed, or failing [`crate::origin_answer::check`].
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
    /// Too little of the request's deadline was left when the origin could
    /// be asked (a slow cache lookup): not asked, not the origin's fault.
    #[error("deadline spent before the origin was asked")]
    DeadlineSpent,
}

/// What an [`OriginFailure`] says about the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The origin is unwell or unusable: counts toward opening the breaker.
    AgainstOrigin,
    /// The origin is up and refused this request: neither opens nor closes the breaker.
    Refused,
    /// The origin was not asked.
    NotAsked,
}

impl OriginFailure {
    /// How the failure counts (a decision per case, documented in the edge README):
    ///
    /// * timeouts, network errors, invalid answers, 5xx, 408 → against the origin;
    /// * 404, 401, 403, 405, 410 and any other status → against the origin: an
    ///   `ORIGIN_URL` with a wrong path, or a WAF in front of it, is an origin
    ///   that cannot answer;
    /// * 429 → refused: the origin sheds load on purpose, an outage it is not;
    /// * 400, 413, 415, 422 → refused: the origin disagrees with a request the
    ///   edge validated by the same rules (version skew), it is not down.
    pub fn class(&self) -> FailureClass {
        match self {
            OriginFailure::Status(400 | 413 | 415 | 422 | 429) => FailureClass::Refused,
            OriginFailure::BreakerOpen | OriginFailure::ProbingInBackground | OriginFailure::NotConfigured | OriginFailure::DeadlineSpent => {
                FailureClass::NotAsked
            }
            _ => FailureClass::AgainstOrigin,
        }
    }

    /// Whether the failure counts toward opening the breaker.
    pub fn counts_against_origin(&self) -> bool {
        self.class() == FailureClass::AgainstOrigin
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
    /// Whether `id` is in the catalog of the edge's model directory (the
    /// whole catalog, not only the head the edge model scores).
    fn knows_item(&self, id: &str) -> bool;
    /// Items in the whole catalog.
    fn catalog_len(&self) -> usize;
    /// `(dataset, version)` of the edge's own model directory.
    fn model_identity(&self) -> (&str, &str);
}

/// What one isolate remembers between requests.
#[derive(Debug)]
pub struct EdgeState {
    /// Circuit breaker around origin calls.
    pub breaker: CircuitBreaker,
    /// The origin's model version, from its latest valid answer; until one
    /// arrives the edge assumes its own (both are built from one model
    /// directory). Part of the cache key, so a reload or rollback at the
    /// origin stops old answers from being served once the edge hears of it.
    pub origin_version: Option<String>,
    /// Canonical queries with a background refresh in flight (one per key).
    revalidating: HashSet<String>,
}

impl EdgeState {
    /// Fresh state: breaker closed, origin version unknown.
    pub fn new(cfg: &EdgeConfig) -> Self {
        EdgeState { breaker: CircuitBreaker::new(cfg.breaker), origin_version: None, revalidating: HashSet::new() }
    }
}

/// One question for the origin: the query it is sent and the request its
/// answer is checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginCall {
    /// The request as the origin sees it (canonical, or the raw ids when the
    /// edge's catalog knows none of them).
    pub request: ValidRequest,
    /// [`canonical_query`] of `request`.
    pub query: String,
    /// Whether the answer may be cached: false for histories the edge's
    /// catalog does not know (junk ids must not mint cache entries).
    pub cacheable: bool,
}

impl OriginCall {
    fn new(request: ValidRequest, cacheable: bool) -> Self {
        OriginCall { query: canonical_query(&request), request, cacheable }
    }
}

/// The cache key of `query` answered by origin model `version` under the
/// operator's `cfg.cache_generation` (bump it to purge every entry).
pub fn cache_key(cfg: &EdgeConfig, version: &str, query: &str) -> String {
    let scope = serde_urlencoded::to_string([("generation", cfg.cache_generation.as_str()), ("model", version)]).expect("string pairs always encode");
    format!("{scope}&{query}")
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
    /// Store this origin answer in the cache under [`cache_key`] of its version.
    Store(RecommendationResponse),
    /// Ask the origin in the background ([`revalidate`]) and store its answer.
    /// This request claimed the key's one refresh.
    Revalidate,
    /// Run the breaker's half-open probe in the background ([`probe`]; this
    /// request claimed it) and store its answer when cacheable.
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
    /// The origin question of this request (for the follow-up), if any.
    pub call: Option<OriginCall>,
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

/// Sends `call` to the origin without asking the breaker, checks the answer
/// and records the outcome against `epoch`.
async fn call_origin<E: EdgeEnv>(
    env: &E,
    state: &RefCell<EdgeState>,
    call: &OriginCall,
    deadline_ms: u64,
    epoch: u64,
) -> Result<RecommendationResponse, OriginFailure> {
    let result = env.origin(&call.query, deadline_ms).await.and_then(|body| {
        let (dataset, version) = env.model_identity();
        let knows = |id: &str| env.knows_item(id);
        let expected = Expected { dataset, version, catalog_len: env.catalog_len(), knows: &knows };
        origin_answer::check(&body, &call.request, &expected).map(|()| body).map_err(OriginFailure::Malformed)
    });
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(e) if e.counts_against_origin() => Outcome::Failure,
        Err(_) => Outcome::Neutral,
    };
    let mut s = state.borrow_mut();
    s.breaker.record(epoch, outcome, env.now_ms());
    if let Ok(body) = &result
        && s.origin_version.as_deref() != Some(body.model.version.as_str())
    {
        s.origin_version = Some(body.model.version.clone());
    }
    result
}

/// Asks the origin through the breaker, giving it `deadline_ms`: rejected
/// calls fail at once with [`OriginFailure::BreakerOpen`], a budget under
/// `cfg.min_origin_budget_ms` with [`OriginFailure::DeadlineSpent`].
async fn ask_origin<E: EdgeEnv>(
    env: &E,
    cfg: &EdgeConfig,
    state: &RefCell<EdgeState>,
    call: &OriginCall,
    deadline_ms: u64,
) -> Result<RecommendationResponse, OriginFailure> {
    if cfg.origin_url.is_none() {
        return Err(OriginFailure::NotConfigured);
    }
    if deadline_ms == 0 || deadline_ms < cfg.min_origin_budget_ms {
        return Err(OriginFailure::DeadlineSpent);
    }
    let epoch = {
        let mut s = state.borrow_mut();
        if s.breaker.admit(env.now_ms()) == Admission::Rejected {
            return Err(OriginFailure::BreakerOpen);
        }
        s.breaker.epoch()
    };
    call_origin(env, state, call, deadline_ms, epoch).await
}

/// Answers `req` along the path in the module docs. Never fails: the popular
/// list is the last resort.
///
/// `cfg.deadline_ms` bounds the shopper's wait on the origin counted from the
/// request's arrival, not from the fetch: time the cache lookup took comes
/// out of the origin's budget, so a slow lookup under load cannot push the
/// answer past the deadline (plus the fallback's own few ms).
pub async fn serve<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, state: &RefCell<EdgeState>, req: &ValidRequest) -> Served {
    let start = env.now_ms();
    let mut timing = Timing::default();
    let Canonical { request: canonical, unknown } = canonicalize(req, |id| env.knows_item(id));
    // No id the edge knows: the origin may (a newer model); its answer is
    // not cached, so junk ids cannot fill the cache.
    let unknown_only = canonical.history.is_empty() && !req.history.is_empty();
    let call = if unknown_only {
        let mut raw = req.clone();
        raw.history.sort();
        OriginCall::new(raw, false)
    } else {
        OriginCall::new(canonical.clone(), true)
    };
    // `from_origin`: the body is the origin's answer to `call` (which, for an
    // unknown-only history, carried the raw ids: the origin names them itself).
    let done = |mut body: RecommendationResponse,
                source: Source,
                mut timing: Timing,
                follow_up,
                origin_failure: Option<OriginFailure>,
                call: Option<OriginCall>,
                from_origin: bool| {
        body.source = source;
        if let Some(f) = &origin_failure
            && !matches!(f, OriginFailure::NotConfigured)
            && source != Source::Origin
        {
            body.warnings.push(format!("origin not used: {f}"));
        }
        // Unknown ids were dropped before any model saw them, except by an
        // origin asked with the raw ids.
        if !unknown.is_empty() && (!unknown_only || !from_origin) {
            body.warnings.push(format!("unknown item ids ignored: {}", unknown.join(", ")));
        }
        timing.total_ms = env.now_ms().saturating_sub(start);
        Served { body, timing, follow_up, origin_failure, call }
    };

    // Nothing to personalize on: every model would answer the popular list.
    if req.history.is_empty() {
        return done(env.popular(req), Source::Popular, timing, FollowUp::None, None, None, false);
    }

    let mut stale = None;
    if call.cacheable {
        let version = state.borrow().origin_version.clone().unwrap_or_else(|| env.model_identity().1.to_string());
        let t = env.now_ms();
        let cached = env.cache_get(&cache_key(cfg, &version, &call.query)).await;
        timing.cache_ms = Some(env.now_ms().saturating_sub(t));
        if let Some(c) = cached {
            match freshness(cfg.cache, c.stored_at_ms, env.now_ms()) {
                Freshness::Fresh => return done(c.body, Source::Cache, timing, FollowUp::None, None, None, false),
                Freshness::StaleWhileRevalidate => {
                    let follow = if cfg.origin_url.is_some() && state.borrow_mut().revalidating.insert(call.query.clone()) {
                        FollowUp::Revalidate
                    } else {
                        FollowUp::None
                    };
                    return done(c.body, Source::Cache, timing, follow, None, Some(call), false);
                }
                Freshness::StaleIfError => stale = Some(c.body),
                Freshness::Expired => {}
            }
        }
    }

    let (edge, origin_failure, follow_up) = match cfg.strategy {
        Strategy::EdgeFirst => {
            let t = env.now_ms();
            let edge = env.edge_model(&canonical);
            timing.edge_ms = Some(env.now_ms().saturating_sub(t));
            let refresh = cfg.origin_url.is_some() && call.cacheable && state.borrow_mut().revalidating.insert(call.query.clone());
            let follow = if refresh { FollowUp::Revalidate } else { FollowUp::None };
            if let Ok(body) = edge {
                let source = body.source;
                return done(body, source, timing, follow, None, Some(call), false);
            }
            (edge, None, follow)
        }
        // Half-open: the origin was failing a moment ago. Its probe runs after
        // the answer (`wait_until`), so no shopper waits a deadline on it; a
        // success closes the breaker for the next request.
        Strategy::OriginFirst if cfg.origin_url.is_some() && state.borrow_mut().breaker.try_claim_probe(env.now_ms()) => {
            let t = env.now_ms();
            let edge = env.edge_model(&canonical);
            timing.edge_ms = Some(env.now_ms().saturating_sub(t));
            (edge, Some(OriginFailure::ProbingInBackground), FollowUp::Probe)
        }
        Strategy::OriginFirst => {
            let t = env.now_ms();
            let budget = cfg.deadline_ms.saturating_sub(t.saturating_sub(start));
            let (result, edge) = {
                let mut origin = pin!(ask_origin(env, cfg, state, &call, budget));
                // Start the fetch (and its deadline timer) before the edge model
                // takes the thread, so both run at once.
                let early = poll_once(origin.as_mut()).await;
                let te = env.now_ms();
                let edge = env.edge_model(&canonical);
                timing.edge_ms = Some(env.now_ms().saturating_sub(te));
                let result = match early {
                    Some(r) => r,
                    None => origin.await,
                };
                (result, edge)
            };
            let asked = !matches!(&result, Err(e) if e.class() == FailureClass::NotAsked);
            if asked {
                timing.origin_ms = Some(env.now_ms().saturating_sub(t));
            }
            match result {
                Ok(body) => {
                    let source = if body.source == Source::Popular { Source::Popular } else { Source::Origin };
                    let store = if call.cacheable { FollowUp::Store(body.clone()) } else { FollowUp::None };
                    return done(body, source, timing, store, None, Some(call), true);
                }
                Err(e) => (edge, Some(e), FollowUp::None),
            }
        }
    };
    match (edge, stale) {
        (Ok(body), _) => {
            let source = body.source;
            done(body, source, timing, follow_up, origin_failure, Some(call), false)
        }
        (Err(edge_error), Some(body)) => {
            let mut s = done(body, Source::StaleCache, timing, follow_up, origin_failure, Some(call), false);
            s.body.warnings.push(format!("edge model failed: {edge_error}"));
            s
        }
        (Err(edge_error), None) => {
            let mut s = done(env.popular(&canonical), Source::Popular, timing, follow_up, origin_failure, Some(call), false);
            s.body.warnings.push(format!("edge model failed: {edge_error}"));
            s
        }
    }
}

/// Frees a key's refresh slot however the refresh ends (even if dropped).
struct RefreshSlot<'a> {
    state: &'a RefCell<EdgeState>,
    query: &'a str,
}

impl Drop for RefreshSlot<'_> {
    fn drop(&mut self) {
        self.state.borrow_mut().revalidating.remove(self.query);
    }
}

/// Background refresh ([`FollowUp::Revalidate`]: stale-while-revalidate,
/// edge-first): asks the origin through the breaker, with the whole
/// `cfg.deadline_ms` (no shopper waits on it), frees the key's refresh slot
/// and returns the answer to store, if the origin gave a valid one.
pub async fn revalidate<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, state: &RefCell<EdgeState>, call: &OriginCall) -> Option<RecommendationResponse> {
    let _slot = RefreshSlot { state, query: &call.query };
    ask_origin(env, cfg, state, call, cfg.deadline_ms).await.ok()
}

/// The half-open probe a [`serve`] call claimed ([`FollowUp::Probe`]): asks
/// the origin with the whole `cfg.deadline_ms`, without asking the breaker
/// again, and records the outcome (a valid answer closes the breaker, a
/// failure or an invalid answer re-opens it). Returns the answer to store,
/// if it is valid and cacheable.
pub async fn probe<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, state: &RefCell<EdgeState>, call: &OriginCall) -> Option<RecommendationResponse> {
    let epoch = state.borrow().breaker.epoch();
    call_origin(env, state, call, cfg.deadline_ms, epoch).await.ok().filter(|_| call.cacheable)
}

#[cfg(test)]
#[path = "failover_path_tests.rs"]
mod tests;
