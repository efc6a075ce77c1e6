//! The failover path against fakes: a virtual clock that moves only when
//! the fake edge model computes or when every future waits on a timer (the
//! executor then jumps to the earliest one), a map for the Cache API, and
//! scripted origins by name.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::*;
use crate::edge_config::OriginSpec;
use crate::failover::{BreakerConfig, BreakerState, CachePolicy};
use crate::wire::{ModelInfo, RecommendedItem};

thread_local! {
    /// The virtual clock, ms since the epoch.
    static CLOCK: Cell<u64> = const { Cell::new(1_000_000) };
    /// Due times of the timers that returned `Pending` since the last poll.
    static DUE: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

fn now() -> u64 {
    CLOCK.with(Cell::get)
}

/// Runs `f` to completion on virtual time: when nothing can progress, the
/// clock jumps to the earliest timer.
fn block_on<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        DUE.with(|d| d.borrow_mut().clear());
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let next = DUE.with(|d| d.borrow().iter().copied().min()).expect("a pending future waits on a timer");
        CLOCK.with(|c| c.set(c.get().max(next)));
    }
}

/// A timer on the virtual clock.
async fn sleep_until(due: u64) {
    std::future::poll_fn(|_| {
        if now() >= due {
            Poll::Ready(())
        } else {
            DUE.with(|d| d.borrow_mut().push(due));
            Poll::Pending
        }
    })
    .await
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
        catalog_version: None,
    }
}

/// How a fake origin behaves: latency in ms, then an outcome.
#[derive(Clone)]
enum Origin {
    /// A valid answer (item "7", model v1).
    Answers(u64),
    /// This body, whatever it is.
    Says(u64, RecommendationResponse),
    Fails(u64, OriginFailure),
}

struct Fake {
    cache: RefCell<HashMap<String, CachedAnswer>>,
    /// Behaviour by origin name; "origin" is the single origin of [`cfg`].
    origins: RefCell<HashMap<String, Origin>>,
    /// `(origin name, query)` of every call, in order.
    calls: RefCell<Vec<(String, String)>>,
    edge_ok: Cell<bool>,
    edge_ms: u64,
    cache_ms: Cell<u64>,
}

impl Fake {
    fn new(origin: Origin) -> Self {
        Fake {
            cache: RefCell::default(),
            origins: RefCell::new(HashMap::from([("origin".to_string(), origin.clone()), ("a".to_string(), origin.clone()), ("b".to_string(), origin)])),
            calls: RefCell::default(),
            edge_ok: Cell::new(true),
            edge_ms: 3,
            cache_ms: Cell::new(0),
        }
    }
    fn advance(&self, ms: u64) {
        CLOCK.with(|c| c.set(c.get() + ms));
    }
    /// Sets the behaviour of the single origin ("origin").
    fn set_origin(&self, o: Origin) {
        self.set("origin", o);
    }
    fn set(&self, name: &str, o: Origin) {
        self.origins.borrow_mut().insert(name.to_string(), o);
    }
    fn origin_calls(&self) -> usize {
        self.calls.borrow().len()
    }
    fn calls_to(&self, name: &str) -> usize {
        self.calls.borrow().iter().filter(|(n, _)| n == name).count()
    }
}

impl EdgeEnv for Fake {
    fn now_ms(&self) -> u64 {
        now()
    }
    async fn sleep(&self, ms: u64) {
        sleep_until(now() + ms).await
    }
    async fn cache_get(&self, key: &str) -> Option<CachedAnswer> {
        self.advance(self.cache_ms.get());
        self.cache.borrow().get(key).cloned()
    }
    async fn origin(&self, origin: &OriginSpec, call: &OriginCall, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
        let sent = match &call.form {
            OriginForm::Get => call.query.clone(),
            OriginForm::Post(body) => format!("POST {body}"),
            OriginForm::TooLarge { .. } => panic!("an origin was sent a request it cannot accept"),
        };
        self.calls.borrow_mut().push((origin.name.clone(), sent));
        // What hyper does at the origin: a query past its URI limit is 414 (at 64 KiB;
        // a proxy in front of the origin may refuse far less).
        if call.form == OriginForm::Get && call.query.len() > 65_534 {
            sleep_until(now() + 1).await;
            return Err(OriginFailure::Status(414));
        }
        let behaviour = self.origins.borrow().get(&origin.name).cloned().expect("a scripted origin");
        let (latency, outcome) = match behaviour {
            Origin::Answers(ms) => (ms, Ok(answer(Source::Origin, "7"))),
            Origin::Says(ms, body) => (ms, Ok(body)),
            Origin::Fails(ms, e) => (ms, Err(e)),
        };
        sleep_until(now() + latency.min(deadline_ms)).await;
        if latency > deadline_ms { Err(OriginFailure::Timeout(deadline_ms)) } else { outcome }
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

fn spec(name: &str, priority: u32) -> OriginSpec {
    OriginSpec { name: name.into(), url: format!("http://{name}"), priority, weight: 1 }
}

/// One origin, named "origin" (what `ORIGIN_URL` gives).
fn cfg() -> EdgeConfig {
    EdgeConfig {
        origins: vec![spec("origin", 1)],
        breaker: BreakerConfig { failure_threshold: 2, open_ms: 1_000, backoff: 2, max_open_ms: 10_000 },
        cache: CachePolicy { max_age_s: 10, stale_while_revalidate_s: 10, stale_if_error_s: 100 },
        ..EdgeConfig::default()
    }
}

/// Two regions: "a" (priority 1) and "b" (priority 2).
fn regions() -> EdgeConfig {
    EdgeConfig { origins: vec![spec("a", 1), spec("b", 2)], ..cfg() }
}

fn req() -> ValidRequest {
    history(&["50"])
}

fn history(ids: &[&str]) -> ValidRequest {
    ValidRequest { history: ids.iter().map(|s| s.to_string()).collect(), k: 1, exclude_seen: true, ..Default::default() }
}

fn state_for(c: &EdgeConfig) -> RefCell<EdgeState> {
    RefCell::new(EdgeState::new(c, 42))
}

fn state() -> RefCell<EdgeState> {
    state_for(&cfg())
}

fn breaker_of(s: &RefCell<EdgeState>, i: usize) -> BreakerState {
    s.borrow_mut().balancer.origins[i].breaker.state(now())
}

fn breaker_state(_env: &Fake, s: &RefCell<EdgeState>) -> BreakerState {
    breaker_of(s, 0)
}

/// Does what the worker does after answering: stores, revalidates, probes.
fn follow_up(env: &Fake, cfg: &EdgeConfig, st: &RefCell<EdgeState>, s: &Served) {
    for f in &s.follow_ups {
        let body = match f {
            FollowUp::Store(body) => Some(body.clone()),
            FollowUp::Revalidate => block_on(revalidate(env, cfg, st, s.call.as_ref().unwrap())),
            FollowUp::Probe(i) => block_on(probe(env, cfg, st, s.call.as_ref().unwrap(), *i)),
        };
        if let Some(body) = body {
            let key = cache_key(cfg, &body.model.version, &s.call.as_ref().unwrap().query);
            env.cache.borrow_mut().insert(key, CachedAnswer { body, stored_at_ms: env.now_ms() });
        }
    }
}

fn serve_and_follow(env: &Fake, cfg: &EdgeConfig, st: &RefCell<EdgeState>, r: &ValidRequest) -> Served {
    let s = block_on(serve(env, cfg, st, r));
    follow_up(env, cfg, st, &s);
    s
}

fn failed(s: &Served) -> Option<OriginFailure> {
    s.unanswered.as_ref().and_then(|u| u.failure().cloned())
}

fn not_asked(s: &Served) -> Option<NotAsked> {
    match &s.unanswered {
        Some(Unanswered::NotAsked(n)) => Some(n.clone()),
        _ => None,
    }
}

#[test]
fn origin_in_time_answers_and_is_stored_then_served_from_cache() {
    let env = Fake::new(Origin::Answers(20));
    let st = state();
    let s = serve_and_follow(&env, &cfg(), &st, &req());
    assert_eq!(s.body.source, Source::Origin);
    assert_eq!(s.body.items[0].item_id, "7");
    assert_eq!(s.timing.origin_ms, Some(20), "edge compute (3) overlaps the origin call");
    assert!(s.timing.header().contains("origin;dur=20;desc=\"origin\""), "{}", s.timing.header());
    assert_eq!(s.timing.served_by.as_deref(), Some("origin"));
    let s = serve_and_follow(&env, &cfg(), &st, &req());
    assert_eq!(s.body.source, Source::Cache);
    assert_eq!(s.body.items[0].item_id, "7");
    assert_eq!(env.origin_calls(), 1, "a fresh cache hit does not ask the origin");
}

#[test]
fn slow_origin_misses_the_deadline_and_the_edge_answers_within_it() {
    let env = Fake::new(Origin::Answers(500));
    let s = block_on(serve(&env, &cfg(), &state(), &req()));
    assert_eq!(s.body.source, Source::Edge);
    assert_eq!(failed(&s), Some(OriginFailure::Timeout(150)));
    assert_eq!(s.timing.total_ms, cfg().deadline_ms, "the edge model computed while the origin was out");
    assert!(s.body.warnings.iter().any(|w| w.contains("deadline")));
    assert!(s.follow_ups.is_empty(), "edge answers are not cached");
}

#[test]
fn a_slow_cache_lookup_comes_out_of_the_origin_budget() {
    let env = Fake::new(Origin::Answers(500));
    env.cache_ms.set(60);
    let st = state();
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, failed(&s)), (Source::Edge, Some(OriginFailure::Timeout(90))));
    assert_eq!(s.timing.total_ms, cfg().deadline_ms, "cache 60 + origin 90: the wait stops at the deadline");
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
        assert_eq!((s.body.source, not_asked(&s)), (Source::Edge, Some(NotAsked::DeadlineSpent)), "lookup {lookup} ms");
    }
    assert_eq!(env.origin_calls(), 0);
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
    assert_eq!((s.body.source, not_asked(&s)), (Source::Edge, Some(NotAsked::BreakerOpen)));
    assert_eq!(env.origin_calls(), 2);
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
    assert_eq!((s.body.source, s.follow_ups.clone(), not_asked(&s)), (Source::Edge, vec![FollowUp::Probe(0)], Some(NotAsked::ProbingInBackground)));
    assert_eq!(s.timing.total_ms, env.edge_ms, "no wait on the probe");
    assert_eq!(env.origin_calls(), 2);
    assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap(), 0)).is_none());
    assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }), "the failed probe re-opens");
    // Next period the origin is back: the probe closes the breaker and the next request goes to the origin.
    env.set_origin(Origin::Answers(5));
    env.advance(2_000);
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((s.body.source, s.follow_ups.clone()), (Source::Edge, vec![FollowUp::Probe(0)]));
    let other = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!((not_asked(&other), other.follow_ups), (Some(NotAsked::BreakerOpen), vec![]), "one probe at a time");
    assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap(), 0)).is_some());
    assert_eq!(breaker_state(&env, &st), BreakerState::Closed { failures: 0 });
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Origin);
}

/// Hardening round 2, item 1: 64 KiB POSTs of unknown ids that
/// percent-encode to three bytes each made ~190 KB GET queries, the origin
/// answered 414, and a handful of them ejected every origin. Now the edge
/// sends what fits as a `POST` body, refuses to forward what fits nowhere,
/// and a 414 would not count against the origin anyway.
#[test]
fn requests_too_long_for_a_query_never_eject_an_origin() {
    let env = Fake::new(Origin::Answers(5));
    let c = regions();
    let st = state_for(&c);
    let junk = |n: usize, tag: usize| ValidRequest {
        history: (0..n).map(|i| format!("{tag}-{i}-{}", "é".repeat(100))).collect(),
        k: 1,
        exclude_seen: true,
        ..Default::default()
    };
    for round in 0..20 {
        let s = block_on(serve(&env, &c, &st, &junk(250, round)));
        assert_eq!(s.body.source, Source::Origin, "round {round}: {:?}", s.unanswered);
    }
    assert!(env.calls.borrow().iter().all(|(_, q)| q.starts_with("POST ")), "long histories go as a body");
    // One that fits in no form the origin accepts is not sent at all.
    let huge = ValidRequest { history: (0..500).map(|i| format!("{i}{}", "\u{1}".repeat(250))).collect(), k: 1, exclude_seen: true, ..Default::default() };
    let calls = env.origin_calls();
    let s = block_on(serve(&env, &c, &st, &huge));
    assert_eq!((s.body.source, not_asked(&s)), (Source::Popular, Some(NotAsked::TooLarge)), "unknown ids only: the popular list");
    assert_eq!(env.origin_calls(), calls);
    for i in 0..2 {
        assert_eq!(breaker_of(&st, i), BreakerState::Closed { failures: 0 }, "origin {i}");
    }
    // Had a 414 reached the breakers, it would neither count nor close.
    env.set("a", Origin::Fails(1, OriginFailure::Status(414)));
    for _ in 0..10 {
        block_on(serve(&env, &c, &st, &req()));
    }
    assert_eq!(breaker_of(&st, 0), BreakerState::Closed { failures: 0 });
}

/// Hardening round 2, item 2: a half-open probe the origin refused (a
/// rate-limited shopper's 429, an id only the origin refuses) recorded
/// nothing, so the breaker waited on it forever and the origin stayed
/// ejected for the isolate's life. Now a refused probe is released and the
/// next request probes again; a dropped one too.
#[test]
fn a_refused_probe_is_released_and_the_next_one_fails_back() {
    let env = Fake::new(Origin::Fails(1, OriginFailure::Network("down".into())));
    let st = state();
    for _ in 0..2 {
        block_on(serve(&env, &cfg(), &st, &req()));
    }
    env.advance(1_000);
    env.set_origin(Origin::Fails(1, OriginFailure::Status(429)));
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!(s.follow_ups, vec![FollowUp::Probe(0)]);
    assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap(), 0)).is_none());
    assert_eq!(breaker_state(&env, &st), BreakerState::HalfOpen { probing: false }, "the refused probe is released");
    // The next request claims a probe again; this one is dropped unfinished (the host cancelled it).
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!(s.follow_ups, vec![FollowUp::Probe(0)]);
    {
        let c = cfg();
        let mut p = pin!(probe(&env, &c, &st, s.call.as_ref().unwrap(), 0));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(p.as_mut().poll(&mut cx).is_pending(), "in flight");
    }
    assert_eq!(breaker_state(&env, &st), BreakerState::HalfOpen { probing: false }, "the dropped probe is released");
    env.set_origin(Origin::Answers(5));
    let s = block_on(serve(&env, &cfg(), &st, &req()));
    assert_eq!(s.follow_ups, vec![FollowUp::Probe(0)]);
    assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap(), 0)).is_some());
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).body.source, Source::Origin, "failed back");
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
        assert!(matches!(failed(&s), Some(OriginFailure::Malformed(_))), "{:?}", s.unanswered);
        assert!(env.cache.borrow().is_empty(), "an invalid answer is not cached");
        assert_eq!(breaker_state(&env, &st), BreakerState::Closed { failures: 1 });
        block_on(serve(&env, &cfg(), &st, &req()));
        assert!(matches!(breaker_state(&env, &st), BreakerState::Open { .. }));
        // Half-open: the probe gets the same junk and re-opens the breaker.
        env.advance(1_000);
        let s = block_on(serve(&env, &cfg(), &st, &req()));
        assert_eq!(s.follow_ups, vec![FollowUp::Probe(0)]);
        assert!(block_on(probe(&env, &cfg(), &st, s.call.as_ref().unwrap(), 0)).is_none());
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
        (414, FailureClass::Refused),
        (431, FailureClass::Refused),
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
    let epoch = st.borrow_mut().balancer.begin(0);
    for _ in 0..2 {
        st.borrow_mut().balancer.origins[0].breaker.on_failure(env.now_ms());
    }
    st.borrow_mut().balancer.finish(0, epoch, balancer::Finished::Answered { ms: 5, version: "v1".into() }, env.now_ms());
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
    assert_eq!(env.origin_calls(), 1);
    assert_eq!(env.calls.borrow()[0].1, "history=50%2C60&k=1&exclude_seen=true", "the origin gets the canonical query");
    assert_eq!(env.cache.borrow().len(), 1);
    // A duplicate weighs twice: a different question, a different entry.
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &r(&["50", "60", "60"])).body.source, Source::Origin);
    // The same items in another order: another question for a sequence model.
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &r(&["60", "50"])).body.source, Source::Origin);
    assert_eq!(env.calls.borrow().last().unwrap().1, "history=60%2C50&k=1&exclude_seen=true");
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
    assert_eq!(env.calls.borrow()[0].1, "history=new-a%2Cnew-b&k=1&exclude_seen=true");
    assert!(env.cache.borrow().is_empty(), "junk-looking ids mint no cache entry");
    assert_eq!(s.timing.cache_ms, None, "nor look one up");
    env.set_origin(Origin::Fails(1, OriginFailure::Status(503)));
    let s = serve_and_follow(&env, &cfg(), &st, &r);
    assert_eq!(s.body.source, Source::Popular);
    assert!(s.body.warnings.iter().any(|w| w.contains("new-a")), "{:?}", s.body.warnings);
    // Edge-first never asks the origin on the shopper's time: the ids are named as ignored.
    let edge_first = EdgeConfig { strategy: Strategy::EdgeFirst, ..cfg() };
    let calls = env.origin_calls();
    let s = serve_and_follow(&env, &edge_first, &st, &r);
    assert_eq!((s.body.source, env.origin_calls()), (Source::Popular, calls));
    assert!(s.body.warnings.iter().any(|w| w.contains("unknown item ids ignored") && w.contains("new-a")), "{:?}", s.body.warnings);
    // An empty history still gets the popular list without asking anyone.
    let calls = env.origin_calls();
    assert_eq!(block_on(serve(&env, &cfg(), &st, &history(&[]))).body.source, Source::Popular);
    assert_eq!(env.origin_calls(), calls);
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
    assert_eq!(st.borrow().balancer.origins[0].version.as_deref(), Some("v2"));
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
    assert_eq!((first.body.source, first.follow_ups.clone()), (Source::Cache, vec![FollowUp::Revalidate]));
    for _ in 0..10 {
        let s = block_on(serve(&env, &cfg(), &st, &req()));
        assert_eq!((s.body.source, s.follow_ups), (Source::Cache, vec![]), "one refresh per key");
    }
    assert_eq!(block_on(serve(&env, &cfg(), &st, &history(&["51"]))).body.source, Source::Origin, "other keys are not held up");
    follow_up(&env, &cfg(), &st, &first);
    assert_eq!(env.origin_calls(), 3);
    assert_eq!(serve_and_follow(&env, &cfg(), &st, &req()).body.source, Source::Cache, "refreshed: fresh again");
    // Once the refresh is done the slot is free for the next stale window.
    env.advance(15_000);
    assert_eq!(block_on(serve(&env, &cfg(), &st, &req())).follow_ups, vec![FollowUp::Revalidate]);
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
    assert_eq!((s.body.source, s.follow_ups.clone()), (Source::Edge, vec![FollowUp::Revalidate]));
    assert_eq!(env.origin_calls(), 0, "the answer did not wait for the origin");
    follow_up(&env, &c, &st, &s);
    assert_eq!(block_on(serve(&env, &c, &st, &req())).body.source, Source::Cache);
}

#[test]
fn without_an_origin_the_edge_answers_and_nothing_is_refreshed() {
    let env = Fake::new(Origin::Answers(5));
    let c = EdgeConfig { origins: vec![], ..cfg() };
    let s = block_on(serve(&env, &c, &state(), &req()));
    assert_eq!((s.body.source, s.body.warnings.len()), (Source::Edge, 0));
    assert_eq!(env.origin_calls(), 0);
}

// ---- Several origins (regions) ----

/// Region A down (fast 500s): the same request fails over to B; after the
/// breaker threshold A is ejected and B is asked first, with no time lost.
#[test]
fn a_failing_primary_fails_over_to_the_standby_inside_the_request() {
    let env = Fake::new(Origin::Answers(10));
    env.set("a", Origin::Fails(2, OriginFailure::Status(500)));
    let c = regions();
    let st = state_for(&c);
    let s = block_on(serve(&env, &c, &st, &req()));
    assert_eq!((s.body.source, s.timing.served_by.as_deref()), (Source::Origin, Some("b")));
    assert_eq!(
        s.timing.attempts.iter().map(|a| (a.origin.as_str(), a.result.clone())).collect::<Vec<_>>(),
        vec![("a", AttemptResult::Failed(OriginFailure::Status(500))), ("b", AttemptResult::Answered)]
    );
    assert_eq!(s.timing.origin_ms, Some(13), "A failed at 2 ms; B was asked once the edge model (3 ms) gave the thread back, 10 ms");
    assert!(s.timing.header().contains("try-a;dur=3;desc=\"http-500\""), "seen once the edge model was done: {}", s.timing.header());
    block_on(serve(&env, &c, &st, &history(&["51"])));
    assert!(matches!(breaker_of(&st, 0), BreakerState::Open { .. }), "two failures eject A");
    let calls = env.calls_to("a");
    let s = block_on(serve(&env, &c, &st, &history(&["52"])));
    assert_eq!((s.timing.served_by.as_deref(), s.timing.origin_ms, env.calls_to("a")), (Some("b"), Some(10), calls), "B first, A not asked");
    assert_eq!(st.borrow().balancer.stats.failovers, 2);
}

/// Region A blackholed or slow: it gets its share of the deadline
/// (`try_timeout_ms`), then B answers inside the same deadline.
#[test]
fn a_silent_primary_gets_its_share_of_the_deadline_then_the_standby_answers() {
    let env = Fake::new(Origin::Answers(10));
    env.set("a", Origin::Answers(10_000));
    let c = EdgeConfig {
        balancer: balancer::BalancerConfig { hedge: balancer::HedgePolicy { budget_pct: 0, ..Default::default() }, ..Default::default() },
        ..regions()
    };
    let st = state_for(&c);
    let s = block_on(serve(&env, &c, &st, &req()));
    assert_eq!((s.body.source, s.timing.served_by.as_deref()), (Source::Origin, Some("b")));
    assert_eq!(failed(&s), None);
    assert_eq!(s.timing.attempts[0].result, AttemptResult::Failed(OriginFailure::Timeout(75)), "A's share is half the 150 ms deadline");
    assert_eq!(s.timing.total_ms, 85, "75 ms on A, then 10 ms on B: inside the deadline");
    // Both silent: the edge model answers at the deadline, not later.
    env.set("b", Origin::Answers(10_000));
    let s = block_on(serve(&env, &c, &st, &history(&["51"])));
    assert_eq!((s.body.source, failed(&s)), (Source::Edge, Some(OriginFailure::Timeout(75))));
    assert_eq!(s.timing.total_ms, c.deadline_ms);
}

/// A slow answer in A's tail: past A's p90 the query goes to B as well, B's
/// answer wins, A's is aborted without counting against A.
#[test]
fn a_slow_tail_is_hedged_to_the_next_origin_and_the_loser_is_not_blamed() {
    let env = Fake::new(Origin::Answers(8));
    env.set("a", Origin::Answers(4));
    let c = regions();
    let st = state_for(&c);
    for i in 0..20 {
        assert_eq!(block_on(serve(&env, &c, &st, &history(&[&(20 + i).to_string()]))).timing.served_by.as_deref(), Some("a"));
    }
    assert_eq!(st.borrow().balancer.hedge_delay_ms(0), Some(10), "A's p90 is 4 ms; hedging waits at least 10 ms");
    env.set("a", Origin::Answers(300));
    let s = block_on(serve(&env, &c, &st, &history(&["50", "60"])));
    assert_eq!((s.body.source, s.timing.served_by.as_deref()), (Source::Origin, Some("b")));
    assert_eq!(s.timing.total_ms, 18, "hedged at 10 ms, B answered 8 ms later");
    assert_eq!(
        s.timing.attempts,
        vec![
            Attempt { origin: "a".into(), ms: 18, hedge: false, result: AttemptResult::Abandoned },
            Attempt { origin: "b".into(), ms: 8, hedge: true, result: AttemptResult::Answered },
        ]
    );
    assert_eq!(breaker_of(&st, 0), BreakerState::Closed { failures: 0 }, "a lost hedge is not a failure");
    assert_eq!(st.borrow().balancer.origins[0].in_flight, 0, "the loser left the in-flight count");
    let stats = st.borrow().balancer.stats;
    assert_eq!((stats.hedges, stats.hedges_won), (1, 1));
}

/// The hedging budget caps the extra load on the origins: when A is slow on
/// every request, at most the budget (plus the burst) is hedged; the rest
/// wait for A's share of the deadline and fail over.
#[test]
fn hedges_stay_within_their_budget_when_the_primary_is_slow_throughout() {
    let env = Fake::new(Origin::Answers(5));
    env.set("a", Origin::Answers(5));
    let c = EdgeConfig { breaker: BreakerConfig { failure_threshold: 1_000, ..cfg().breaker }, ..regions() };
    let st = state_for(&c);
    for i in 0..20 {
        block_on(serve(&env, &c, &st, &history(&[&(20 + i).to_string()])));
    }
    env.set("a", Origin::Answers(60));
    for i in 0..200 {
        let s = block_on(serve(&env, &c, &st, &history(&[&(20 + i % 70).to_string(), "1"])));
        assert_eq!(s.body.source, Source::Origin);
    }
    let stats = st.borrow().balancer.stats;
    assert_eq!(stats.requests, 220);
    assert!(stats.hedges <= 22 + balancer::HEDGE_BURST as u64, "{stats:?}");
    assert!(stats.hedges_over_budget > 0, "{stats:?}");
}

/// Failback: once A's ejection is over, its probe goes in the background
/// while B serves the shopper; the probe's success brings traffic back to A.
#[test]
fn a_recovered_primary_is_probed_in_the_background_and_takes_traffic_back() {
    let env = Fake::new(Origin::Answers(10));
    env.set("a", Origin::Fails(1, OriginFailure::Network("refused".into())));
    let c = regions();
    let st = state_for(&c);
    for i in 0..2 {
        block_on(serve(&env, &c, &st, &history(&[&(20 + i).to_string()])));
    }
    assert!(matches!(breaker_of(&st, 0), BreakerState::Open { .. }));
    env.set("a", Origin::Answers(5));
    env.advance(1_000);
    let s = block_on(serve(&env, &c, &st, &history(&["60"])));
    assert_eq!((s.timing.served_by.as_deref(), s.follow_ups.len()), (Some("b"), 2), "B serves; store and probe follow");
    assert_eq!(s.follow_ups[1], FollowUp::Probe(0));
    assert_eq!(st.borrow_mut().balancer.state_word(0, now()), "half-open");
    follow_up(&env, &c, &st, &s);
    assert_eq!(st.borrow_mut().balancer.state_word(0, now()), "ramping");
    for i in 0..10 {
        let s = block_on(serve(&env, &c, &st, &history(&[&(70 + i).to_string()])));
        assert_eq!(s.timing.served_by.as_deref(), Some("a"), "request {i} after the probe");
    }
}

/// Both regions down: the edge model answers, as with one origin.
#[test]
fn with_every_region_down_the_edge_model_answers() {
    let env = Fake::new(Origin::Fails(1, OriginFailure::Status(503)));
    let c = regions();
    let st = state_for(&c);
    for i in 0..3 {
        let s = block_on(serve(&env, &c, &st, &history(&[&(20 + i).to_string()])));
        assert_eq!(s.body.source, Source::Edge);
    }
    let s = block_on(serve(&env, &c, &st, &history(&["9"])));
    assert_eq!((s.body.source, not_asked(&s)), (Source::Edge, Some(NotAsked::BreakerOpen)), "both ejected");
    assert!(s.body.warnings.iter().any(|w| w.contains("circuit breaker open")), "{:?}", s.body.warnings);
}

/// Two replicas in one tier, one slowed: the peak-EWMA balancer sends the
/// traffic to the fast one.
#[test]
fn the_balancer_moves_traffic_to_the_faster_replica() {
    let env = Fake::new(Origin::Answers(5));
    let c = EdgeConfig { origins: vec![spec("a", 1), spec("b", 1)], ..cfg() };
    let st = state_for(&c);
    for i in 0..20 {
        block_on(serve(&env, &c, &st, &history(&[&(20 + i).to_string()])));
    }
    env.set("a", Origin::Answers(60));
    let mut on_b = 0;
    for i in 0..200 {
        let s = block_on(serve(&env, &c, &st, &history(&[&(20 + i % 70).to_string(), "2"])));
        if s.timing.served_by.as_deref() == Some("b") {
            on_b += 1;
        }
        env.advance(10);
    }
    assert!(on_b >= 180, "{on_b} of 200 on the fast replica");
}

/// Regions that answer with different model versions are named in every
/// answer while they disagree.
#[test]
fn a_model_version_mismatch_between_regions_is_visible_in_answers() {
    let env = Fake::new(Origin::Answers(5));
    let mut v2 = answer(Source::Origin, "8");
    v2.model.version = "v2".into();
    env.set("b", Origin::Says(5, v2));
    let c = regions();
    let st = state_for(&c);
    assert_eq!(block_on(serve(&env, &c, &st, &history(&["20"]))).body.warnings, Vec::<String>::new());
    // One failure at A sends one request to B, which serves v2.
    env.set("a", Origin::Fails(1, OriginFailure::Status(502)));
    assert_eq!(block_on(serve(&env, &c, &st, &history(&["21"]))).timing.served_by.as_deref(), Some("b"));
    env.set("a", Origin::Answers(5));
    let s = block_on(serve(&env, &c, &st, &history(&["40"])));
    assert_eq!(s.timing.served_by.as_deref(), Some("a"));
    assert!(s.body.warnings.iter().any(|w| w == "origins serve different model versions: a=v1, b=v2"), "{:?}", s.body.warnings);
}

/// #22: a logged-in shopper without a history is the origin's to answer
/// (it reads their stored history); the answer is theirs, so never cached.
#[test]
fn a_user_id_without_a_history_asks_the_origin_and_is_not_cached() {
    let env = Fake::new(Origin::Answers(5));
    let c = cfg();
    let st = state_for(&c);
    let req = ValidRequest { user_id: Some("shopper-1".into()), k: 1, exclude_seen: true, ..Default::default() };
    let s = block_on(serve(&env, &c, &st, &req));
    assert_eq!(s.body.source, Source::Origin);
    assert!(env.calls.borrow().iter().any(|(_, q)| q.contains("user_id=shopper-1")), "{:?}", env.calls.borrow());
    assert!(!s.follow_ups.iter().any(|f| matches!(f, FollowUp::Store(_))), "not cached: {:?}", s.follow_ups);
    // Anonymous and without a history: the popular list, no origin call.
    let calls = env.origin_calls();
    let s = block_on(serve(&env, &c, &st, &ValidRequest { k: 1, exclude_seen: true, ..Default::default() }));
    assert_eq!((s.body.source, env.origin_calls()), (Source::Popular, calls));
}
