//! The HTTP server: routes, the tower layers around them, signals.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::routing::{get, post};
use axum::{BoxError, Router, middleware};
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::backend::OrtRuntime;
use crate::batcher::BatchConfig;
use crate::config::{BackendPref, ServeConfig};
use crate::error::HttpError;
use crate::model_store::{LoadSettings, ModelStore};
use crate::rate_limit::{self, ClientRateLimit};
use crate::state::AppState;
use crate::{api, ops, telemetry};

/// Largest request body (bytes); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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
    if let Some(per_s) = cfg.rate_limit_per_s.and_then(NonZeroU32::new) {
        let burst = NonZeroU32::new(cfg.rate_limit_burst).unwrap_or(per_s);
        let rl = Arc::new(ClientRateLimit::new(per_s, burst, cfg.rate_limit_loopback));
        api = api.layer(middleware::from_fn_with_state(rl, rate_limit::limit));
    }
    let ops = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/admin/reload", post(ops::reload))
        .route("/admin/rollback", post(ops::rollback));
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

/// Runs the origin until SIGTERM/Ctrl-C, then drains in-flight requests.
///
/// # Errors
/// When the address cannot be bound or the configuration is unusable.
pub async fn serve(cfg: ServeConfig) -> anyhow::Result<()> {
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
    let state = Arc::new(AppState { store: store.clone(), models_dir: cfg.models.clone(), admin_token: cfg.admin_token.clone(), metrics });
    let listener = tokio::net::TcpListener::bind(cfg.addr).await?;
    tracing::info!(addr = %listener.local_addr()?, models = %cfg.models.display(), backend = ?cfg.backend, "origin listening; not ready until the model is loaded");

    // The first load runs while we already answer /healthz (and /readyz says 503).
    let first = store.clone();
    let dir = cfg.models.clone();
    tokio::spawn(async move {
        let _ = first.load(&dir).await;
    });
    #[cfg(unix)]
    {
        let store = store.clone();
        let dir = cfg.models.clone();
        if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading {}", dir.display());
                    let _ = store.load(&dir).await;
                }
            });
        }
    }

    let draining = Arc::new(tokio::sync::Notify::new());
    let notify = draining.clone();
    let server = axum::serve(listener, app(state, &cfg).into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
        terminate_signal().await;
        tracing::info!("shutdown signal: draining in-flight requests");
        notify.notify_one();
    });
    let grace = Duration::from_millis(cfg.shutdown_grace_ms);
    tokio::select! {
        r = server => r?,
        _ = async { draining.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_ms = cfg.shutdown_grace_ms, "grace period over, exiting with requests still in flight");
        }
    }
    tracing::info!("origin stopped");
    Ok(())
}
