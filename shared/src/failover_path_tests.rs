//! The failover path against fakes: a clock that only moves when told, a
//! map for the Cache API, a scripted origin and edge model.

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

/// The fake catalog: ids "0".."99"; the edge model is version v1 of movielens.
fn knows_item(id: &str) -> bool {
    id.parse::<usize>().is_ok_and(|i| i < 100)
}

fn answer(source: Source, first: &str) -> RecommendationResponse {
    RecommendationResponse {
        items: vec![RecommendedItem { item_id: first.into(), score: 1.0, title: None }],
        source,
        model: ModelInfo { name: "m".into(), version: "v1".into(), backend: "fake".into(), dataset: "movielens".into() },
        warnings: vec![],
    }
}

/// How the fake origin behaves: latency in ms, then an outcome.
#[derive(Clone)]
enum Origin {
    /// A valid answer (item "7", model v1).
    Answers(u64),
    /// This body, whatever it is.
    Says(u64, RecommendationResponse),
    Fails(u64, OriginFailure),
}

struct Fake {
    clock: Cell<u64>,
    cache: RefCell<HashMap<String, CachedAnswer>>,
    origin: RefCell<Origin>,
    origin_calls: Cell<u32>,
    origin_queries: RefCell<Vec<String>>,
    edge_ok: Cell<bool>,
    edge_ms: u64,
    cache_ms: Cell<u64>,
}

impl Fake {
    fn new(origin: Origin) -> Self {
        Fake {
            clock: Cell::new(1_000_000),
            cache: RefCell::default(),
            origin: RefCell::new(origin),
            origin_calls: Cell::new(0),
            origin_queries: RefCell::default(),
            edge_ok: Cell::new(true),
            edge_ms: 3,
            cache_ms: Cell::new(0),
        }
    }
    fn advance(&self, ms: u64) {
        self.clock.set(self.clock.get() + ms);
    }
    fn set_origin(&self, o: Origin) {
        *self.origin.borrow_mut() = o;
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
    async fn origin(&self, query: &str, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
        self.origin_calls.set(self.origin_calls.get() + 1);
        self.origin_queries.borrow_mut().push(query.to_string());
        let (latency, outcome) = match self.origin.borrow().clone() {
            Origin::Answers(ms) => (ms, Ok(answer(Source::Origin, "7"))),
            Origin::Says(ms, body) => (ms, Ok(body)),
            Origin::Fails(ms, e) => (ms, Err(e)),
        };
        if latency > deadline_ms {
            self.advance(deadline_ms);
            return Err(OriginFailure::Timeout(deadline_ms));
        }
        self.advance(latency);
        outcome
    }
    fn edge_model(&self, req: &ValidRequest) -> Result<RecommendationResponse, String> {
        self.advance(self.edge_ms);
        if !self.edge_ok.get() {
            return Err("model broken".into());
        }
        Ok(if req.history.is_empty() { answer(Source::Popular, "popular") } else { answer(Source::Edge, "from-edge") })
    }
    fn popular(&self, _req: &ValidRequest) -> RecommendationResponse {
        answer(Source::Popular, "popular")
    }
    fn knows_item(&self, id: &str) -> bool {
        knows_item(id)
    }
    fn catalog_len(&self) -> usize {
        100
    }
    fn model_identity(&self) -> (&str, &str) {
        ("movielens", "v1")
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
    history(&["50"])
}

fn history(ids: &[&str]) -> ValidRequest {
    ValidRequest { history: ids.iter().map(|s| s.to_string()).collect(), k: 1, exclude_seen: true }
}

fn state() -> RefCell<EdgeState> {
    RefCell::new(EdgeState::new(&cfg()))
}

fn breaker_state(env: &Fake, s: &RefCell<EdgeState>) -> BreakerState {
    s.borrow_mut().breaker.state(env.now_ms())
}

/// Does what the worker does after answering: stores, revalidates, probes.
fn follow_up(env: &Fake, cfg: &EdgeConfig, st: &RefCell<EdgeState>, s: &Served) {
    let body = match &s.follow_up {
        FollowUp::None => None,
        FollowUp::Store(body) => Some(body.clone()),
        FollowUp::Revalidate => block_on(revalidate(env, cfg, st, s.call.as_ref().unwrap())),
        FollowUp::Probe => block_on(probe(env, cfg, st, s.call.as_ref().unwrap())),
    };
    if let Some(body) = body {
        let key = cache_key(cfg, &body.model.version, &s.call.as_ref().unwrap().query);
        env.cache.borrow_mut().insert(key, CachedAnswer { body, stored_at_ms: env.now_ms() });
    }
}

fn serve_and_follow(env: &Fake, cfg: &EdgeConfig, st: &RefCell<EdgeState>, r: &ValidRequest) -> Served {
    let s = block_on(serve(env, cfg, st, r));
    follow_up(env, cfg, st, &s);
    s
}

#[test]
fn origin_in_time_answers_and_is_stored_then_served_from_cache() {
    let env = Fake::new(Origin::Answers(20));
    let st = state();
    let s = serve_and_follow(&env, &cfg(), &st, &req());
    assert_eq!(s.body.source, Source::Origin);
    assert_eq!(s.body.items[0].item_id, "7");
    assert_eq!(s.timing.origin_ms, Some(23), "edge compute (3) overlaps the origin call's start");
    assert!(s.timing.header().contains("origin;dur=23"));
    let s = serve_and_follow(&env, &cfg(), &st, &req());
    assert_eq!(s.body.source, Source::Cache);
    assert_eq!(s.body.items[0].item_id, "7");
    assert_eq!(env.origin_calls.get(), 1, "a fresh cache hit does not ask the origin");
}

#[test]
fn slow_origin_misses_the_deadline_and_the_edge_answers_within_it() {
    let env = Fake::new(Origin::Answers(500));
    let s = block_on(serve(&env, &cfg(), &state(), &req()));
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
    let st = state();
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, s.origin_failure), (Source::Edge, Some(OriginFailure::Timeout(90))));
    assert_eq!(s.timing.total_ms, cfg().deadline_ms + env.edge_ms, "cache 60 + origin 90 (+ the fake's serial edge compute): the wait stops at the deadline");
}

/// Hardening 4: a lookup that leaves the origin less than the floor of its
/// budget skips the origin without blaming it (before: a 10 ms `Timeout`
/// counted toward opening the breaker on a healthy origin).
#[test]
fn a_lookup_that_leaves_only_a_sliver_of_the_budget_does_not_blame_the_origin() {
    let env = Fake::new(Origin::Answers(10));
    let st = state();
    for lookup in [140, 131, 200] {
        env.cache_ms.set(lookup);
        let s = block_on(serve(&env, &cfg(), &st, &req()));
        assert_eq!((s.body.source, s.origin_failure), (Source::Edge, Some(OriginFailure::DeadlineSpent)), "lookup {lookup} ms");
    }
    assert_eq!(env.origin_calls.get(), 0);
    assert_eq!(breaker_state(&env, &st), BreakerState::Closed { failures: 0 });
    // A lookup that leaves at least the floor asks the origin as usual.
    env.cache_ms.set(150 - cfg().min_origin_budget_ms);
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Origin);
}

#[test]
fn failures_open_the_breaker_and_then_the_origin_is_not_asked() {
    let env = Fake::new(Origin::Fails(1, OriginFailure::Status(500)));
    let st = state();
    for _ in 0..2 {
        assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Edge);
    }
    assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }));
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, s.origin_failure), (Source::Edge, Some(OriginFailure::BreakerOpen)));
    assert_eq!(env.origin_calls.get(), 2);
    assert_eq!(s.timing.origin_ms, None);
    assert_eq!(s.timing.total_ms, env.edge_ms, "an open breaker costs no waiting");
}

#[test]
fn after_the_open_period_a_background_probe_fails_back_to_the_origin() {
    let env = Fake::new(Origin::Fails(1, OriginFailure::Network("refused".into())));
    let st = state();
    for _ in 0..2 {
        block_on(serve(&env, &cfg(), &st, &req()));
    }
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Edge, "still open");
    env.advance(1_000);
    // Half-open, origin still down: the shopper gets the edge at once, the probe runs afterwards.
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, s.follow_up.clone(), s.origin_failure.clone()), (Source::Edge, FollowUp::Probe, Some(OriginFailure::ProbingInBackground)));
    assert_eq!(s.timing.total_ms, env.edge_ms, "no wait on the probe");
    assert_eq!(env.origin_calls.get(), 2);
    assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap())).is_none());
    assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }), "the failed probe re-opens");
    // Next period the origin is back: the probe closes the breaker and the next request goes to the origin.
    env.set_origin(Origin::Answers(5));
    env.advance(2_000);
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, s.follow_up.clone()), (Source::Edge, FollowUp::Probe));
    let other = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((other.origin_failure, other.follow_up), (Some(OriginFailure::BreakerOpen), FollowUp::None), "one probe at a time");
    assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap())).is_some());
    assert_eq!(breaker_state(&env, &st), BreakerState::Closed { failures: 0 });
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Origin);
}

/// Hardening 3: a well-formed 200 that does not answer the request is a
/// failure: not served as `origin`, not cached, counted against the origin,
/// and a half-open breaker does not close on it (before: all four happened).
#[test]
fn invalid_origin_answers_are_refused_counted_and_never_close_the_breaker() {
    let mut other_dataset = answer(Source::Origin, "7");
    other_dataset.model.dataset = "instacart".into();
    let mut empty = answer(Source::Origin, "7");
    empty.items.clear();
    let bad = [answer(Source::Origin, "50"), answer(Source::Origin, "not-in-catalog"), other_dataset, empty];
    for body in bad {
        let env = Fake::new(Origin::Says(5, body.clone()));
        let st = state();
        let s = serve_and_follow(&env, &cfg(), &st, &req());
        assert_eq!(s.body.source, Source::Edge, "{body:?}");
        assert!(matches!(s.origin_failure, Some(OriginFailure::Malformed(_))), "{:?}", s.origin_failure);
        assert!(env.cache.borrow().is_empty(), "an invalid answer is not cached");
        assert_eq!(breaker_state(&env, &st), BreakerState::Closed { failures: 1 });
        block_on(serve(&env, &cfg(), &st, &req()));
        assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }));
        // Half-open: the probe gets the same junk and re-opens the breaker.
        env.advance(1_000);
        let s = block_on(serve(&env, &cfg(), &st, &req()));
        assert_eq!(s.follow_up, FollowUp::Probe);
        assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap())).is_none());
        assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }), "junk does not close a half-open breaker");
    }
}

/// Hardening 9: a slow success admitted before the trip does not close the
/// breaker; 404 and 403 count against the origin; 429 and 422 neither close
/// nor count.
#[test]
fn statuses_count_as_decided() {
    for (status, class) in [
        (500, FailureClass::AgainstOrigin),
        (503, FailureClass::AgainstOrigin),
        (404, FailureClass::AgainstOrigin),
        (403, FailureClass::AgainstOrigin),
        (401, FailureClass::AgainstOrigin),
        (408, FailureClass::AgainstOrigin),
        (429, FailureClass::Refused),
        (422, FailureClass::Refused),
        (400, FailureClass::Refused),
    ] {
        assert_eq!(OriginFailure::Status(status).class(), class, "HTTP {status}");
    }
    let env = Fake::new(Origin::Fails(1, OriginFailure::Status(404)));
    let st = state();
    for _ in 0..2 {
        block_on(serve(&env, &cfg(), &st, &req()));
    }
    assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }), "an ORIGIN_URL answering 404 opens the breaker");

    let env = Fake::new(Origin::Fails(1, OriginFailure::Status(500)));
    let st = state();
    block_on(serve(&env, &cfg(), &st, &req()));
    env.set_origin(Origin::Fails(1, OriginFailure::Status(429)));
    for _ in 0..5 {
        let s = block_on(serve(&env, &cfg(), &st, &req()));
        assert_eq!(s.body.source, Source::Edge, "a 429 gets the edge model's answer");
    }
    assert_eq!(breaker_state(&env, &st), BreakerState::Closed { failures: 1 }, "429 neither resets nor counts");
}

#[test]
fn a_success_that_left_before_the_trip_does_not_close_the_breaker() {
    let env = Fake::new(Origin::Answers(5));
    let st = state();
    // A request is admitted, then the breaker trips while it is in flight.
    let epoch = st.borrow().breaker.epoch();
    assert_eq!(st.borrow_mut().breaker.admit(env.now_ms()), Admission::Allowed);
    for _ in 0..2 {
        st.borrow_mut().breaker.on_failure(env.now_ms());
    }
    let call = OriginCall::new(req(), true);
    assert!(block_on(call_origin(&env, &st, &call, 150, epoch)).is_ok());
    assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }), "the late success changed nothing");
}

/// Hardening 2: unknown ids and duplicates of unknown ids share one key and
/// one origin query; the unknown ids are still named in `warnings`. Order is
/// part of the question (the full model may be a sequence model).
#[test]
fn junk_ids_do_not_split_the_cache_but_order_does() {
    let env = Fake::new(Origin::Answers(5));
    let st = state();
    let r = |ids: &[&str]| ValidRequest { k: 1, ..history(ids) };
    let first = serve_and_follow(&env, &cfg(), &st, &r(&["50", "60"]));
    assert_eq!(first.body.source, Source::Origin);
    for (i, ids) in [vec!["50", "60"], vec!["50", "junk-1", "60"], vec!["junk-2", "50", "junk-3", "60"]].into_iter().enumerate() {
        let s = serve_and_follow(&env, &cfg(), &st, &r(&ids));
        assert_eq!(s.body.source, Source::Cache, "{ids:?}");
        if i > 0 {
            assert!(s.body.warnings.iter().any(|w| w.contains("unknown item ids ignored") && w.contains("junk")), "{:?}", s.body.warnings);
        }
    }
    assert_eq!(env.origin_calls.get(), 1);
    assert_eq!(env.origin_queries.borrow()[0], "history=50%2C60&k=1&exclude_seen=true", "the origin gets the canonical query");
    assert_eq!(env.cache.borrow().len(), 1);
    // A duplicate weighs twice: a different question, a different entry.
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &r(&["50", "60", "60"])).body.source, Source::Origin);
    // The same items in another order: another question for a sequence model.
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &r(&["60", "50"])).body.source, Source::Origin);
    assert_eq!(env.origin_queries.borrow().last().unwrap(), "history=60%2C50&k=1&exclude_seen=true");
}

/// Hardening 5: a history of ids the edge's catalog lacks goes to the
/// origin (which may have a newer model), uncached; the usual fallbacks apply.
#[test]
fn ids_only_the_origin_may_know_are_asked_for_and_not_cached() {
    let mut newer = answer(Source::Origin, "5000");
    newer.model.version = "v2".into();
    let env = Fake::new(Origin::Says(5, newer));
    let st = state();
    let r = history(&["new-b", "new-a"]);
    let s = serve_and_follow(&env, &cfg(), &st, &r);
    assert_eq!((s.body.source, s.body.items[0].item_id.as_str()), (Source::Origin, "5000"));
    assert_eq!(env.origin_queries.borrow()[0], "history=new-a%2Cnew-b&k=1&exclude_seen=true");
    assert!(env.cache.borrow().is_empty(), "junk-looking ids mint no cache entry");
    assert_eq!(s.timing.cache_ms, None, "nor look one up");
    env.set_origin(Origin::Fails(1, OriginFailure::Status(503)));
    let s = serve_and_follow(&env, &cfg(), &st, &r);
    assert_eq!(s.body.source, Source::Popular);
    assert!(s.body.warnings.iter().any(|w| w.contains("new-a")), "{:?}", s.body.warnings);
    // Edge-first never asks the origin on the shopper's time: the ids are named as ignored.
    let edge_first = EdgeConfig { strategy: Strategy::EdgeFirst, ..cfg() };
    let calls = env.origin_calls.get();
    let s = serve_and_follow(&env, &edge_first, &st, &r);
    assert_eq!((s.body.source, env.origin_calls.get()), (Source::Popular, calls));
    assert!(s.body.warnings.iter().any(|w| w.contains("unknown item ids ignored") && w.contains("new-a")), "{:?}", s.body.warnings);
    // An empty history still gets the popular list without asking anyone.
    let calls = env.origin_calls.get();
    assert_eq!(block_on(serve(&env, &cfg(), &st, &history(&[]))).body.source, Source::Popular);
    assert_eq!(env.origin_calls.get(), calls);
}

/// Hardening 6: the key holds the origin's model version, so once the edge
/// hears of a reload (or a rollback) old answers are no longer served.
#[test]
fn a_new_origin_model_version_retires_cached_answers() {
    let env = Fake::new(Origin::Answers(5));
    let st = state();
    serve_and_follow(&env, &cfg(), &st, &req());
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &req()).body.source, Source::Cache);
    // The origin reloads onto v2; another query tells this isolate.
    let mut v2 = answer(Source::Origin, "8");
    v2.model.version = "v2".into();
    env.set_origin(Origin::Says(5, v2));
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &history(&["51"])).body.source, Source::Origin);
    assert_eq!(st.borrow().origin_version.as_deref(), Some("v2"));
    let s = serve_and_follow(&env, &cfg(), &st, &req());
    assert_eq!((s.body.source, s.body.items[0].item_id.as_str()), (Source::Origin, "8"), "the v1 answer is not served");
    // The operator's generation purges every entry.
    let bumped = EdgeConfig { cache_generation: "2".into(), ..cfg() };
    assert_eq!(block_on(serve(&env, &bumped, &st, &req())).body.source, Source::Origin);
}

/// Hardening 7: in a key's stale window one request refreshes it; the others
/// are served the stale answer without starting another refresh.
#[test]
fn stale_while_revalidate_refreshes_each_key_once() {
    let env = Fake::new(Origin::Answers(5));
    let st = state();
    serve_and_follow(&env, &cfg(), &st, &req());
    env.advance(15_000);
    let first = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((first.body.source, first.follow_up.clone()), (Source::Cache, FollowUp::Revalidate));
    for _ in 0..10 {
        let s = block_on(serve(&env, &cfg(), &st, &req()));
        assert_eq!((s.body.source, s.follow_up), (Source::Cache, FollowUp::None), "one refresh per key");
    }
    assert_eq!(block_on(serve(&env, &cfg(), &st, &history(&["51"]))).body.source, Source::Origin, "other keys are not held up");
    follow_up(&env, &cfg(), &st, &first);
    assert_eq!(env.origin_calls.get(), 3);
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &req()).body.source, Source::Cache, "refreshed: fresh again");
    // Once the refresh is done the slot is free for the next stale window.
    env.advance(15_000);
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).follow_up, FollowUp::Revalidate);
}

#[test]
fn edge_model_failure_falls_back_to_stale_cache_then_popular() {
    let env = Fake::new(Origin::Answers(5));
    let st = state();
    serve_and_follow(&env, &cfg(), &st, &req());
    env.advance(50_000); // past max-age + swr, within stale-if-error
    env.set_origin(Origin::Fails(1, OriginFailure::Status(503)));
    env.edge_ok.set(false);
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!(s.body.source, Source::StaleCache);
    assert_eq!(s.body.items[0].item_id, "7");
    assert!(s.body.warnings.iter().any(|w| w.contains("edge model failed")));
    env.advance(100_000); // past stale-if-error
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, s.body.items[0].item_id.as_str()), (Source::Popular, "popular"));
}

#[test]
fn stale_cache_is_not_preferred_over_a_working_edge_model() {
    let env = Fake::new(Origin::Answers(5));
    let st = state();
    serve_and_follow(&env, &cfg(), &st, &req());
    env.advance(50_000);
    env.set_origin(Origin::Fails(1, OriginFailure::Status(500)));
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Edge);
}

#[test]
fn edge_first_serves_the_edge_and_refreshes_in_the_background() {
    let env = Fake::new(Origin::Answers(5));
    let c = EdgeConfig { strategy: Strategy::EdgeFirst, ..cfg() };
    let st = state();
    let s = block_on(serve(&env, &c, &st, &req()));
    assert_eq!((s.body.source, s.follow_up.clone()), (Source::Edge, FollowUp::Revalidate));
    assert_eq!(env.origin_calls.get(), 0, "the answer did not wait for the origin");
    follow_up(&env, &c, &st, &s);
    assert_eq!(block_on(serve(&env, &c, &st, &req())).body.source, Source::Cache);
}

#[test]
fn without_an_origin_the_edge_answers_and_nothing_is_refreshed() {
    let env = Fake::new(Origin::Answers(5));
    let c = EdgeConfig { origin_url: None, ..cfg() };
    let s = block_on(serve(&env, &c, &state(), &req()));
    assert_eq!((s.body.source, s.body.warnings.len()), (Source::Edge, 0));
    assert_eq!(env.origin_calls.get(), 0);
}
