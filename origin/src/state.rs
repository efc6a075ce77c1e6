//! State shared by every handler.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::live_data::LiveData;
use crate::model_store::ModelStore;
use crate::registry_follow::Follower;

/// What handlers reach through `State`.
pub struct AppState {
    /// The serving model and its reload machinery.
    pub store: Arc<ModelStore>,
    /// Directory reloaded by SIGHUP and by `/admin/reload` without a body
    /// (`None` when the origin follows a registry).
    pub models_dir: Option<PathBuf>,
    /// `/admin/reload` paths must lie under it.
    pub models_root: PathBuf,
    /// Bearer token for `/admin/*`, `/metrics`, the detailed `/readyz`.
    pub admin_token: Option<String>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The event store and the live catalog.
    pub live: Arc<LiveData>,
    /// The registry follower (`--registry`), if any.
    pub follower: Option<Arc<Follower>>,
    /// Set by SIGTERM: `/readyz` answers 503 `draining` from then on.
    pub draining: AtomicBool,
}
