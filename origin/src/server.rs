//! The HTTP server: routes, the tower layers around them, the connection
//! loop (header-read timeout, connection cap, graceful drain), signals.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::routing::{get, post, put};
use axum::{BoxError, Router, middleware};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::backend::OrtRuntime;
use crate::batcher::BatchConfig;
use crate::config::{BackendPref, ServeConfig};
use crate::error::HttpError;
use crate::live_data::LiveData;
use crate::model_store::{LoadSettings, ModelStore};
use crate::rate_limit::{self, ClientRateLimit};
use crate::registry_follow::Follower;
use crate::state::AppState;
use crate::{api, edge_auth, events_api, ops, telemetry};
use shared::request::MAX_BODY_BYTES;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Turns errors of the tower layers into JSON answers: shed → 503 + Retry-After, deadline → 504.
async fn layer_error(err: BoxError) -> HttpError {
    if err.is::<tower::load_shed::error::Overloaded>() {
        metrics::counter!("requests_shed_total", "reason" => "concurrency").increment(1);
        HttpError::overloaded("server is at its concurrency limit, retry shortly")
    } else if err.is::<tower::timeout::error::Elapsed>() {
        HttpError::new(StatusCode::GATEWAY_TIMEOUT, "request deadline exceeded")
    } else {
        HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("unhandled: {err}"))
    }
}

/// The whole application: routes and layers.
pub fn app(state: Arc<AppState>, cfg: &ServeConfig) -> Router {
    let mut api = Router::new()
        .route("/v1/recommendations", get(api::get_recommendations).post(api::post_recommendations))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(cfg.max_concurrency.max(1)))
                .timeout(Duration::from_millis(cfg.request_timeout_ms)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    if let Some(per_s) = NonZeroU32::new(cfg.rate_limit_per_s) {
        let burst = NonZeroU32::new(cfg.rate_limit_burst).unwrap_or(per_s);
        let rl = Arc::new(ClientRateLimit::new(per_s, burst, cfg.rate_limit_loopback));
        let pruned = Arc::downgrade(&rl);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(30));
            loop {
                every.tick().await;
                // The router (and its limiter) is gone: nothing left to prune.
                let Some(rl) = pruned.upgrade() else { break };
                metrics::gauge!("rate_limit_clients").set(rl.prune() as f64);
            }
        });
        api = api.layer(middleware::from_fn_with_state(rl, rate_limit::limit));
    }
    // Events and the edge's catalog sync: the edge credential, no per-address
    // limit (the edge's queue consumer sends every shopper's batches; each
    // shopper is limited inside), a deadline for a store under load.
    let mut events = Router::new()
        .route("/v1/events", post(events_api::post_events))
        .route("/v1/catalog/changes", get(events_api::catalog_changes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(layer_error))
                .load_shed()
                .layer(tower::limit::GlobalConcurrencyLimitLayer::new(cfg.max_concurrency.max(1)))
                .timeout(Duration::from_secs(10)),
        )
        .layer(axum::extract::DefaultBodyLimit::max(shared::events::MAX_EVENTS_BODY_BYTES));
    // Outside the rate limit: it marks the requests whose forwarded address it may trust.
    if let Some(key) = cfg.edge_key.as_deref().filter(|k| !k.is_empty()) {
        api = api.layer(middleware::from_fn_with_state(Arc::<str>::from(key), edge_auth::require));
        events = events.layer(middleware::from_fn_with_state(Arc::<str>::from(key), edge_auth::require));
    }
    let api = api.merge(events);
    let ops = Router::new().route("/healthz", get(ops::healthz)).route("/readyz", get(ops::readyz)).route("/metrics", get(ops::metrics)).merge(
        // The token is checked before any handler reads a body: a stranger's
        // trickling 2 MB upload cannot hold a connection slot here.
        Router::new()
            .route("/admin/reload", post(ops::reload))
            .route("/admin/rollback", post(ops::rollback))
            .merge(
                Router::new()
                    .route("/v1/items", put(events_api::put_items))
                    .route("/v1/items/{id}", put(events_api::put_item).delete(events_api::delete_item))
                    .layer(axum::extract::DefaultBodyLimit::max(events_api::MAX_ITEMS_BODY_BYTES)),
            )
            .route_layer(middleware::from_fn_with_state(state.clone(), ops::require_admin)),
    );
    let cors = if cfg.cors_origins.is_empty() {
        CorsLayer::new() // no origin allowed: browsers may not call us cross-origin
    } else {
        let origins: Vec<_> = cfg.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, REQUEST_ID])
            .expose_headers([REQUEST_ID, HeaderName::from_static("x-rec-source")])
    };
    api.merge(ops)
        .fallback(|| async { HttpError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async { HttpError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route") })
        .with_state(state)
        .layer(middleware::from_fn(telemetry::track))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
                    tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(cors),
        )
}

async fn terminate_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Resolves `delay` after SIGTERM/Ctrl-C; meanwhile `/readyz` says 503
/// `draining` and requests are still answered, so a load balancer that polls
/// readiness (a Service's endpoints) stops sending before the port closes.
async fn drain_on_terminate(state: Arc<AppState>, delay: Duration) {
    terminate_signal().await;
    state.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    tracing::info!(delay_ms = delay.as_millis() as u64, "shutdown signal: not ready, still answering for the drain delay");
    tokio::time::sleep(delay).await;
}

/// Loads ONNX Runtime if configured (explicit `ort-*` preferences fail hard without it).
fn load_ort(cfg: &ServeConfig) -> anyhow::Result<Option<OrtRuntime>> {
    let Some(path) = &cfg.ort_lib else {
        if matches!(cfg.backend, BackendPref::OrtCpu | BackendPref::OrtCuda) {
            anyhow::bail!("--backend {:?} needs --ort-lib or ORT_DYLIB_PATH", cfg.backend);
        }
        return Ok(None);
    };
    if cfg.backend == BackendPref::Tract {
        return Ok(None);
    }
    match OrtRuntime::load(path) {
        Ok(rt) => Ok(Some(rt)),
        Err(e) if cfg.backend == BackendPref::Auto => {
            tracing::warn!(error = %e, "ONNX Runtime unavailable, tract will serve");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Opens the event store, reads the live catalog and starts its poller.
///
/// # Errors
/// When the store cannot be opened (a bad URL, PostgreSQL unreachable).
pub async fn open_live_data(cfg: &ServeConfig) -> anyhow::Result<Arc<LiveData>> {
    let url = cfg.events.clone();
    let store = tokio::task::spawn_blocking(move || event_store::open(&url)).await?.map_err(|e| anyhow::anyhow!("--events (EDGEREC_EVENTS): {e}"))?;
    let per_s = NonZeroU32::new(cfg.events_per_shopper_per_s).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(cfg.events_per_shopper_burst).unwrap_or(per_s);
    let live = Arc::new(LiveData::new(Arc::from(store), per_s, burst));
    let first = live.clone();
    tokio::task::spawn_blocking(move || first.catch_up()).await?.map_err(|e| anyhow::anyhow!("reading the live catalog: {e}"))?;
    live.spawn_poller(Duration::from_millis(cfg.catalog_poll_ms));
    tracing::info!(store = live.store.kind(), catalog_version = live.catalog().version(), "event store open");
    Ok(live)
}

/// What one client connection may cost.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Open connections from one client ([`rate_limit::client_key`]: an
    /// address, an IPv6 /64) at most; past it its new ones are closed at once.
    pub max_per_client: usize,
    /// Longest wait for a request's headers, also between requests on a
    /// kept-alive connection (hyper's `header_read_timeout`): a slowloris
    /// client, or an idle one, is closed after it.
    pub header_read_timeout: Duration,
    /// Open connections at most; past it a new one is closed at once.
    pub max_connections: usize,
}

/// Open connections per client key; a [`ClientSlot`] gives its one back when dropped.
#[derive(Default)]
struct ClientSlots(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

/// One open connection of one client.
struct ClientSlot {
    slots: Arc<ClientSlots>,
    key: std::net::IpAddr,
}

impl ClientSlots {
    /// A slot for a connection from `ip`, unless its client already holds `max`.
    fn acquire(self: &Arc<Self>, ip: std::net::IpAddr, max: usize) -> Option<ClientSlot> {
        let key = rate_limit::client_key(ip);
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ClientSlot { slots: self.clone(), key })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.slots.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key); // the table holds only clients with open connections
            }
        }
    }
}

/// Accepts HTTP/1.1 connections on `listener` until `shutdown` resolves, then
/// stops accepting and waits up to `grace` for in-flight requests.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
    grace: Duration,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let per_client = Arc::new(ClientSlots::default());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(client_slot) = per_client.acquire(peer.ip(), limits.max_per_client) else {
            metrics::counter!("connections_refused_total", "reason" => "per_client").increment(1);
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            metrics::counter!("connections_refused_total", "reason" => "total").increment(1);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: axum::http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _slots = (slot, client_slot);
            metrics::gauge!("connections_open").increment(1.0);
            let _ = connection.await;
            metrics::gauge!("connections_open").decrement(1.0);
        });
    }
    drop(listener);
    tracing::info!("no longer accepting: draining in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over, exiting with requests still in flight");
        }
    }
}

/// Runs the origin until SIGTERM/Ctrl-C, then drains in-flight requests.
///
/// # Errors
/// When the address cannot be bound or the configuration is unusable.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
    cfg.validate()?;
    let metrics = telemetry::init_metrics()?;
    let settings = LoadSettings {
        backend: cfg.backend,
        ort: load_ort(&cfg)?,
        batch: BatchConfig {
            max_batch: cfg.max_batch.max(1),
            max_queue_delay: Duration::from_micros(cfg.max_queue_delay_us),
            workers: cfg.inference_workers.max(1),
            queue_capacity: cfg.queue_capacity.max(1),
        },
    };
    let store = Arc::new(ModelStore::new(settings));
    let live = open_live_data(&cfg).await?;
    let follower =
        cfg.registry.as_ref().map(|root| Follower::new(root.clone(), cfg.registry_track, Duration::from_millis(cfg.registry_poll_ms), store.clone()));
    let state = Arc::new(AppState {
        store: store.clone(),
        models_dir: cfg.models.clone(),
        models_root: cfg.models_root(),
        admin_token: cfg.admin_token.clone(),
        metrics,
        live,
        follower: follower.clone(),
        draining: AtomicBool::new(false),
    });
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    let source = cfg.models.as_ref().or(cfg.registry.as_ref()).map(|p| p.display().to_string()).unwrap_or_default();
    tracing::info!(addr = %listener.local_addr()?, models = %source, backend = ?cfg.backend, "origin listening; not ready until the model is loaded");

    // The first load runs while we already answer /healthz (and /readyz says 503).
    if let Some(follower) = follower {
        tokio::spawn(follower.run());
    }
    if let Some(dir) = cfg.models.clone() {
        let first = store.clone();
        let first_dir = dir.clone();
        tokio::spawn(async move {
            let _ = first.load(&first_dir).await;
        });
        #[cfg(unix)]
        {
            let store = store.clone();
            if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!("SIGHUP: reloading {}", dir.display());
                        let _ = store.load(&dir).await;
                    }
                });
            }
        }
    }

    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(cfg.header_read_timeout_ms.max(1)),
        max_connections: cfg.max_connections.max(1),
        max_per_client: cfg.max_connections_per_client.max(1),
    };
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    let delay = Duration::from_millis(cfg.shutdown_delay_ms);
    let router = app(state.clone(), &cfg);
    serve_connections(listener, router, limits, drain_on_terminate(state, delay), grace).await;
    tracing::info!("origin stopped");
    Ok(())
}
