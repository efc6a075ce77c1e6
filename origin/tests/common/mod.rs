//! Spawns the real `origin` binary on a free loopback port.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "test-admin-token";

pub struct Origin {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn movielens() -> PathBuf {
    let dir = repo().join("models/movielens");
    assert!(dir.join("manifest.json").exists(), "{} missing: run `cargo xtask test` (it trains first)", dir.display());
    dir
}

/// `libonnxruntime.so`: `ORT_DYLIB_PATH` when set (as the origin and xtask read it), else
/// the project's venv (set-up installs the onnxruntime wheel there).
pub fn ort_lib() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    let lib = repo().join(".venv/lib");
    for py in std::fs::read_dir(lib).ok()? {
        let capi = py.ok()?.path().join("site-packages/onnxruntime/capi");
        for f in std::fs::read_dir(&capi).ok()? {
            let p = f.ok()?.path();
            if p.file_name()?.to_str()?.starts_with("libonnxruntime.so") {
                return Some(p);
            }
        }
    }
    None
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Origin {
    pub async fn start(models: &Path, extra: &[&str]) -> Origin {
        let port = free_port();
        // tract unless the test picks a backend: deterministic and always available.
        let backend: &[&str] = if extra.contains(&"--backend") { &[] } else { &["--backend", "tract"] };
        let child = Command::new(env!("CARGO_BIN_EXE_origin"))
            .args(["serve", "--models"])
            .arg(models)
            .args(["--addr", &format!("127.0.0.1:{port}"), "--admin-token", TOKEN])
            // Reload tests copy model directories under the temp dir.
            .arg("--models-root")
            .arg(std::env::temp_dir())
            .args(backend)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("origin binary starts");
        let mut origin = Origin { child, base: format!("http://127.0.0.1:{port}"), client: reqwest::Client::new() };
        origin.wait_ready().await;
        origin
    }

    pub async fn wait_ready(&mut self) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("origin exited before it was ready: {status}");
            }
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(120), "origin not ready after 120 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` as the operator (admin token), as JSON.
    pub async fn json(&self, path: &str) -> serde_json::Value {
        self.client.get(self.url(path)).bearer_auth(TOKEN).send().await.unwrap().json().await.unwrap()
    }

    pub async fn post(&self, body: serde_json::Value) -> reqwest::Response {
        self.client.post(self.url("/v1/recommendations")).json(&body).send().await.unwrap()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill -{sig} failed");
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of a model directory in a fresh temp dir (under the test origins' models root).
pub fn copy_dir(from: &Path, name: &str) -> PathBuf {
    let to = std::env::temp_dir().join(format!("edgerec-origin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(from).unwrap() {
        let p = f.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
    to
}
