//! The real `origin` binary of this build on a free loopback port, started
//! by the end-to-end suites' harness (`e2e::procs`), with the operator token
//! and helpers for the API and the operator endpoints.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub use e2e::procs::repo;

pub const TOKEN: &str = "test-admin-token";

pub struct Origin {
    pub process: e2e::Origin,
    pub base: String,
    pub client: reqwest::Client,
}

pub fn movielens() -> PathBuf {
    repo().join("models/movielens")
}

impl Origin {
    /// Starts it with the admin token and the temp dir as models root (reload
    /// tests copy model directories there), tract unless `extra` names a backend.
    pub async fn start(models: &Path, extra: &[&str]) -> Origin {
        let root = std::env::temp_dir().display().to_string();
        let mut args = vec!["--admin-token", TOKEN, "--models-root", root.as_str()];
        args.extend_from_slice(extra);
        let port = e2e::procs::free_port();
        let process = e2e::Origin::spawn(Path::new(env!("CARGO_BIN_EXE_origin")), port, models, &args).await;
        Origin { base: process.url(), process, client: reqwest::Client::new() }
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
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.process.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -{sig} failed");
    }

    pub async fn metrics(&self) -> String {
        self.client.get(self.url("/metrics")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap()
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
