//! Every origin setting, as a flag and an environment variable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Which inference backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendPref {
    /// ONNX Runtime with CUDA, else ONNX Runtime on CPU, else tract.
    Auto,
    /// ONNX Runtime with the CUDA execution provider; fail if it cannot register.
    OrtCuda,
    /// ONNX Runtime on CPU; fail if the library is missing.
    OrtCpu,
    /// tract (pure Rust, always available).
    Tract,
}

/// The registry pointer an origin follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Track {
    /// `CURRENT`, the version every region serves.
    Stable,
    /// `CANARY` while a canary is under way, else `CURRENT`.
    Canary,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line (for log shippers).
    Json,
    /// Human-readable.
    Pretty,
}

/// Shortest accepted admin token and edge credential, bytes: a secret a
/// stranger could guess (`admin`, `x`) is no secret (128 bits as hex is 32).
pub const MIN_SECRET_BYTES: usize = 16;

impl ServeConfig {
    /// Refuses settings that would run silently wrong.
    ///
    /// # Errors
    /// The first offending setting, named by its flag and variable.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (flag, value) in [("--admin-token (EDGEREC_ADMIN_TOKEN)", &self.admin_token), ("--edge-key (EDGEREC_EDGE_KEY)", &self.edge_key)] {
            if let Some(v) = value
                && v.len() < MIN_SECRET_BYTES
            {
                anyhow::bail!("{flag} is {} bytes, at least {MIN_SECRET_BYTES} are required (e.g. `openssl rand -hex 16`)", v.len());
            }
        }
        if self.max_connections_per_client == 0 || self.max_connections == 0 {
            anyhow::bail!("--max-connections and --max-connections-per-client must be at least 1");
        }
        if self.events_per_shopper_per_s == 0 || self.events_per_shopper_burst == 0 || self.catalog_poll_ms == 0 {
            anyhow::bail!("--events-per-shopper-per-s, --events-per-shopper-burst and --catalog-poll-ms must be at least 1");
        }
        if self.registry_poll_ms == 0 {
            anyhow::bail!("--registry-poll-ms (EDGEREC_REGISTRY_POLL_MS) must be at least 1");
        }
        if self.request_timeout_ms == 0 {
            anyhow::bail!("--request-timeout-ms (EDGEREC_REQUEST_TIMEOUT_MS) must be at least 1");
        }
        Ok(())
    }

    /// The directory reload paths must lie under: `--models-root`, else the
    /// registry's `versions/`, else the parent of `--models`.
    pub fn models_root(&self) -> PathBuf {
        if let Some(root) = &self.models_root {
            return root.clone();
        }
        if let Some(registry) = &self.registry {
            return registry.join("versions");
        }
        self.models.as_deref().and_then(Path::parent).map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

/// `origin serve` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Model directory written by the trainer (manifest.json, full.onnx, catalog.json).
    #[arg(long, env = "EDGEREC_MODELS", required_unless_present = "registry", conflicts_with = "registry")]
    pub models: Option<PathBuf>,
    /// A model registry to follow instead of one directory: the origin serves
    /// the version its pointer names (`--registry-track`), polled every
    /// `--registry-poll-ms`, each change a verified hot reload.
    #[arg(long, env = "EDGEREC_REGISTRY")]
    pub registry: Option<PathBuf>,
    /// Which pointer this origin follows: `stable` (`CURRENT`), or `canary`
    /// (`CANARY` while one is set, else `CURRENT`) in the canary region.
    #[arg(long, env = "EDGEREC_REGISTRY_TRACK", value_enum, default_value = "stable")]
    pub registry_track: Track,
    /// How often the registry's pointer is read (ms).
    #[arg(long, env = "EDGEREC_REGISTRY_POLL_MS", default_value_t = 1000)]
    pub registry_poll_ms: u64,
    /// Listen address.
    #[arg(long, env = "EDGEREC_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Inference backend.
    #[arg(long, env = "EDGEREC_BACKEND", value_enum, default_value = "auto")]
    pub backend: BackendPref,
    /// Path of `libonnxruntime.so` (from the `onnxruntime` or `onnxruntime-gpu` wheel).
    #[arg(long, env = "ORT_DYLIB_PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Largest micro-batch (requests per model run).
    #[arg(long, env = "EDGEREC_MAX_BATCH", default_value_t = 32)]
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch (µs); 0 = run as soon as a worker is free.
    #[arg(long, env = "EDGEREC_MAX_QUEUE_DELAY_US", default_value_t = 0)]
    pub max_queue_delay_us: u64,
    /// Model runs in parallel (each on its own blocking thread and session).
    #[arg(long, env = "EDGEREC_INFERENCE_WORKERS", default_value_t = 2)]
    pub inference_workers: usize,
    /// Requests waiting for a batch slot before new ones are shed (503).
    #[arg(long, env = "EDGEREC_QUEUE_CAPACITY", default_value_t = 1024)]
    pub queue_capacity: usize,
    /// Whole-request deadline (ms); past it the answer is 504 and the queued
    /// model run is skipped. Near the edge's 150 ms deadline: later answers
    /// reach nobody.
    #[arg(long, env = "EDGEREC_REQUEST_TIMEOUT_MS", default_value_t = 250)]
    pub request_timeout_ms: u64,
    /// Recommendation requests in flight before new ones are shed with 503 + Retry-After.
    #[arg(long, env = "EDGEREC_MAX_CONCURRENCY", default_value_t = 256)]
    pub max_concurrency: usize,
    /// Per-client requests per second (token bucket; a client is the shopper
    /// address a vouched edge forwards, else the socket's, an IPv6 one by its
    /// /64); 0 = no rate limit. On by default: every request a stranger sends
    /// past the edge's cache (an unknown-only history is never cached) costs
    /// a model run here.
    #[arg(long, env = "EDGEREC_RATE_LIMIT_PER_S", default_value_t = 50)]
    pub rate_limit_per_s: u32,
    /// Burst size of the per-client rate limit.
    #[arg(long, env = "EDGEREC_RATE_LIMIT_BURST", default_value_t = 100)]
    pub rate_limit_burst: u32,
    /// Apply the rate limit to loopback clients too (off: the local edge and tests are exempt).
    #[arg(long, env = "EDGEREC_RATE_LIMIT_LOOPBACK", default_value_t = false)]
    pub rate_limit_loopback: bool,
    /// Browser origins allowed by CORS (comma-separated), e.g. the shop's `https://shop.example`.
    #[arg(long, env = "EDGEREC_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Bearer token for /admin/*, /metrics and the detailed /readyz; unset =
    /// those answer 401 (the public /readyz still says ready or not).
    #[arg(long, env = "EDGEREC_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Edge credential: when set, /v1/* answers only requests carrying it in
    /// `x-edgerec-edge-key` (the worker's ORIGIN_SECRET).
    #[arg(long, env = "EDGEREC_EDGE_KEY", hide_env_values = true)]
    pub edge_key: Option<String>,
    /// Directory `/admin/reload` paths must lie under; default: the parent of --models.
    #[arg(long, env = "EDGEREC_MODELS_ROOT")]
    pub models_root: Option<PathBuf>,
    /// A client must send a request's headers within this long (ms), also
    /// between requests on a kept-alive connection; then it is closed.
    #[arg(long, env = "EDGEREC_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,
    /// Open connections; past it new ones are closed at once (keep it under `ulimit -n`).
    #[arg(long, env = "EDGEREC_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Open connections from one client address (an IPv6 client by its /64);
    /// past it its new ones are closed at once, so one client cannot hold
    /// every slot (keep it above what one edge location opens: hundreds).
    #[arg(long, env = "EDGEREC_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 512)]
    pub max_connections_per_client: usize,
    /// How long SIGTERM waits for in-flight requests before exiting (ms).
    #[arg(long, env = "EDGEREC_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// After SIGTERM, how long `/readyz` says 503 `draining` while the origin
    /// still accepts and answers, before it stops accepting (ms): the time a
    /// load balancer (a Kubernetes Service's endpoints) needs to see it go.
    /// The pod's `terminationGracePeriodSeconds` must exceed this plus
    /// `--shutdown-grace-ms`.
    #[arg(long, env = "EDGEREC_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,
    /// The event and catalog store: `sqlite:PATH` (embedded, created if
    /// missing) or `postgres://user:password@host:port/db` (shared by several origins).
    #[arg(long, env = "EDGEREC_EVENTS", default_value = "sqlite:events.sqlite")]
    pub events: String,
    /// Events per second one shopper (user or session) may send; more are refused (`rate_limited`).
    #[arg(long, env = "EDGEREC_EVENTS_PER_SHOPPER_PER_S", default_value_t = 20)]
    pub events_per_shopper_per_s: u32,
    /// Burst of the per-shopper event limit.
    #[arg(long, env = "EDGEREC_EVENTS_PER_SHOPPER_BURST", default_value_t = 500)]
    pub events_per_shopper_burst: u32,
    /// How often the live catalog asks the store for changes (ms): a change
    /// written through another origin is honoured here within it.
    #[arg(long, env = "EDGEREC_CATALOG_POLL_MS", default_value_t = 1000)]
    pub catalog_poll_ms: u64,
    /// Log format.
    #[arg(long, env = "EDGEREC_LOG_FORMAT", value_enum, default_value = "json")]
    pub log_format: LogFormat,
}
