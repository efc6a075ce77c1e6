//! What a platform team deploys, driven for real: the origin's image under
//! podman, the Kubernetes manifests in `deploy/k8s` (read as JSON through
//! PyYAML, schema-checked by `kubernetes-validate`), played with
//! `podman kube play`.
//!
//! Podman 4.3 (Debian 12) plays a Deployment's pod spec as it is, with these
//! differences the harness bridges and nothing else: it publishes every
//! `containerPort` on the host (so each replica is played as its own
//! one-replica Deployment with a loopback `hostIP`/`hostPort`), it resolves
//! `secretKeyRef` from a podman secret holding a JSON map of base64 values,
//! and a `persistentVolumeClaim` is the podman volume of the claim's name.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::procs::repo;

/// The image `cargo xtask image --debug` builds (and `cargo xtask test` before the suites).
pub const IMAGE_DEV: &str = "localhost/edgerec-origin:dev";

/// The image the manifests name (`cargo xtask image`).
pub const IMAGE_RELEASE: &str = "localhost/edgerec-origin:release";

/// A podman command under the project's `deploy/podman/containers.conf`
/// (xtask has its own copy: it builds before anything heavy, so it does not link this crate).
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", repo().join("deploy/podman/containers.conf"));
    cmd
}

/// Runs podman with `args`, returning its output (not checked).
pub fn podman_out(args: &[&str]) -> Output {
    podman().args(args).output().expect("podman runs (cargo xtask setup installs it)")
}

/// Runs podman with `args`; its stdout.
///
/// # Panics
/// When podman fails, with its stderr.
pub fn podman_ok(args: &[&str]) -> String {
    let out = podman_out(args);
    assert!(out.status.success(), "podman {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The project's Python (the venv `cargo xtask setup` makes).
pub fn python() -> PathBuf {
    repo().join(".venv/bin/python")
}

/// Every document of a YAML file, as JSON (PyYAML's `safe_load_all`).
///
/// # Panics
/// When the file does not parse.
pub fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = Command::new(python())
        .args(["-c", "import sys, json, yaml; json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d], sys.stdout)"])
        .arg(path)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{} does not parse as YAML: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Every manifest under `deploy/k8s`, as (file, document).
pub fn manifests() -> Vec<(PathBuf, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/k8s"))
        .expect("deploy/k8s")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files.into_iter().flat_map(|f| yaml_documents(&f).into_iter().map(move |d| (f.clone(), d))).collect()
}

/// The manifest of `kind` named `name`.
///
/// # Panics
/// When there is none.
pub fn manifest(kind: &str, name: &str) -> Value {
    manifests()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

/// The secrets a played pod reads, as the podman secret `name` (a JSON map
/// of base64 values: what podman 4.3's `secretKeyRef` resolves).
pub fn put_secret(name: &str, values: &[(&str, &str)]) {
    use base64::Engine as _;
    let _ = podman_out(&["secret", "rm", name]);
    let map: serde_json::Map<String, Value> = values.iter().map(|(k, v)| (k.to_string(), base64::engine::general_purpose::STANDARD.encode(v).into())).collect();
    let json = serde_json::to_string(&map).expect("json");
    let file = std::env::temp_dir().join(format!("edgerec-secret-{}.json", std::process::id()));
    std::fs::write(&file, json).expect("write secret");
    podman_ok(&["secret", "create", name, &file.display().to_string()]);
    let _ = std::fs::remove_file(file);
}

/// Replaces the podman volume `name` with the contents of `dir` (what a
/// `persistentVolumeClaim` of that name mounts under `podman kube play`).
pub fn put_volume(name: &str, dir: &Path) {
    let _ = podman_out(&["volume", "rm", "--force", name]);
    podman_ok(&["volume", "create", name]);
    let tar = std::env::temp_dir().join(format!("edgerec-volume-{}.tar", std::process::id()));
    let ok = Command::new("tar").arg("-C").arg(dir).arg("-cf").arg(&tar).arg(".").status().is_ok_and(|s| s.success());
    assert!(ok, "tar of {}", dir.display());
    podman_ok(&["volume", "import", name, &tar.display().to_string()]);
    let _ = std::fs::remove_file(tar);
}

/// One replica of `deployment` as podman plays it: named `<name>-<replica>`,
/// one replica, `image` instead of the manifest's, its `http` port published
/// on `127.0.0.1:host_port`. Everything else is the manifest's own.
pub fn replica(deployment: &Value, replica: usize, image: &str, host_port: u16) -> Value {
    let mut d = deployment.clone();
    let name = format!("{}-{replica}", d["metadata"]["name"].as_str().expect("name"));
    d["metadata"]["name"] = name.into();
    d["spec"]["replicas"] = 1.into();
    for c in d["spec"]["template"]["spec"]["containers"].as_array_mut().expect("containers") {
        c["image"] = image.into();
        for p in c["ports"].as_array_mut().expect("ports") {
            p["hostIP"] = "127.0.0.1".into();
            p["hostPort"] = host_port.into();
        }
    }
    d
}

/// A played pod set, torn down (`podman kube down`) when dropped.
pub struct Played {
    files: Vec<PathBuf>,
}

impl Played {
    /// Plays each document (JSON is YAML) with `podman kube play`.
    ///
    /// # Panics
    /// When a play fails.
    pub fn play(documents: &[Value]) -> Played {
        let mut played = Played { files: Vec::new() };
        for (i, doc) in documents.iter().enumerate() {
            let file = std::env::temp_dir().join(format!("edgerec-play-{}-{i}.yaml", std::process::id()));
            std::fs::write(&file, serde_json::to_string_pretty(doc).expect("json")).expect("write play file");
            // Anything a crashed earlier run left under the same names goes first.
            let _ = podman_out(&["kube", "down", &file.display().to_string()]);
            played.files.push(file.clone());
            podman_ok(&["kube", "play", &file.display().to_string()]);
        }
        played
    }

    /// The origin container of replica `i` (podman names it `<deployment>-pod-0-<container>`).
    pub fn container(deployment: &Value, replica: usize, container: &str) -> String {
        format!("{}-{replica}-pod-0-{container}", deployment["metadata"]["name"].as_str().expect("name"))
    }
}

impl Drop for Played {
    fn drop(&mut self) {
        for file in &self.files {
            let _ = podman_out(&["kube", "down", &file.display().to_string()]);
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Polls `{base}/readyz` until it answers 2xx; how long that took. For a
/// container, whose process the caller does not hold (`procs` waits on its own children).
///
/// # Errors
/// After `limit`.
pub async fn wait_ready(base: &str, limit: std::time::Duration) -> anyhow::Result<std::time::Duration> {
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    loop {
        if client.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < limit, "{base} not ready after {limit:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether the image exists locally.
pub fn image_exists(image: &str) -> bool {
    podman_out(&["image", "exists", image]).status.success()
}
