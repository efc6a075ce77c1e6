//! # edgerec `edge` — the Cloudflare Worker
//!
//! Answers `GET`/`POST /v1/recommendations` (the origin's API, types and 4xx
//! errors from `shared`) and `GET /healthz`, near the shopper, whatever the
//! origin does. The failover path itself is `shared::failover_path`; this
//! crate wires it to workerd: `fetch` with a deadline ([`origin_client`]),
//! the Cache API ([`answer_cache`]), the embedded edge model ([`model`]) and
//! `ctx.wait_until` for background work (cache puts, stale-while-revalidate
//! refreshes, half-open probes).
//!
//! State (the model; each origin's circuit breaker, latency estimate and
//! model version; the hedging budget) lives per isolate: every isolate
//! learns about a region's outage on its own, after `BREAKER_FAILURES`
//! misses, and probes it back in-band with a real recommendation. There is
//! no cron probe: a cron event runs in an isolate of its own, whose breakers
//! never saw a failure (edge README).

mod answer_cache;
mod catalog_sync;
mod events;
mod model;
mod origin_client;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use futures_util::StreamExt;
use shared::edge_config::{EdgeConfig, OriginSpec};
use shared::failover_path::{self, CachedAnswer, EdgeEnv, EdgeState, FollowUp, OriginCall, OriginFailure};
use shared::request::{self, MAX_BODY_BYTES, OriginForm, RequestError};
use shared::wire::{ApiError, RecommendationResponse, ValidRequest};
use worker::{Context, Env, MessageBatch, Method, Request, Response, event};

thread_local! {
    /// The isolate's failover state: origins' breakers, latency and versions, refreshes in flight.
    static STATE: OnceCell<Rc<RefCell<EdgeState>>> = const { OnceCell::new() };
}

thread_local! {
    /// Answers this isolate gave, by source (`/healthz` `answers`): the edge's
    /// figures a platform team collects (docs/deploy.md maps them to Workers
    /// Analytics Engine and Logpush in production).
    static ANSWERS: RefCell<std::collections::BTreeMap<&'static str, u64>> = RefCell::new(Default::default());
}

/// Counts one answer by its source.
fn count_answer(source: shared::wire::Source) {
    ANSWERS.with(|a| *a.borrow_mut().entry(source.as_str()).or_insert(0) += 1);
}

fn state(cfg: &EdgeConfig) -> Rc<RefCell<EdgeState>> {
    let seed = (worker::js_sys::Math::random() * 2f64.powi(53)) as u64;
    STATE.with(|s| Rc::clone(s.get_or_init(|| Rc::new(RefCell::new(EdgeState::new(cfg, seed))))))
}

fn now_ms() -> u64 {
    worker::Date::now().as_millis()
}

/// Builds the model when the isolate starts, not on the first request.
#[event(start)]
fn start() {
    if let Err(e) = model::get().as_ref() {
        worker::console_error!("edgerec: the embedded edge model failed to load: {e}");
    }
}

fn config(env: &Env) -> Result<EdgeConfig, shared::edge_config::ConfigError> {
    EdgeConfig::from_vars(|name| env.var(name).ok().map(|v| v.to_string()))
}

/// The events queue's consumer: delivers queued events to an origin ([`events`]).
#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, _ctx: Context) -> worker::Result<()> {
    match config(&env) {
        Ok(cfg) => events::consume(batch, &cfg).await,
        Err(e) => {
            worker::console_error!("edgerec: configuration refused: {e}; queued events wait");
            batch.retry_all();
            Ok(())
        }
    }
}

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let request_id = request_id(&req);
    let mut response = match route(req, &env, &ctx, &request_id).await {
        Ok(r) => r,
        Err(e) => json_error(&e)?,
    };
    response.headers_mut().set("x-request-id", &request_id)?;
    Ok(response)
}

/// Dispatches by path and method; errors become JSON answers.
async fn route(mut req: Request, env: &Env, ctx: &Context, request_id: &str) -> Result<Response, RequestError> {
    let path = req.path();
    let method = req.method();
    match (path.as_str(), method) {
        ("/v1/recommendations", Method::Get) => {
            let url = req.url().map_err(internal)?;
            let parsed = request::parse_query(url.query().unwrap_or(""))?;
            recommend(&url, request::validate(parsed)?, env, ctx, client_ip(&req), request_id).await
        }
        ("/v1/recommendations", Method::Post) => {
            require_json(&req)?;
            let url = req.url().map_err(internal)?;
            let body = read_body(&mut req, MAX_BODY_BYTES).await?;
            let parsed = request::parse_json(&body)?;
            recommend(&url, request::validate(parsed)?, env, ctx, client_ip(&req), request_id).await
        }
        ("/v1/recommendations", _) => method_not_allowed("GET, POST"),
        ("/v1/events", Method::Post) => events::accept(&mut req, env).await,
        ("/v1/events", _) => method_not_allowed("POST"),
        ("/healthz", Method::Get | Method::Head) => healthz(env),
        ("/healthz", _) => method_not_allowed("GET, HEAD"),
        _ => Err(RequestError::new(404, format!("no route for {path}"))),
    }
}

/// Reads a `POST` body as it streams in, answering 413 as soon as it passes
/// `max` bytes ([`MAX_BODY_BYTES`] for recommendations): a chunked body has
/// no `Content-Length` to check first, and reading it whole could take the
/// isolate past its 128 MB.
pub(crate) async fn read_body(req: &mut Request, max: usize) -> Result<Vec<u8>, RequestError> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(RequestError::field(413, "body", format!("body is over {max} bytes")));
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    let Ok(mut stream) = req.stream() else { return Ok(body) }; // no body at all
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| RequestError::field(400, "body", format!("reading the body: {e}")))?;
        request::append_body_chunk(&mut body, &chunk, max)?;
    }
    Ok(body)
}

/// 415 unless the request says its body is JSON.
pub(crate) fn require_json(req: &Request) -> Result<(), RequestError> {
    let content_type = req.headers().get("content-type").ok().flatten();
    if request::is_json_content_type(content_type.as_deref()) { Ok(()) } else { Err(RequestError::new(415, "Content-Type must be application/json")) }
}

/// Liveness for anyone: model, each origin's state by name, hedging
/// counters and whether the configuration is usable. Operator details (the
/// origins' URLs, the configuration error itself) stay out of this public
/// answer; the error goes to the log.
fn healthz(env: &Env) -> Result<Response, RequestError> {
    let model = model::get();
    let cfg = config(env);
    if let Err(e) = &cfg {
        worker::console_error!("edgerec: configuration refused: {e}");
    }
    let s = cfg.as_ref().ok().map(state);
    let origins = s.as_ref().map(|s| {
        let mut s = s.borrow_mut();
        let now = now_ms();
        let decay = s.balancer.config().decay_ms;
        let hedge_pct = s.balancer.config().hedge.percentile;
        (0..s.balancer.origins.len())
            .map(|i| {
                let word = s.balancer.state_word(i, now);
                let hedge_after = s.balancer.hedge_delay_ms(i);
                let o = &s.balancer.origins[i];
                serde_json::json!({
                    "name": o.spec.name, "priority": o.spec.priority, "weight": o.spec.weight,
                    "state": word, "in_flight": o.in_flight,
                    "latency_ewma_ms": o.latency_estimate_ms(now, decay).map(|v| (v * 10.0).round() / 10.0),
                    format!("latency_p{hedge_pct}_ms"): o.latency_percentile(hedge_pct),
                    "hedge_after_ms": hedge_after,
                    "model_version": o.version,
                })
            })
            .collect::<Vec<_>>()
    });
    let mismatch = s.as_ref().and_then(|s| s.borrow().balancer.version_mismatch());
    let ok = model.is_ok() && cfg.is_ok();
    // The live catalog this isolate applies: its version, hidden items, and how old it is.
    let (synced_ms, version, hidden) = catalog_sync::status();
    let catalog =
        serde_json::json!({ "version": version, "hidden_items": hidden, "synced_ms_ago": (synced_ms > 0).then(|| now_ms().saturating_sub(synced_ms)) });
    let answers = ANSWERS.with(|a| a.borrow().clone());
    // Of the answers that could come from the cache (a known history), the share that did.
    let asked: u64 = answers.iter().filter(|(s, _)| **s != "popular").map(|(_, n)| n).sum();
    let cached: u64 = ["cache", "stale-cache"].iter().filter_map(|s| answers.get(s)).sum();
    let cache_hit_ratio = (asked > 0).then(|| cached as f64 / asked as f64);
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "model": match model.as_ref() {
            Ok(m) => serde_json::json!({ "name": "edge", "version": m.version, "dataset": m.dataset, "backend": model::BACKEND, "n_items": m.n_items(), "catalog_items": m.catalog_items(), "head_items_embedded": m.head_items(), "coverage": m.coverage }),
            Err(_) => serde_json::json!({ "error": "the edge model failed to load (see the worker's log)" }),
        },
        "origins": origins,
        "origin_versions": if mismatch.is_some() { "mismatch" } else { "agree" },
        "origin_version_mismatch": mismatch,
        "hedging": s.as_ref().map(|s| {
            let b = &s.borrow().balancer;
            serde_json::json!({ "budget_pct": b.config().hedge.budget_pct, "stats": b.stats })
        }),
        "config": if cfg.is_ok() { "ok" } else { "invalid (see the worker's log)" },
        "catalog": catalog,
        "answers": answers,
        "cache_hit_ratio": cache_hit_ratio,
    });
    let response = Response::from_json(&body).map_err(internal)?;
    Ok(if ok { response } else { response.with_status(503) })
}

/// What `shared::failover_path` sees of the worker.
#[derive(Clone)]
struct WorkerEnv {
    model: Rc<Result<model::EdgeModel, model::LoadError>>,
    origin_secret: Option<String>,
    /// The shopper's address (`CF-Connecting-IP`), forwarded for the origin's rate limit.
    client_ip: Option<String>,
    /// `scheme://host` of the request, for cache key URLs.
    host_origin: String,
    request_id: String,
}

impl EdgeEnv for WorkerEnv {
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    async fn cache_get(&self, key: &str) -> Option<CachedAnswer> {
        answer_cache::get(&answer_cache::key_url(&self.host_origin, key)).await
    }

    async fn sleep(&self, ms: u64) {
        worker::Delay::from(std::time::Duration::from_millis(ms)).await;
    }

    async fn origin(&self, origin: &OriginSpec, call: &OriginCall, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
        let (url, body) = match &call.form {
            OriginForm::Get => (format!("{}/v1/recommendations?{}", origin.url, call.query), None),
            OriginForm::Post(body) => (format!("{}/v1/recommendations", origin.url), Some(body.as_str())),
            // The path never asks with such a call; were it to, it is refused, not the origin's fault.
            OriginForm::TooLarge { .. } => return Err(OriginFailure::Status(413)),
        };
        let call = origin_client::OriginRequest {
            url: &url,
            body,
            request_id: &self.request_id,
            edge_key: self.origin_secret.as_deref(),
            client_ip: self.client_ip.as_deref(),
        };
        origin_client::get_json(&call, deadline_ms).await
    }

    fn edge_model(&self, req: &ValidRequest) -> Result<RecommendationResponse, String> {
        match self.model.as_ref() {
            Ok(m) => m.recommend(req),
            Err(e) => Err(e.to_string()),
        }
    }

    fn popular(&self, req: &ValidRequest) -> RecommendationResponse {
        match self.model.as_ref() {
            Ok(m) => m.popular(req),
            // Unreachable in practice: a worker whose catalog fails to load fails its sha256 checks at build time too.
            Err(e) => RecommendationResponse {
                items: vec![],
                source: shared::wire::Source::Popular,
                model: shared::wire::ModelInfo { name: "none".into(), version: String::new(), backend: model::BACKEND.into(), dataset: String::new() },
                warnings: vec![format!("edge model unavailable: {e}")],
                catalog_version: None,
            },
        }
    }

    fn knows_item(&self, id: &str) -> bool {
        self.model.as_ref().as_ref().is_ok_and(|m| m.knows(id))
    }

    fn catalog_len(&self) -> usize {
        self.model.as_ref().as_ref().map_or(0, model::EdgeModel::catalog_items)
    }

    fn model_identity(&self) -> (&str, &str) {
        match self.model.as_ref() {
            Ok(m) => (&m.dataset, &m.version),
            Err(_) => ("", ""),
        }
    }
}

async fn recommend(
    url: &worker::Url,
    req: ValidRequest,
    env: &Env,
    ctx: &Context,
    client_ip: Option<String>,
    request_id: &str,
) -> Result<Response, RequestError> {
    let cfg = config(env).map_err(|e| {
        worker::console_error!("edgerec: configuration refused: {e}");
        RequestError::new(500, "the edge is misconfigured (see the worker's log)")
    })?;
    let state = state(&cfg);
    let wenv = WorkerEnv {
        model: model::get(),
        origin_secret: cfg.origin_secret.clone(),
        client_ip,
        host_origin: url.origin().ascii_serialization(),
        request_id: request_id.to_string(),
    };
    match catalog_sync::due(now_ms()) {
        catalog_sync::Due::Inline => catalog_sync::refresh(&cfg, now_ms, catalog_sync::INLINE_BUDGET_MS).await,
        catalog_sync::Due::Background => {
            let cfg = cfg.clone();
            ctx.wait_until(async move { catalog_sync::refresh(&cfg, now_ms, events::DELIVERY_DEADLINE_MS).await });
        }
        catalog_sync::Due::No => {}
    }
    let mut served = failover_path::serve(&wenv, &cfg, &state, &req).await;
    // Whichever source answered (origin, cache, edge model, popular list), the live catalog's rules hold.
    apply_live_catalog(&wenv, &req, &mut served.body);
    if let Some(u) = &served.unanswered
        && u.counts_against_origin()
    {
        worker::console_warn!("edgerec {request_id}: origins failed (last: {u}); answered from {:?}", served.body.source);
    }
    let ttl_s = cfg.cache_ttl_s();
    let store = {
        let (cfg, host) = (cfg.clone(), wenv.host_origin.clone());
        move |query: String, body: RecommendationResponse| {
            let key = answer_cache::key_url(&host, &failover_path::cache_key(&cfg, &body.model.version, &query));
            async move {
                if let Err(e) = answer_cache::put(&key, &body, now_ms(), ttl_s).await {
                    worker::console_warn!("edgerec: cache put failed: {e}");
                }
            }
        }
    };
    for follow in served.follow_ups.iter().cloned() {
        let Some(call) = served.call.clone() else { break };
        match follow {
            FollowUp::Store(body) => ctx.wait_until(store(call.query, body)),
            FollowUp::Revalidate | FollowUp::Probe(_) => {
                let (wenv, cfg, state, store) = (wenv.clone(), cfg.clone(), Rc::clone(&state), store.clone());
                ctx.wait_until(async move {
                    let answer = match follow {
                        FollowUp::Probe(i) => failover_path::probe(&wenv, &cfg, &state, &call, i).await,
                        _ => failover_path::revalidate(&wenv, &cfg, &state, &call).await,
                    };
                    if let Some(body) = answer {
                        store(call.query, body).await;
                    }
                });
            }
        }
    }
    count_answer(served.body.source);
    let server_timing = served.timing.header();
    // One structured line per answer: Workers Logs / Logpush collect it in
    // production (sampled by wrangler.toml's [observability]); docs/deploy.md
    // lists the figures a platform team derives from it.
    worker::console_log!(
        "{}",
        serde_json::json!({
            "edgerec": "answer",
            "request_id": request_id,
            "source": served.body.source.as_str(),
            "origin": served.timing.served_by,
            "attempts": served.timing.attempts.len(),
            "server_timing": server_timing,
        })
    );
    let mut response = Response::from_json(&served.body).map_err(internal)?;
    let headers = response.headers_mut();
    headers.set("x-rec-source", served.body.source.as_str()).map_err(internal)?;
    if let Some(origin) = &served.timing.served_by {
        headers.set("x-rec-origin", origin).map_err(internal)?;
    }
    headers.set("server-timing", &server_timing).map_err(internal)?;
    // Our own cache decides freshness; browsers and shared caches must not
    // hide a failover (or a recovery) from the shopper.
    headers.set("cache-control", "no-store").map_err(internal)?;
    headers.set("timing-allow-origin", "*").map_err(internal)?;
    Ok(response)
}

/// Leaves out what the live catalog hides or the request excludes, fills
/// `k` from the popular list, gives new items their cold-start slots.
fn apply_live_catalog(wenv: &WorkerEnv, req: &ValidRequest, body: &mut RecommendationResponse) {
    let Ok(m) = wenv.model.as_ref() else { return };
    let origin_version = body.catalog_version;
    catalog_sync::with(|c| c.apply(body, req, |id| m.knows(id), m.popular_order()));
    body.catalog_version = body.catalog_version.max(origin_version);
}

/// The shopper's address as Cloudflare saw it (`CF-Connecting-IP`).
fn client_ip(req: &Request) -> Option<String> {
    req.headers().get("cf-connecting-ip").ok().flatten().filter(|ip| ip.len() <= 45 && ip.parse::<std::net::IpAddr>().is_ok())
}

/// The incoming `x-request-id` when it is sane (≤ 128 visible ASCII chars), else a fresh one.
fn request_id(req: &Request) -> String {
    if let Some(id) = req.headers().get("x-request-id").ok().flatten()
        && !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_graphic())
    {
        return id;
    }
    (0..4).map(|_| format!("{:08x}", (worker::js_sys::Math::random() * f64::from(u32::MAX)) as u32)).collect()
}

/// 405 with `Allow` (RFC 9110 §15.5.6) and the usual JSON body.
fn method_not_allowed(allow: &'static str) -> Result<Response, RequestError> {
    let e = RequestError::new(405, format!("method not allowed; use {allow}"));
    let mut response = json_error(&e).map_err(internal)?;
    response.headers_mut().set("allow", allow).map_err(internal)?;
    Ok(response)
}

fn internal(e: impl std::fmt::Display) -> RequestError {
    RequestError::new(500, format!("internal error: {e}"))
}

fn json_error(e: &RequestError) -> worker::Result<Response> {
    let body: ApiError = e.body();
    Ok(Response::from_json(&body)?.with_status(e.status))
}
