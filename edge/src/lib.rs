//! # edgerec `edge` — the Cloudflare Worker
//!
//! Answers `GET`/`POST /v1/recommendations` (the origin's API, types and 4xx
//! errors from `shared`) and `GET /healthz`, near the shopper, whatever the
//! origin does. The failover path itself is `shared::failover_path`; this
//! crate wires it to workerd: `fetch` with a deadline ([`origin_client`]),
//! the Cache API ([`answer_cache`]), the embedded edge model ([`model`]),
//! `ctx.wait_until` for background work, and a cron handler that probes the
//! origin's `/readyz` to close an open breaker early.
//!
//! State (the model, the circuit breaker) lives per isolate: every isolate
//! learns about an origin outage on its own, after `BREAKER_FAILURES` misses.

mod answer_cache;
mod model;
mod origin_client;

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;

use shared::edge_config::EdgeConfig;
use shared::failover::{BreakerState, CircuitBreaker};
use shared::failover_path::{self, CachedAnswer, EdgeEnv, FollowUp, OriginFailure};
use shared::request::{self, MAX_BODY_BYTES, RequestError};
use shared::wire::{ApiError, RecommendationResponse, ValidRequest};
use worker::{Context, Env, Method, Request, Response, ScheduleContext, ScheduledEvent, event};

thread_local! {
    /// The isolate's circuit breaker around origin calls.
    static BREAKER: OnceCell<Rc<RefCell<CircuitBreaker>>> = const { OnceCell::new() };
}

fn breaker(cfg: &EdgeConfig) -> Rc<RefCell<CircuitBreaker>> {
    BREAKER.with(|b| Rc::clone(b.get_or_init(|| Rc::new(RefCell::new(CircuitBreaker::new(cfg.breaker))))))
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

/// Probes the origin's readiness on the cron schedule (`[triggers]` in
/// `wrangler.toml`) while the breaker is not closed, closing it as soon as
/// the origin is back.
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let Ok(cfg) = config(&env) else { return };
    let Some(base) = cfg.origin_url.clone() else { return };
    let breaker = breaker(&cfg);
    if matches!(breaker.borrow_mut().state(now_ms()), BreakerState::Closed { .. }) {
        return;
    }
    let ok = origin_client::ready(&base, cfg.deadline_ms.max(1_000)).await;
    failover_path::record_probe(&breaker, ok, now_ms());
    worker::console_log!("edgerec: origin readiness probe {}", if ok { "succeeded: breaker closed" } else { "failed" });
}

/// Dispatches by path and method; errors become JSON answers.
async fn route(mut req: Request, env: &Env, ctx: &Context, request_id: &str) -> Result<Response, RequestError> {
    let path = req.path();
    let method = req.method();
    match (path.as_str(), method) {
        ("/v1/recommendations", Method::Get) => {
            let url = req.url().map_err(internal)?;
            let parsed = request::parse_query(url.query().unwrap_or(""))?;
            recommend(&url, request::validate(parsed)?, env, ctx, request_id).await
        }
        ("/v1/recommendations", Method::Post) => {
            let content_type = req.headers().get("content-type").ok().flatten();
            if !request::is_json_content_type(content_type.as_deref()) {
                return Err(RequestError::new(415, "Content-Type must be application/json"));
            }
            let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<usize>().ok());
            if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
                return Err(RequestError::field(413, "body", format!("body is over {MAX_BODY_BYTES} bytes")));
            }
            let url = req.url().map_err(internal)?;
            let body = req.bytes().await.map_err(|e| RequestError::field(400, "body", format!("reading the body: {e}")))?;
            let parsed = request::parse_json(&body)?;
            recommend(&url, request::validate(parsed)?, env, ctx, request_id).await
        }
        ("/v1/recommendations", _) => method_not_allowed("GET, POST"),
        ("/healthz", Method::Get | Method::Head) => healthz(env),
        ("/healthz", _) => method_not_allowed("GET, HEAD"),
        _ => Err(RequestError::new(404, format!("no route for {path}"))),
    }
}

/// Liveness plus what an operator wants at a glance: model, breaker, config errors.
fn healthz(env: &Env) -> Result<Response, RequestError> {
    let model = model::get();
    let cfg = config(env);
    let breaker_state = cfg.as_ref().ok().map(|c| match breaker(c).borrow_mut().state(now_ms()) {
        BreakerState::Closed { .. } => "closed",
        BreakerState::Open { .. } => "open",
        BreakerState::HalfOpen { .. } => "half-open",
    });
    let ok = model.is_ok() && cfg.is_ok();
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unhealthy" },
        "model": match model.as_ref() {
            Ok(m) => serde_json::json!({ "name": "edge", "version": m.version, "dataset": m.dataset, "backend": model::BACKEND, "n_items": m.n_items(), "catalog_items": m.catalog_items() }),
            Err(e) => serde_json::json!({ "error": e }),
        },
        "breaker": breaker_state,
        "origin": cfg.as_ref().ok().and_then(|c| c.origin_url.clone()),
        "config_error": cfg.as_ref().err().map(ToString::to_string),
    });
    let response = Response::from_json(&body).map_err(internal)?;
    Ok(if ok { response } else { response.with_status(503) })
}

/// What `shared::failover_path` sees of the worker.
#[derive(Clone)]
struct WorkerEnv {
    model: Rc<Result<model::EdgeModel, String>>,
    origin_url: Option<String>,
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

    async fn origin(&self, query: &str, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
        let base = self.origin_url.as_deref().ok_or(OriginFailure::NotConfigured)?;
        origin_client::get_json(&format!("{base}/v1/recommendations?{query}"), &self.request_id, deadline_ms).await
    }

    fn edge_model(&self, req: &ValidRequest) -> Result<RecommendationResponse, String> {
        match self.model.as_ref() {
            Ok(m) => m.recommend(req),
            Err(e) => Err(e.clone()),
        }
    }

    fn popular(&self, req: &ValidRequest) -> RecommendationResponse {
        match self.model.as_ref() {
            Ok(m) => m.popular(req),
            // Unreachable in practice: a worker whose catalog fails to load fails its sha256 checks at build time too.
            Err(e) => RecommendationResponse {
                items: vec![],
                source: shared::wire::Source::Popular,
                model: shared::wire::ModelInfo { name: "none".into(), version: String::new(), backend: model::BACKEND.into() },
                warnings: vec![format!("edge model unavailable: {e}")],
            },
        }
    }

    fn knows_any(&self, history: &[String]) -> bool {
        self.model.as_ref().as_ref().is_ok_and(|m| m.knows_any(history))
    }
}

async fn recommend(url: &worker::Url, req: ValidRequest, env: &Env, ctx: &Context, request_id: &str) -> Result<Response, RequestError> {
    let cfg = config(env).map_err(|e| RequestError::new(500, e.to_string()))?;
    let breaker = breaker(&cfg);
    let wenv = WorkerEnv {
        model: model::get(),
        origin_url: cfg.origin_url.clone(),
        host_origin: url.origin().ascii_serialization(),
        request_id: request_id.to_string(),
    };
    let served = failover_path::serve(&wenv, &cfg, &breaker, &req).await;
    if let Some(f) = &served.origin_failure {
        if f.counts_against_origin() {
            worker::console_warn!("edgerec {request_id}: origin failed ({f}); answered from {:?}", served.body.source);
        }
    }
    let key = answer_cache::key_url(&wenv.host_origin, &request::canonical_query(&req));
    let ttl_s = cfg.cache_ttl_s();
    match served.follow_up.clone() {
        FollowUp::None => {}
        FollowUp::Store(body) => ctx.wait_until(async move {
            if let Err(e) = answer_cache::put(&key, &body, now_ms(), ttl_s).await {
                worker::console_warn!("edgerec: cache put failed: {e}");
            }
        }),
        follow @ (FollowUp::Revalidate | FollowUp::Probe) => {
            let (wenv, cfg, breaker, req) = (wenv.clone(), cfg.clone(), Rc::clone(&breaker), req.clone());
            ctx.wait_until(async move {
                let answer = if follow == FollowUp::Probe {
                    failover_path::probe(&wenv, &cfg, &breaker, &req).await
                } else {
                    failover_path::revalidate(&wenv, &cfg, &breaker, &req).await
                };
                if let Some(body) = answer {
                    if let Err(e) = answer_cache::put(&key, &body, now_ms(), ttl_s).await {
                        worker::console_warn!("edgerec: cache put failed: {e}");
                    }
                }
            });
        }
    }
    let mut response = Response::from_json(&served.body).map_err(internal)?;
    let headers = response.headers_mut();
    headers.set("x-rec-source", served.body.source.as_str()).map_err(internal)?;
    headers.set("server-timing", &served.timing.header()).map_err(internal)?;
    // Our own cache decides freshness; browsers and shared caches must not
    // hide a failover (or a recovery) from the shopper.
    headers.set("cache-control", "no-store").map_err(internal)?;
    headers.set("timing-allow-origin", "*").map_err(internal)?;
    Ok(response)
}

/// The incoming `x-request-id` when it is sane (≤ 128 visible ASCII chars), else a fresh one.
fn request_id(req: &Request) -> String {
    if let Some(id) = req.headers().get("x-request-id").ok().flatten() {
        if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
            return id;
        }
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
