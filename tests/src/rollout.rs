//! Model rollout and disaster recovery with real processes: two regions'
//! origins following a model registry, `origin rollout` (canary first,
//! judged on `/metrics`), `origin registry backup/restore`, and load running
//! throughout. The end-to-end tests assert these scenarios; `bench-rollout`
//! writes their figures to `docs/rollout.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::load::{self, LoadSpec, Outcome};
use crate::procs::{Edge, Origin, debug_bin, free_port, origin_bin, repo};

/// The operator token of the scenario's origins.
pub const TOKEN: &str = "rollout-test-admin-token";

/// A fresh, empty work directory for one scenario (under the system temp dir).
pub fn workdir(name: &str) -> PathBuf {
    let dir = crate::measure::tempdir(&format!("rollout-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work directory");
    dir
}

/// Runs `origin registry --registry <root> <args>`; its JSON answer.
///
/// # Panics
/// When the command fails.
pub fn registry_cmd(root: &Path, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(origin_bin()).arg("registry").arg("--registry").arg(root).args(args).output().expect("origin registry runs");
    assert!(out.status.success(), "origin registry {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON answer")
}

/// A copy of model directory `from` whose manifest names `version` (the same
/// files, so the same sha256s: a re-export of one model under a new version).
/// Large files are hard-linked where the file system allows.
pub fn as_version(from: &Path, version: &str, into: &Path) -> PathBuf {
    let dir = into.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let to = dir.join(p.file_name().unwrap());
        if p.file_name().unwrap() == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            m["version"] = version.into();
            std::fs::write(&to, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
        } else if std::fs::hard_link(&p, &to).is_err() {
            std::fs::copy(&p, &to).unwrap();
        }
    }
    dir
}

/// The version a model directory's manifest names.
pub fn version_of(dir: &Path) -> String {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    m["version"].as_str().unwrap().to_string()
}

/// Writes a heavy version of the MovieLens model (`trainer`'s `heavy_model`
/// example: an untrained SASRec of width 256, 4 blocks, 50 positions over the
/// same catalog) as `version` under `base`; its directory.
///
/// # Panics
/// When the example is not built (`cargo build --all-targets` builds it).
pub fn heavy_version(base: &Path, version: &str) -> PathBuf {
    let bin = debug_bin("examples/heavy_model");
    let dir = base.join(version);
    let ok = std::process::Command::new(&bin).arg(repo().join("models/movielens")).arg(&dir).arg(version).status().is_ok_and(|s| s.success());
    assert!(ok, "{} failed (built by `cargo build --workspace --all-targets`)", bin.display());
    dir
}

/// A registry under `base` holding MovieLens as the promoted (stable) version; returns (root, version).
pub fn registry_with_movielens(base: &Path) -> (PathBuf, String) {
    let root = base.join("registry");
    let v1 = version_of(&repo().join("models/movielens"));
    registry_cmd(&root, &["publish", "--from", &repo().join("models/movielens").display().to_string(), "--status", "approved"]);
    registry_cmd(&root, &["promote", "--version", &v1]);
    (root, v1)
}

/// The version `base` serves (its `/readyz` as the operator).
pub async fn serving(client: &reqwest::Client, base: &str) -> Option<String> {
    let v: serde_json::Value = client.get(format!("{base}/readyz")).bearer_auth(TOKEN).send().await.ok()?.json().await.ok()?;
    v["model"]["version"].as_str().map(str::to_string)
}

/// Waits until `base` serves `version`; seconds taken.
///
/// # Panics
/// After `limit`.
pub async fn wait_serving(base: &str, version: &str, limit: Duration) -> f64 {
    let client = reqwest::Client::new();
    let started = Instant::now();
    while serving(&client, base).await.as_deref() != Some(version) {
        assert!(started.elapsed() < limit, "{base} does not serve {version} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed().as_secs_f64()
}

/// The history of request `i`: three MovieLens items of the 30 most
/// popular (27,000 distinct triples, so the edge's cache answers none of a
/// scenario's requests and every one reaches a model) and one Instacart item,
/// so a model of either bundled catalog runs for every request.
pub fn history(i: usize) -> String {
    static POPULAR: std::sync::OnceLock<(Vec<String>, Vec<String>)> = std::sync::OnceLock::new();
    let (ml, ic) = POPULAR.get_or_init(|| {
        let popular = |ds: &str| -> Vec<String> {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(repo().join(format!("models/{ds}/popular.json"))).unwrap()).unwrap();
            v["items"].as_array().unwrap().iter().filter_map(|i| i["id"].as_str().map(str::to_string)).take(30).collect()
        };
        (popular("movielens"), popular("instacart"))
    });
    let n = ml.len();
    format!("{},{},{},{}", ml[i % n], ml[(i / n + 1) % n], ml[(i / (n * n) + 2) % n], ic[i % ic.len()])
}

/// Open-loop load of `rate` requests/s for `secs` over the bases (round robin).
pub fn load_spec(rate: f64, secs: f64) -> LoadSpec {
    LoadSpec {
        requests: (rate * secs) as usize,
        concurrency: 32,
        max_duration: Duration::from_secs_f64(secs + 30.0),
        timeout: Duration::from_secs(5),
        think: Duration::ZERO,
        rate_per_s: Some(rate),
    }
}

/// Starts load against `bases` in a task.
pub fn start_load(bases: Vec<String>, spec: LoadSpec) -> tokio::task::JoinHandle<Vec<Outcome>> {
    tokio::spawn(load::run(move |i| format!("{}/v1/recommendations?history={}&k=10", bases[i % bases.len()], history(i)), spec, "x-rec-source"))
}

/// `origin rollout` against two origins; its JSON outcome.
///
/// # Panics
/// When the command fails.
pub async fn rollout(registry: &Path, canary: &str, others: &str, version: &str, extra: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(origin_bin())
        .arg("rollout")
        .arg("--registry")
        .arg(registry)
        .args(["--canary", canary, "--others", others, "--admin-token", TOKEN, "--version", version, "--settle-s", "60"])
        .args(extra)
        .output()
        .await
        .expect("origin rollout runs");
    assert!(out.status.success(), "origin rollout: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON outcome")
}

/// Two regions following one registry: A the canary region, B stable.
pub struct Regions {
    /// Region A (`--registry-track canary`).
    pub a: Origin,
    /// Region B.
    pub b: Origin,
}

impl Regions {
    /// Starts both on `registry`.
    pub async fn start(registry: &Path) -> Regions {
        let a = Origin::spawn_registry(free_port(), registry, &["--admin-token", TOKEN, "--registry-track", "canary"]).await;
        let b = Origin::spawn_registry(free_port(), registry, &["--admin-token", TOKEN]).await;
        Regions { a, b }
    }
}

/// Figures of one rollout under load.
#[derive(Debug, Clone)]
pub struct RolloutFigures {
    /// `origin rollout`'s JSON outcome.
    pub outcome: serde_json::Value,
    /// Requests sent during it, and of them failed (not a 200 with 10 items).
    pub sent: usize,
    /// Failed requests.
    pub failed: usize,
    /// p99 of the requests before the canary was set, and from then to the end, ms.
    pub p99_before_ms: f64,
    /// p99 during and after the swap, ms.
    pub p99_during_ms: f64,
    /// Versions A and B serve at the end.
    pub serving: (Option<String>, Option<String>),
}

/// A rollout of `version` (already `approved` in `registry`) under load, with `regions` on `registry`.
pub async fn rollout_under_load(registry: &Path, regions: &Regions, version: &str, window_s: f64, extra: &[&str]) -> RolloutFigures {
    let (a, b) = (regions.a.url(), regions.b.url());
    let lead_s = 3.0;
    let load = start_load(vec![a.clone(), b.clone()], load_spec(100.0, lead_s + window_s + 8.0));
    tokio::time::sleep(Duration::from_secs_f64(lead_s)).await;
    let window = window_s.to_string();
    let outcome = rollout(registry, &a, &b, version, &[&["--window-s", window.as_str(), "--min-requests", "50"][..], extra].concat()).await;
    let outcomes = load.await.unwrap();
    let failed = outcomes.iter().filter(|o| !o.good(10)).count();
    let p99 = |sel: &dyn Fn(&Outcome) -> bool| {
        let mut v: Vec<f64> = outcomes.iter().filter(|o| sel(o)).map(|o| o.latency_ms).collect();
        v.sort_by(f64::total_cmp);
        load::percentile(&v, 0.99)
    };
    let lead_ms = lead_s * 1e3;
    let client = reqwest::Client::new();
    RolloutFigures {
        outcome,
        sent: outcomes.len(),
        failed,
        p99_before_ms: p99(&|o| o.sent_at_ms < lead_ms),
        p99_during_ms: p99(&|o| o.sent_at_ms >= lead_ms),
        serving: (serving(&client, &a).await, serving(&client, &b).await),
    }
}

/// Figures of the restore drill.
#[derive(Debug, Clone)]
pub struct DrillFigures {
    /// Requests sent through the edge during the drill, and failed.
    pub sent: usize,
    /// Failed requests (not a 200 with 10 items).
    pub failed: usize,
    /// Answers by source (origin, edge, …) as `origin 80 %, edge 20 %`.
    pub sources: String,
    /// Answers by origin, as `name count` pairs.
    pub by_origin: Vec<(String, usize)>,
    /// From the registry deleted to region A serving the restored version after its restart, s.
    pub recovery_s: f64,
    /// Of which `origin registry restore`, s.
    pub restore_s: f64,
    /// Region A served from memory while its registry was gone.
    pub served_from_memory: bool,
    /// The version A serves after the restart, and the one it served before.
    pub versions: (String, Option<String>),
}

/// The restore drill: region A's registry and model directory are deleted
/// while it serves; it keeps serving from memory; its registry is restored
/// from the backup (region B's registry), A restarts and serves the same
/// version; load through the edge (A first, B standby) never fails.
pub async fn restore_drill(base: &Path) -> DrillFigures {
    let (reg_a, v1) = registry_with_movielens(base);
    let reg_b = base.join("registry-b");
    registry_cmd(&reg_a, &["backup", "--to", &reg_b.display().to_string()]);
    let port_a = free_port();
    let mut a = Origin::spawn_registry(port_a, &reg_a, &["--admin-token", TOKEN]).await;
    let b = Origin::spawn_registry(free_port(), &reg_b, &["--admin-token", TOKEN]).await;
    let origins = serde_json::json!([
        { "name": "region-a", "url": a.url(), "priority": 1 },
        { "name": "region-b", "url": b.url(), "priority": 2 },
    ])
    .to_string();
    let edge = Edge::start(&[("ORIGINS", origins.as_str()), ("ORIGIN_URL", "")]).await;
    let load = {
        let url = edge.url();
        tokio::spawn(load::run(move |i| format!("{url}/v1/recommendations?history={}&k=10", history(i)), load_spec(50.0, 25.0), "x-rec-source"))
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lost = Instant::now();
    std::fs::remove_dir_all(&reg_a).expect("region A's registry deleted");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    let from_memory = serving(&client, &a.url()).await;
    let restore_started = Instant::now();
    registry_cmd(&reg_a, &["restore", "--from", &reg_b.display().to_string()]);
    let restore_s = restore_started.elapsed().as_secs_f64();
    a.terminate();
    drop(a);
    let a = Origin::spawn_registry(port_a, &reg_a, &["--admin-token", TOKEN]).await;
    wait_serving(&a.url(), &v1, Duration::from_secs(60)).await;
    let recovery_s = lost.elapsed().as_secs_f64();
    let after = serving(&client, &a.url()).await.unwrap_or_default();
    let outcomes = load.await.unwrap();
    let summary = load::summarize(&outcomes, 10);
    let mut by_origin = std::collections::BTreeMap::<String, usize>::new();
    for o in &outcomes {
        *by_origin.entry(if o.origin.is_empty() { "-".into() } else { o.origin.clone() }).or_default() += 1;
    }
    drop((edge, b));
    DrillFigures {
        sent: outcomes.len(),
        failed: outcomes.iter().filter(|o| !o.good(10)).count(),
        sources: summary.source_shares(),
        by_origin: by_origin.into_iter().collect(),
        recovery_s,
        restore_s,
        served_from_memory: from_memory.as_deref() == Some(v1.as_str()),
        versions: (after, from_memory),
    }
}
