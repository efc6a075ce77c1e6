//! A real Prometheus (Debian's) over live origins: the repository's
//! `deploy/prometheus` configuration and rules, as they are, with every
//! interval shortened to 1 s so a test sees rates within seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::procs::{free_port, repo};

/// One scrape target: `host:port` with its `region` and `track` labels.
pub struct Target {
    /// `127.0.0.1:port`.
    pub address: String,
    /// The region label.
    pub region: &'static str,
    /// `stable` or `canary`.
    pub track: &'static str,
}

/// `deploy/prometheus` copied into `dir` with 1-second intervals, the admin
/// token as its credentials file and `targets` as its file-discovery list;
/// the configuration file's path.
pub fn configure(dir: &Path, token: &str, targets: &[Target]) -> PathBuf {
    let src = repo().join("deploy/prometheus");
    std::fs::create_dir_all(dir.join("targets")).expect("targets dir");
    std::fs::create_dir_all(dir.join("secrets")).expect("secrets dir");
    let fast = |text: String| text.replace("interval: 15s", "interval: 1s").replace("interval: 30s", "interval: 1s");
    let config = fast(std::fs::read_to_string(src.join("prometheus.yml")).expect("prometheus.yml"));
    std::fs::write(dir.join("prometheus.yml"), config).expect("write config");
    let rules = fast(std::fs::read_to_string(src.join("edgerec.rules.yml")).expect("rules"));
    std::fs::write(dir.join("edgerec.rules.yml"), rules).expect("write rules");
    std::fs::write(dir.join("secrets/admin-token"), token).expect("write token");
    let list: Vec<Value> = targets.iter().map(|t| json!({ "targets": [t.address], "labels": { "region": t.region, "track": t.track } })).collect();
    std::fs::write(dir.join("targets/origins.json"), serde_json::to_string(&list).expect("json")).expect("write targets");
    dir.join("prometheus.yml")
}

/// Runs `promtool` with `args` in `dir`; (success, stdout + stderr).
pub fn promtool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool").args(args).current_dir(dir).output().expect("promtool runs (cargo xtask setup installs prometheus)");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A Prometheus server on a loopback port; killed on drop.
pub struct Prometheus {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl Prometheus {
    /// Starts it on `config` (storage beside it) and waits until it is ready.
    ///
    /// # Panics
    /// When it does not start or is not ready within 60 s.
    pub async fn start(config: &Path) -> Prometheus {
        let port = free_port();
        let dir = config.parent().expect("config dir");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).expect("log file"))
            .spawn()
            .expect("prometheus starts");
        let prometheus = Prometheus { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        let client = reqwest::Client::new();
        while !client.get(format!("{}/-/ready", prometheus.url)).send().await.is_ok_and(|r| r.status().is_success()) {
            assert!(started.elapsed() < Duration::from_secs(60), "prometheus not ready (log: {})", dir.join("prometheus.log").display());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    /// The instant vector `expr` evaluates to now (`/api/v1/query`).
    ///
    /// # Panics
    /// When the query is refused (a syntax error, an unknown function).
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(&format!("{}/api/v1/query", self.url), &[("query", expr)]).expect("url");
        let r: Value = reqwest::Client::new().get(url).send().await.expect("query sent").json().await.expect("query answer");
        assert_eq!(r["status"], "success", "{expr}: {r}");
        r["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls `expr` until `done` holds for its result; the result.
    ///
    /// # Panics
    /// After `limit`, with the last result.
    pub async fn wait_for(&self, expr: &str, limit: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let result = self.query(expr).await;
            if done(&result) {
                return result;
            }
            assert!(started.elapsed() < limit, "{expr} after {limit:?}: {result:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
