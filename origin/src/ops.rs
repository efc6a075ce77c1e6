//! Operator endpoints: liveness, readiness, metrics, reload and rollback.
//!
//! Public: `/healthz` and `/readyz` (ready or not, nothing more). Behind the
//! admin token: `/metrics`, the detailed `/readyz` (model directory, ONNX
//! Runtime library, last reload error) and `/admin/*`.

use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::error::HttpError;
use crate::model_store::{LoadedModel, resolve_under_root};
use crate::state::AppState;

/// `GET /healthz`: the process is alive and answering (liveness).
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

fn describe(m: &LoadedModel) -> serde_json::Value {
    json!({
        "version": m.version(),
        "dataset": m.manifest.dataset,
        "backend": m.backend,
        "backend_reason": m.backend_reason,
        "items": m.policy.n_items(),
        "created_at": m.manifest.created_at,
        "dir": m.dir.display().to_string(),
        "load_seconds": m.load_seconds,
    })
}

/// `GET /readyz`: 200 once a model is loaded and warmed, else 503 (readiness):
/// `loading` before, `draining` after SIGTERM (requests are still answered
/// meanwhile, see `--shutdown-delay-ms`).
/// With the admin token: the model, its directory and backend, the rollback
/// history, the ONNX Runtime library and the last reload error.
pub async fn readyz(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let current = state.store.current();
    let (status, word) = readiness(&state);
    if authorize(&state, &headers).is_err() {
        return (status, Json(json!({ "status": word }))).into_response();
    }
    let body = json!({
        "status": word,
        "model": current.as_deref().map(describe),
        "history": state.store.history(),
        "last_reload_error": state.store.last_error(),
        "onnxruntime": state.store.ort_description(),
        "registry": state.follower.as_ref().map(|f| f.status()),
    });
    (status, Json(body)).into_response()
}

/// What `/readyz` answers: 200 `ready`, or 503 `loading` / `draining`.
fn readiness(state: &AppState) -> (StatusCode, &'static str) {
    let draining = state.draining.load(std::sync::atomic::Ordering::Relaxed);
    match (state.store.current().is_some(), draining) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "draining"),
        (true, false) => (StatusCode::OK, "ready"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "loading"),
    }
}

/// `GET /metrics` (admin token): Prometheus text format. `origin_ready` is
/// what `/readyz` would answer at this scrape (1 ready, 0 loading or draining).
pub async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, HttpError> {
    authorize(&state, &headers)?;
    metrics::gauge!("origin_ready").set(if readiness(&state).0 == StatusCode::OK { 1.0 } else { 0.0 });
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response())
}

/// Largest `/admin/reload` body, bytes: `{"path": …}` and nothing more.
pub const ADMIN_BODY_BYTES: usize = 4 * 1024;

/// Longest an operator's request body may take to arrive.
pub const ADMIN_BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// Middleware of `/admin/*`: 401 before any body is read. (The handler used
/// to read up to 2 MB of body, with no time limit, before it checked the
/// token: 4,096 strangers trickling bodies held every connection slot.)
pub async fn require_admin(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match authorize(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => {
            metrics::counter!("requests_refused_total", "reason" => "admin_token").increment(1);
            e.into_response()
        }
    }
}

/// Reads an operator's body: at most [`ADMIN_BODY_BYTES`], within [`ADMIN_BODY_TIMEOUT`].
async fn read_admin_body(body: Body) -> Result<axum::body::Bytes, HttpError> {
    match tokio::time::timeout(ADMIN_BODY_TIMEOUT, axum::body::to_bytes(body, ADMIN_BODY_BYTES)).await {
        Err(_) => Err(HttpError::field(StatusCode::REQUEST_TIMEOUT, "body", format!("the body did not arrive within {} s", ADMIN_BODY_TIMEOUT.as_secs()))),
        Ok(Err(e)) => Err(HttpError::field(StatusCode::PAYLOAD_TOO_LARGE, "body", format!("body unreadable or over {ADMIN_BODY_BYTES} bytes: {e}"))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    let unauthorized = || HttpError::new(StatusCode::UNAUTHORIZED, "operator endpoints need `Authorization: Bearer <EDGEREC_ADMIN_TOKEN>`");
    let expected = state.admin_token.as_deref().ok_or_else(unauthorized)?;
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).ok_or_else(unauthorized)?;
    // Constant-time: the comparison must not leak how much of the token matched.
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) { Ok(()) } else { Err(unauthorized()) }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReloadRequest {
    /// Model directory to load (under the models root); default: the one the server was started with.
    path: Option<PathBuf>,
}

/// `POST /admin/reload` (`{"path"?: "models/…"}`): load, verify, warm, swap.
/// A `path` outside the models root, or a refused model, answers 422 with
/// the reason; the current model keeps serving. The load runs to its end
/// even if the caller hangs up (its outcome is logged and in `/readyz`).
pub async fn reload(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Result<Response, HttpError> {
    authorize(&state, &headers)?;
    let body = read_admin_body(body).await?;
    let req: ReloadRequest = if body.is_empty() {
        ReloadRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, "path", format!("body must be {{\"path\": \"<model dir>\"}}: {e}")))?
    };
    let dir = match req.path {
        None => state.models_dir.clone().ok_or_else(|| {
            HttpError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "path",
                "this origin follows a model registry: move its pointer, or name a version directory in `path`",
            )
        })?,
        Some(p) => resolve_under_root(&state.models_root, &p).map_err(|e| HttpError::field(StatusCode::UNPROCESSABLE_ENTITY, "path", e.to_string()))?,
    };
    // A task of its own: were the caller to disconnect, dropping this handler
    // must not throw a finished load away half-way through its swap.
    let store = state.store.clone();
    let load = tokio::spawn(async move {
        let outcome = store.load(&dir).await;
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, dir = %dir.display(), "admin reload refused");
        }
        outcome
    });
    let outcome = load.await.map_err(|e| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reload task failed: {e}")))?;
    match outcome {
        Ok(m) => Ok(Json(json!({ "status": "reloaded", "model": describe(&m) })).into_response()),
        Err(reason) => {
            let serving = state.store.current().map(|m| m.version().to_string());
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": format!("reload refused: {reason}"), "field": "path", "serving": serving })))
                .into_response())
        }
    }
}

/// `POST /admin/rollback`: back to the newest good version before the current
/// one; repeated, further back (409 when there is none, or it can no longer load).
pub async fn rollback(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, HttpError> {
    authorize(&state, &headers)?;
    let m = state.store.rollback().await.map_err(|e| HttpError::new(StatusCode::CONFLICT, e.to_string()))?;
    Ok(Json(json!({ "status": "rolled back", "model": describe(&m) })).into_response())
}
