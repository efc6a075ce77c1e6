//! The real processes: the `origin` binary and the worker under `wrangler dev`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository").to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"))
}

/// A binary (or `examples/<name>`) of this build's dev profile, under Cargo's target directory.
pub fn debug_bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// The origin binary under test: `EDGEREC_ORIGIN_BIN` (e.g. a release build), else this build's.
pub fn origin_bin() -> PathBuf {
    std::env::var_os("EDGEREC_ORIGIN_BIN").map(PathBuf::from).unwrap_or_else(|| debug_bin("origin"))
}

/// A free loopback port (bound, read, released: good enough on a test machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Polls `url` until it answers 2xx; returns how long that first good answer took.
async fn wait_for(child: &mut Child, what: &str, url: &str, limit: Duration) -> Duration {
    let client = reqwest::Client::new();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            panic!("{what} exited before it answered {url}: {status}");
        }
        let asked = Instant::now();
        if client.get(url).timeout(Duration::from_secs(5)).send().await.is_ok_and(|r| r.status().is_success()) {
            return asked.elapsed();
        }
        assert!(started.elapsed() < limit, "{what} did not answer {url} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `libonnxruntime.so`: `ORT_DYLIB_PATH` when set, else the project's venv
/// (set-up installs the onnxruntime wheel there). xtask has its own copy: it
/// must build before anything heavy, so it does not link this crate.
pub fn ort_lib() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    for py in std::fs::read_dir(repo().join(".venv/lib")).ok()?.flatten() {
        let capi = py.path().join("site-packages/onnxruntime/capi");
        for f in std::fs::read_dir(&capi).ok()?.flatten() {
            if f.file_name().to_string_lossy().starts_with("libonnxruntime.so") {
                return Some(f.path());
            }
        }
    }
    None
}

/// Resident memory of process `pid`, KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// The origin binary (`EDGEREC_ORIGIN_BIN`, else `target/debug/origin`) on
/// the MovieLens model with the tract backend; killed on drop.
pub struct Origin {
    child: Child,
    /// Port it listens on.
    pub port: u16,
    /// Its own event store (`sqlite:` in a directory of its own) unless the
    /// caller named one with `--events`.
    _events: Option<TempDir>,
}

impl Origin {
    /// Starts it on `port` and waits for `/readyz`.
    ///
    /// # Panics
    /// If the binary or the model is missing, or it is not ready within 60 s.
    pub async fn start_on(port: u16) -> Origin {
        Origin::start_with(port, &repo().join("models/movielens"), &[]).await
    }

    /// Starts it on `port` serving `models`, with extra `origin serve` flags.
    ///
    /// # Panics
    /// As [`Origin::start_on`].
    pub async fn start_with(port: u16, models: &std::path::Path, extra: &[&str]) -> Origin {
        Origin::spawn(&origin_bin(), port, models, extra).await
    }

    /// Starts the origin binary `bin` on `port` serving `models` with extra
    /// `origin serve` flags (tract unless they name a `--backend`), and waits
    /// up to 120 s for `/readyz`.
    ///
    /// # Panics
    /// If the binary or the model is missing, or it is not ready in time.
    pub async fn spawn(bin: &std::path::Path, port: u16, models: &std::path::Path, extra: &[&str]) -> Origin {
        assert!(models.join("manifest.json").exists(), "{} missing: run `cargo xtask train`", models.display());
        Origin::spawn_source(bin, port, &["--models".into(), models.display().to_string()], extra).await
    }

    /// Starts this build's origin on `port` following the model registry at
    /// `registry` (`--registry`), with extra flags (e.g. `--registry-track
    /// canary`), and waits up to 120 s for `/readyz`.
    ///
    /// # Panics
    /// As [`Origin::spawn`].
    pub async fn spawn_registry(port: u16, registry: &std::path::Path, extra: &[&str]) -> Origin {
        Origin::spawn_source(&origin_bin(), port, &["--registry".into(), registry.display().to_string(), "--registry-poll-ms".into(), "200".into()], extra)
            .await
    }

    async fn spawn_source(bin: &std::path::Path, port: u16, source: &[String], extra: &[&str]) -> Origin {
        assert!(bin.exists(), "{} missing: run `cargo xtask test` (it builds the workspace)", bin.display());
        // tract unless the caller picks a backend: deterministic and always available.
        let backend: &[&str] = if extra.contains(&"--backend") { &[] } else { &["--backend", "tract"] };
        // Each origin its own store, so one test's catalog changes never reach another's answers.
        let events = (!extra.contains(&"--events")).then(|| {
            // Per start, not per port: an origin restarted on its port must not share (and, when the
            // old one is dropped, lose) its predecessor's directory.
            static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("edgerec-origin-{}-{port}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        });
        let store: Vec<String> = events.iter().flat_map(|d| ["--events".to_string(), format!("sqlite:{}", d.0.join("events.sqlite").display())]).collect();
        let mut child = Command::new(bin)
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .args(source)
            .args(backend)
            .args(&store)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("origin starts");
        wait_for(&mut child, "origin", &format!("http://127.0.0.1:{port}/readyz"), Duration::from_secs(120)).await;
        Origin { child, port, _events: events }
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("poll origin")
    }

    /// Starts it on a free port.
    pub async fn start() -> Origin {
        Origin::start_on(free_port()).await
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Resident memory of the process, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.child.id())
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops it as an orchestrator does (SIGTERM: it drains in-flight
    /// requests, then exits) and waits for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    /// Kills it at once (SIGKILL): connections are refused from now on.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The worker under `wrangler dev` (local workerd), built beforehand by
/// `cargo xtask build-edge`, with its own cache state; killed on drop.
pub struct Edge {
    child: Child,
    /// Port it listens on.
    pub port: u16,
    _state: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Edge {
    /// Starts `wrangler dev` with `vars` overriding `wrangler.toml`'s `[vars]`.
    ///
    /// # Panics
    /// If the worker is not built, wrangler is not installed, or it does not answer `/healthz` within 90 s.
    pub async fn start(vars: &[(&str, &str)]) -> Edge {
        Edge::start_timed(vars).await.0
    }

    /// [`Edge::start`], also returning how long the first good `/healthz`
    /// answer took (the isolate's start-up, model included, when workerd
    /// starts it on the first request).
    ///
    /// # Panics
    /// As [`Edge::start`].
    pub async fn start_timed(vars: &[(&str, &str)]) -> (Edge, Duration) {
        assert!(repo().join("edge/build/index.js").exists(), "the worker is not built: run `cargo xtask build-edge`");
        Edge::start_config("wrangler.toml", vars).await
    }

    /// `wrangler dev --config <config>` (relative to the repository) with
    /// `vars`, and how long its first good `/healthz` answer took.
    ///
    /// # Panics
    /// If wrangler is not installed or the worker does not answer `/healthz` within 90 s.
    pub async fn start_config(config: &str, vars: &[(&str, &str)]) -> (Edge, Duration) {
        let root = repo();
        let wrangler = root.join("node_modules/.bin/wrangler");
        assert!(wrangler.exists(), "wrangler is not installed: run `cargo xtask setup`");
        let port = free_port();
        let state = std::env::temp_dir().join(format!("edgerec-e2e-{}-{port}", std::process::id()));
        let mut cmd = Command::new(wrangler);
        cmd.args(["dev", "--config", config, "--ip", "127.0.0.1", "--port", &port.to_string(), "--inspector-port", &free_port().to_string()])
            .args(["--show-interactive-dev-session=false", "--log-level", "warn", "--persist-to"])
            .arg(&state)
            .current_dir(&root)
            .env("EDGEREC_SKIP_EDGE_BUILD", "1")
            .env("WRANGLER_SEND_METRICS", "false")
            .env("CLOUDFLARE_CF_FETCH_ENABLED", "false")
            .env("CI", "true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so dropping it also stops the workerd it spawns.
            .process_group(0);
        for (k, v) in vars {
            cmd.arg("--var").arg(format!("{k}:{v}"));
        }
        let mut child = cmd.spawn().expect("wrangler dev starts");
        let first = wait_for(&mut child, "wrangler dev", &format!("http://127.0.0.1:{port}/healthz"), Duration::from_secs(90)).await;
        (Edge { child, port, _state: TempDir(state) }, first)
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
