//! The edge's failover path: which of the cache, the origins (regions), the
//! edge model and the popular list answers a request. Plain async Rust,
//! generic over its environment ([`EdgeEnv`]: clock, timer, Cache API,
//! origin `fetch`, edge model), so the worker only wires it to workerd and
//! native tests drive it with fakes. It reads top to bottom in [`serve`]:
//!
//! ```text
//!  request ─► empty history? ──yes──► popular list
//!               │no
//!               ▼
//!  canonical request: unknown ids dropped, catalog order (the cache key and
//!  the origins' query); no known id at all: ask the origins, never the cache
//!               ▼
//!  cache (key: generation, the preferred origin's model version, query):
//!         fresh ──► serve (cache)
//!         stale-while-revalidate ──► serve (cache), revalidate in background
//!               │ miss / older
//!               ▼
//!  edge-first: edge model ──► serve (edge), refresh the cache in background
//!  origin-first:
//!    an ejected origin whose ejection is over (half-open)? claim its probe,
//!    sent in the background after the answer (no shopper waits on it)
//!    plan: admitted origins, best tier first, peak-EWMA/P2C within a tier
//!    ask plan[0] under its share of the deadline ─┐   edge model computes
//!      not answered by its p90?  hedge to plan[1] │   meanwhile
//!      failed / past its share?  fail over to the next, while the deadline allows
//!    first valid answer ─► serve (origin, named), store in cache; others aborted
//!      │ none in time (or none admitted)
//!      ▼
//!  edge model ok ─► serve (edge) ─ else ─► stale-if-error cache (stale-cache) ─ else ─► popular
//! ```
//!
//! The concerns live apart: what counts against an origin and what is merely
//! "not asked" ([`failure`]); the breaker and freshness rules
//! ([`crate::failover`]); choosing among origins, outlier ejection, ramp and
//! the hedging budget ([`balancer`]); `Server-Timing` ([`timing`]); what
//! counts as a valid origin answer ([`crate::origin_answer`]). State that
//! outlives a request (each origin's breaker, latency and model version,
//! revalidations in flight) is one [`EdgeState`] per isolate.

pub mod balancer;
pub mod failure;
pub mod timing;

use std::cell::RefCell;
use std::collections::HashSet;
use std::future::Future;
use std::pin::{Pin, pin};
use std::task::Poll;

pub use failure::{FailureClass, NotAsked, OriginFailure, Unanswered};
pub use timing::{Attempt, AttemptResult, Timing};

use self::balancer::{Balancer, Finished};
use crate::edge_config::{EdgeConfig, OriginSpec, Strategy};
use crate::failover::{Freshness, Outcome, freshness};
use crate::origin_answer::{self, Expected};
use crate::request::{Canonical, OriginForm, canonical_query, canonicalize, origin_form};
use crate::wire::{RecommendationResponse, Source, ValidRequest};

/// An origin answer kept in the edge cache, with when it was stored (ms since the epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAnswer {
    /// The origin's answer as it was served.
    pub body: RecommendationResponse,
    /// Store time, ms since the Unix epoch.
    pub stored_at_ms: u64,
}

/// What the failover path needs from its host (the worker, or a test).
pub trait EdgeEnv {
    /// Wall clock, ms since the Unix epoch.
    fn now_ms(&self) -> u64;
    /// Resolves after `ms` (the hedging timer).
    fn sleep(&self, ms: u64) -> impl Future<Output = ()>;
    /// The cached origin answer under `key`, if any.
    fn cache_get(&self, key: &str) -> impl Future<Output = Option<CachedAnswer>>;
    /// `GET {origin.url}/v1/recommendations?{call.query}`, or a `POST` of
    /// the body when `call.form` says so ([`OriginForm::Post`]; never called
    /// for [`OriginForm::TooLarge`]), aborted after `deadline_ms`, and
    /// aborted when the future is dropped (a hedge lost).
    fn origin(&self, origin: &OriginSpec, call: &OriginCall, deadline_ms: u64) -> impl Future<Output = Result<RecommendationResponse, OriginFailure>>;
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
    /// Every origin's breaker, latency estimate and model version; the hedging budget.
    pub balancer: Balancer,
    /// Canonical queries with a background refresh in flight (one per key).
    revalidating: HashSet<String>,
}

impl EdgeState {
    /// Fresh state: every breaker closed, nothing measured; `seed` drives the
    /// balancer's random choices (the worker seeds it per isolate).
    pub fn new(cfg: &EdgeConfig, seed: u64) -> Self {
        EdgeState { balancer: Balancer::new(&cfg.origins, cfg.breaker, cfg.balancer, seed), revalidating: HashSet::new() }
    }

    /// The model version the cache is keyed by: the preferred origin's, once
    /// one has answered, else the edge's own (both are built from one model
    /// directory). A reload or rollback at the origin stops old answers from
    /// being served once the edge hears of it.
    fn cache_version(&mut self, own: &str, now_ms: u64) -> String {
        self.balancer.preferred_version(now_ms).unwrap_or_else(|| own.to_string())
    }
}

/// One question for the origins: the query they are sent and the request
/// their answers are checked against.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginCall {
    /// The request as the origins see it (canonical, or the raw ids when the
    /// edge's catalog knows none of them).
    pub request: ValidRequest,
    /// [`canonical_query`] of `request` (also the cache key's query).
    pub query: String,
    /// How it travels to the origins: the query when it is short enough,
    /// else a `POST` body, else not at all ([`origin_form`]).
    pub form: OriginForm,
    /// Whether the answer may be cached: false for histories the edge's
    /// catalog does not know (junk ids must not mint cache entries).
    pub cacheable: bool,
}

impl OriginCall {
    fn new(request: ValidRequest, cacheable: bool) -> Self {
        let query = canonical_query(&request);
        OriginCall { form: origin_form(&request, &query), query, request, cacheable }
    }

    /// Whether an origin can accept this call at all.
    pub fn sendable(&self) -> bool {
        !matches!(self.form, OriginForm::TooLarge { .. })
    }
}

/// The cache key of `query` answered by origin model `version` under the
/// operator's `cfg.cache_generation` (bump it to purge every entry).
pub fn cache_key(cfg: &EdgeConfig, version: &str, query: &str) -> String {
    let scope = serde_urlencoded::to_string([("generation", cfg.cache_generation.as_str()), ("model", version)]).expect("string pairs always encode");
    format!("{scope}&{query}")
}

/// Work the host does after answering (Workers: `ctx.wait_until`).
#[derive(Debug, Clone, PartialEq)]
pub enum FollowUp {
    /// Store this origin answer in the cache under [`cache_key`] of its version.
    Store(RecommendationResponse),
    /// Ask the origins in the background ([`revalidate`]) and store the answer.
    /// This request claimed the key's one refresh.
    Revalidate,
    /// Send origin `i`'s half-open probe in the background ([`probe`]; this
    /// request claimed it) and store its answer when cacheable.
    Probe(usize),
}

/// The answer and what the path did to get it.
#[derive(Debug, Clone, PartialEq)]
pub struct Served {
    /// The body to send; `source` says who answered.
    pub body: RecommendationResponse,
    /// Durations, and which origin served.
    pub timing: Timing,
    /// Background work, in order.
    pub follow_ups: Vec<FollowUp>,
    /// Why no origin's answer was used, when the path wanted one.
    pub unanswered: Option<Unanswered>,
    /// The origin question of this request (for the follow-ups), if any.
    pub call: Option<OriginCall>,
}

/// Polls `fut` once (starting its I/O), returning its output if already done.
async fn poll_once<F: Future>(fut: Pin<&mut F>) -> Option<F::Output> {
    let mut fut = Some(fut);
    std::future::poll_fn(move |cx| match fut.take().expect("polled once").poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Result<RecommendationResponse, OriginFailure>> + 'a>>;

/// One attempt in flight; leaves the origin's in-flight count however it
/// ends, and frees the origin's half-open probe if it ends unrecorded
/// (dropped: the host cancelled the background probe, or a hedge lost).
struct Running<'a> {
    /// Launch order within the request.
    seq: usize,
    origin: usize,
    name: String,
    epoch: u64,
    started_ms: u64,
    hedge: bool,
    answer: AnswerFuture<'a>,
    state: &'a RefCell<EdgeState>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut s = self.state.borrow_mut();
        s.balancer.end(self.origin);
        s.balancer.origins[self.origin].breaker.release_probe(self.epoch);
    }
}

/// Starts asking origin `i` with `deadline_ms`; the answer is checked
/// against the request before it counts as one.
fn launch<'a, E: EdgeEnv>(env: &'a E, state: &'a RefCell<EdgeState>, call: &'a OriginCall, seq: usize, i: usize, deadline_ms: u64, hedge: bool) -> Running<'a> {
    let (spec, epoch) = {
        let mut s = state.borrow_mut();
        let epoch = s.balancer.begin(i);
        (s.balancer.origins[i].spec.clone(), epoch)
    };
    let name = spec.name.clone();
    let answer = Box::pin(async move {
        let body = env.origin(&spec, call, deadline_ms).await?;
        let (dataset, version) = env.model_identity();
        let knows = |id: &str| env.knows_item(id);
        let expected = Expected { dataset, version, catalog_len: env.catalog_len(), knows: &knows };
        origin_answer::check(&body, &call.request, &expected).map(|()| body).map_err(OriginFailure::Malformed)
    });
    Running { seq, origin: i, name, epoch, started_ms: env.now_ms(), hedge, answer, state }
}

/// What asking the origins came to.
struct Asked {
    /// The serving origin's name and its answer, or why there is none.
    result: Result<(String, RecommendationResponse), Unanswered>,
    attempts: Vec<Attempt>,
    /// First attempt to the end, when any origin was asked.
    origin_ms: Option<u64>,
}

enum Event {
    Done(usize, Result<RecommendationResponse, OriginFailure>),
    HedgeDue,
}

/// Asks the origins of `plan` (best first) within `budget_ms`: each gets
/// `cfg.try_timeout_ms` while another could still be asked, the last one
/// what is left. A failure moves on to the next origin at once (failover);
/// with `hedging`, an origin that has not answered by its hedge delay gets
/// the next origin asked beside it, within the budget; the first valid
/// answer wins and the others are aborted (dropped).
async fn ask_origins<E: EdgeEnv>(
    env: &E,
    cfg: &EdgeConfig,
    state: &RefCell<EdgeState>,
    call: &OriginCall,
    plan: &[usize],
    budget_ms: u64,
    hedging: bool,
) -> Asked {
    let start = env.now_ms();
    let deadline_at = start + budget_ms;
    let floor = cfg.min_origin_budget_ms.max(1);
    let mut attempts = Vec::new();
    let mut running: Vec<Running> = Vec::new();
    let mut next = 0;
    let mut hedged = false;
    let mut last: Unanswered = NotAsked::DeadlineSpent.into();
    // Origin `plan[k]`, given the time left: its share while another could still be asked.
    let launch_next = |k: usize, left: u64, hedge: bool| {
        let share = if k + 1 < plan.len() { left.min(cfg.try_timeout_ms) } else { left };
        launch(env, state, call, k, plan[k], share, hedge)
    };
    loop {
        let now = env.now_ms();
        let left = deadline_at.saturating_sub(now);
        if running.is_empty() {
            if next >= plan.len() || left < floor {
                break;
            }
            let mut s = state.borrow_mut();
            if next == 0 {
                s.balancer.count_request();
            } else {
                s.balancer.stats.failovers += 1;
            }
            drop(s);
            running.push(launch_next(next, left, false));
            next += 1;
            continue;
        }
        let hedge_at = if hedging && !hedged && running.len() == 1 && next < plan.len() {
            let delay = state.borrow().balancer.hedge_delay_ms(running[0].origin);
            delay.map(|d| running[0].started_ms + d).filter(|&t| deadline_at.saturating_sub(t) >= floor)
        } else {
            None
        };
        let mut timer = hedge_at.map(|t| Box::pin(env.sleep(t.saturating_sub(now))));
        let event = std::future::poll_fn(|cx| {
            for (k, r) in running.iter_mut().enumerate() {
                if let Poll::Ready(result) = r.answer.as_mut().poll(cx) {
                    return Poll::Ready(Event::Done(k, result));
                }
            }
            match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(Event::HedgeDue),
                _ => Poll::Pending,
            }
        })
        .await;
        drop(timer);
        let now = env.now_ms();
        match event {
            Event::HedgeDue => {
                hedged = true;
                if state.borrow_mut().balancer.try_hedge() {
                    running.push(launch_next(next, deadline_at.saturating_sub(now), true));
                    next += 1;
                }
            }
            Event::Done(k, result) => {
                let r = running.remove(k);
                let ms = now.saturating_sub(r.started_ms);
                match result {
                    Ok(body) => {
                        let mut s = state.borrow_mut();
                        s.balancer.finish(r.origin, r.epoch, Finished::Answered { ms, version: body.model.version.clone() }, now);
                        if r.hedge {
                            s.balancer.stats.hedges_won += 1;
                        }
                        attempts.push((r.seq, Attempt { origin: r.name.clone(), ms, hedge: r.hedge, result: AttemptResult::Answered }));
                        for other in &running {
                            let ms = now.saturating_sub(other.started_ms);
                            s.balancer.finish(other.origin, other.epoch, Finished::Abandoned { ms }, now);
                            attempts.push((other.seq, Attempt { origin: other.name.clone(), ms, hedge: other.hedge, result: AttemptResult::Abandoned }));
                        }
                        drop(s);
                        let name = r.name.clone();
                        drop(r);
                        running.clear(); // aborts the losers' fetches
                        return Asked { result: Ok((name, body)), attempts: in_start_order(attempts), origin_ms: Some(now.saturating_sub(start)) };
                    }
                    Err(failure) => {
                        let outcome = if failure.counts_against_origin() { Outcome::Failure } else { Outcome::Neutral };
                        state.borrow_mut().balancer.finish(r.origin, r.epoch, Finished::Failed { ms, outcome }, now);
                        attempts.push((r.seq, Attempt { origin: r.name.clone(), ms, hedge: r.hedge, result: AttemptResult::Failed(failure.clone()) }));
                        last = Unanswered::Failed { origin: r.name.clone(), failure };
                    }
                }
            }
        }
    }
    let origin_ms = (!attempts.is_empty()).then(|| env.now_ms().saturating_sub(start));
    Asked { result: Err(last), attempts: in_start_order(attempts), origin_ms }
}

fn in_start_order(mut attempts: Vec<(usize, Attempt)>) -> Vec<Attempt> {
    attempts.sort_by_key(|(seq, _)| *seq);
    attempts.into_iter().map(|(_, a)| a).collect()
}

/// Runs the edge model on `req`, recording its compute time in `timing.edge_ms`.
fn timed_edge_model<E: EdgeEnv>(env: &E, req: &ValidRequest, timing: &mut Timing) -> Result<RecommendationResponse, String> {
    let t = env.now_ms();
    let edge = env.edge_model(req);
    timing.edge_ms = Some(env.now_ms().saturating_sub(t));
    edge
}

/// Answers `req` along the path in the module docs. Never fails: the popular
/// list is the last resort.
///
/// `cfg.deadline_ms` bounds the shopper's wait on the origins counted from
/// the request's arrival, not from the fetch: time the cache lookup took
/// comes out of the origins' budget, so a slow lookup under load cannot push
/// the answer past the deadline (plus the fallback's own few ms).
pub async fn serve<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, state: &RefCell<EdgeState>, req: &ValidRequest) -> Served {
    let start = env.now_ms();
    let mut timing = Timing::default();
    let Canonical { request: canonical, unknown } = canonicalize(req, |id| env.knows_item(id));
    // No id the edge knows: an origin may (a newer model); its answer is
    // not cached, so junk ids cannot fill the cache.
    let unknown_only = canonical.history.is_empty() && !req.history.is_empty();
    let call = if unknown_only {
        let mut raw = req.clone();
        raw.history.sort();
        OriginCall::new(raw, false)
    } else {
        // An answer built from one shopper's stored history is theirs alone: never cached.
        OriginCall::new(canonical.clone(), canonical.user_id.is_none())
    };
    let has_origins = !cfg.origins.is_empty();
    // `from_origin`: the body is an origin's answer to `call` (which, for an
    // unknown-only history, carried the raw ids: the origin names them itself).
    let done = |mut body: RecommendationResponse,
                source: Source,
                mut timing: Timing,
                follow_ups,
                unanswered: Option<Unanswered>,
                call: Option<OriginCall>,
                from_origin: bool| {
        body.source = source;
        if let Some(u) = &unanswered
            && source != Source::Origin
        {
            body.warnings.push(format!("origin not used: {u}"));
        }
        // Unknown ids were dropped before any model saw them, except by an
        // origin asked with the raw ids.
        if !unknown.is_empty() && (!unknown_only || !from_origin) {
            body.warnings.push(format!("unknown item ids ignored: {}", unknown.join(", ")));
        }
        if let Some(versions) = state.borrow().balancer.version_mismatch() {
            body.warnings.push(format!("origins serve different model versions: {}", versions.join(", ")));
        }
        timing.total_ms = env.now_ms().saturating_sub(start);
        Served { body, timing, follow_ups, unanswered, call }
    };

    // Nothing to personalize on: every model would answer the popular list
    // (a logged-in shopper's history is the origin's to read from its store).
    if req.history.is_empty() && req.user_id.is_none() {
        return done(env.popular(req), Source::Popular, timing, vec![], None, None, false);
    }

    let mut stale = None;
    if call.cacheable {
        let version = state.borrow_mut().cache_version(env.model_identity().1, env.now_ms());
        let t = env.now_ms();
        let cached = env.cache_get(&cache_key(cfg, &version, &call.query)).await;
        timing.cache_ms = Some(env.now_ms().saturating_sub(t));
        if let Some(c) = cached {
            match freshness(cfg.cache, c.stored_at_ms, env.now_ms()) {
                Freshness::Fresh => return done(c.body, Source::Cache, timing, vec![], None, None, false),
                Freshness::StaleWhileRevalidate => {
                    let refresh = has_origins && state.borrow_mut().revalidating.insert(call.query.clone());
                    let follow = if refresh { vec![FollowUp::Revalidate] } else { vec![] };
                    return done(c.body, Source::Cache, timing, follow, None, Some(call), false);
                }
                Freshness::StaleIfError => stale = Some(c.body),
                Freshness::Expired => {}
            }
        }
    }

    let (edge, unanswered, follow_ups) = if cfg.strategy == Strategy::EdgeFirst || !has_origins {
        let edge = timed_edge_model(env, &canonical, &mut timing);
        let refresh = has_origins && call.cacheable && state.borrow_mut().revalidating.insert(call.query.clone());
        let follow = if refresh { vec![FollowUp::Revalidate] } else { vec![] };
        if let Ok(body) = edge {
            let source = body.source;
            return done(body, source, timing, follow, None, Some(call), false);
        }
        // Edge-only (nothing to say) or edge-first (nothing was wanted from the origins).
        (edge, None, follow)
    } else {
        // Origin-first. An ejected origin whose time is up is probed after the
        // answer (`wait_until`), so no shopper waits a deadline on it; its
        // success closes its breaker for the next request.
        let (plan, probe) = {
            let mut s = state.borrow_mut();
            let now = env.now_ms();
            // A call no origin accepts cannot probe one: it would tell nothing.
            let probe = if call.sendable() { s.balancer.claim_probe(now) } else { None };
            (s.balancer.plan(now), probe)
        };
        let follow_ups: Vec<FollowUp> = probe.into_iter().map(FollowUp::Probe).collect();
        let t = env.now_ms();
        let budget = cfg.deadline_ms.saturating_sub(t.saturating_sub(start));
        let not_asked = if !call.sendable() {
            Some(NotAsked::TooLarge)
        } else if plan.is_empty() {
            Some(if probe.is_some() { NotAsked::ProbingInBackground } else { NotAsked::BreakerOpen })
        } else if budget < cfg.min_origin_budget_ms.max(1) {
            Some(NotAsked::DeadlineSpent)
        } else {
            None
        };
        if let Some(n) = not_asked {
            let edge = timed_edge_model(env, &canonical, &mut timing);
            (edge, Some(n.into()), follow_ups)
        } else {
            let (asked, edge) = {
                let mut origins = pin!(ask_origins(env, cfg, state, &call, &plan, budget, true));
                // Start the first fetch (and its deadline timer) before the edge
                // model takes the thread, so both run at once.
                let early = poll_once(origins.as_mut()).await;
                let edge = timed_edge_model(env, &canonical, &mut timing);
                let asked = match early {
                    Some(a) => a,
                    None => origins.await,
                };
                (asked, edge)
            };
            timing.origin_ms = asked.origin_ms;
            timing.attempts = asked.attempts;
            match asked.result {
                Ok((name, body)) => {
                    timing.served_by = Some(name);
                    let source = if body.source == Source::Popular { Source::Popular } else { Source::Origin };
                    let mut follow_ups = follow_ups;
                    if call.cacheable {
                        follow_ups.insert(0, FollowUp::Store(body.clone()));
                    }
                    return done(body, source, timing, follow_ups, None, Some(call), true);
                }
                Err(u) => (edge, Some(u), follow_ups),
            }
        }
    };
    match (edge, stale) {
        (Ok(body), _) => {
            let source = body.source;
            done(body, source, timing, follow_ups, unanswered, Some(call), false)
        }
        (Err(edge_error), Some(body)) => {
            let mut s = done(body, Source::StaleCache, timing, follow_ups, unanswered, Some(call), false);
            s.body.warnings.push(format!("edge model failed: {edge_error}"));
            s
        }
        (Err(edge_error), None) => {
            let mut s = done(env.popular(&canonical), Source::Popular, timing, follow_ups, unanswered, Some(call), false);
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
/// edge-first): asks the admitted origins in order (failover, no hedging:
/// no shopper waits on it) with the whole `cfg.deadline_ms`, frees the key's
/// refresh slot and returns the answer to store, if one was valid.
pub async fn revalidate<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, state: &RefCell<EdgeState>, call: &OriginCall) -> Option<RecommendationResponse> {
    let _slot = RefreshSlot { state, query: &call.query };
    if !call.sendable() {
        return None;
    }
    let plan = state.borrow_mut().balancer.plan(env.now_ms());
    ask_origins(env, cfg, state, call, &plan, cfg.deadline_ms, false).await.result.ok().map(|(_, body)| body)
}

/// The half-open probe of origin `origin` that a [`serve`] call claimed
/// ([`FollowUp::Probe`]): asks it with the whole `cfg.deadline_ms`, without
/// asking its breaker again, and records the outcome (a valid answer closes
/// the breaker and starts the ramp; a failure or an invalid answer re-opens
/// it for longer). Returns the answer to store, if it is valid and cacheable.
pub async fn probe<E: EdgeEnv>(env: &E, cfg: &EdgeConfig, state: &RefCell<EdgeState>, call: &OriginCall, origin: usize) -> Option<RecommendationResponse> {
    let asked = ask_origins(env, cfg, state, call, &[origin], cfg.deadline_ms, false).await;
    asked.result.ok().map(|(_, body)| body).filter(|_| call.cacheable)
}

#[cfg(test)]
mod tests;
