//! The deployment a platform team runs: the Kubernetes manifests are valid
//! (strict schema) and agree with the origin they run (ports, probes, drain
//! timing, environment, secrets, autoscaler metric), and the origin's image
//! runs those manifests' pods under `podman kube play`: ready, answering,
//! non-root on a read-only root file system, draining on SIGTERM.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::platform::{self, IMAGE_DEV, Played, manifest, manifests, podman_ok, podman_out};
use e2e::procs::{debug_bin, free_port, origin_bin, repo};
use e2e::rollout::{self, TOKEN};
use serde_json::Value;

const EDGE_KEY: &str = "platform-test-edge-key";

fn env_value(container: &Value, name: &str) -> Option<String> {
    container["env"].as_array()?.iter().find(|e| e["name"] == name)?["value"].as_str().map(str::to_string)
}

fn ms(container: &Value, name: &str) -> u64 {
    env_value(container, name).unwrap_or_else(|| panic!("{name} not set")).parse().expect("ms")
}

fn help(bin: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).arg("--help").output().expect("binary runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn manifests_pass_the_strict_schema_and_agree_with_the_origin() {
    let files: Vec<String> = manifests().into_iter().map(|(f, _)| f.display().to_string()).collect::<BTreeSet<_>>().into_iter().collect();
    assert!(files.len() >= 4, "deploy/k8s has the origin, the retrain job, the registry claim and the secret: {files:?}");
    let out = Command::new(repo().join(".venv/bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate (bench/requirements.txt) runs");
    assert!(out.status.success(), "kubernetes-validate: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    let deployment = manifest("Deployment", "edgerec-origin");
    let pod = &deployment["spec"]["template"]["spec"];
    let origin = &pod["containers"][0];
    // Probes: liveness asks only whether the process answers; readiness and start-up ask for a loaded model.
    assert_eq!(origin["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(origin["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(origin["startupProbe"]["httpGet"]["path"], "/readyz");
    let http = origin["ports"].as_array().unwrap().iter().find(|p| p["name"] == "http").expect("an http port");
    assert_eq!(http["containerPort"], 8080, "the image listens on 0.0.0.0:8080 (deploy/Containerfile)");
    // Drain: the pod leaves the endpoints before it stops accepting, and is killed only after draining.
    let (delay, grace) = (ms(origin, "EDGEREC_SHUTDOWN_DELAY_MS"), ms(origin, "EDGEREC_SHUTDOWN_GRACE_MS"));
    let readiness = &origin["readinessProbe"];
    let unready_after = readiness["periodSeconds"].as_u64().unwrap() * readiness["failureThreshold"].as_u64().unwrap() * 1000;
    assert!(unready_after < delay, "readiness notices the drain after {unready_after} ms, the port closes after {delay} ms");
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000;
    assert!(termination > delay + grace, "terminationGracePeriodSeconds {termination} ms ≤ drain delay {delay} + grace {grace} ms");
    assert_eq!(origin["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // Every variable the manifests set is one the binaries read.
    let serve_help = help(&origin_bin(), &["serve"]);
    let names: Vec<String> = origin["env"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap().to_string()).collect();
    for name in &names {
        assert!(serve_help.contains(&format!("env: {name}")), "`origin serve` reads no {name}");
    }
    // Secrets: every key referenced exists in the example secret.
    let secret = manifest("Secret", "edgerec-origin");
    let cron = manifest("CronJob", "edgerec-retrain");
    let trainer = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    for c in [origin, trainer] {
        for e in c["env"].as_array().unwrap() {
            if let Some(r) = e["valueFrom"]["secretKeyRef"].as_object() {
                assert_eq!(r["name"], "edgerec-origin");
                assert!(secret["stringData"][r["key"].as_str().unwrap()].is_string(), "secret key {} missing", r["key"]);
            }
        }
    }
    // The retrain job's flags are the trainer's.
    let retrain_help = help(&debug_bin("trainer"), &["retrain"]);
    for flag in trainer["args"].as_array().unwrap().iter().filter_map(|a| a.as_str()).filter(|a| a.starts_with("--")) {
        assert!(retrain_help.contains(flag), "`trainer retrain` has no {flag}");
    }
    // Selectors and targets name the Deployment's pods.
    let labels = deployment["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (kind, selector) in [
        ("Service", &manifest("Service", "edgerec-origin")["spec"]["selector"]),
        ("PodDisruptionBudget", &manifest("PodDisruptionBudget", "edgerec-origin")["spec"]["selector"]["matchLabels"]),
    ] {
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(labels.get(k), Some(v), "{kind} selects {k}={v}, the pods are labelled {labels:?}");
        }
    }
    // Prometheus Operator scraping: the pods, their http port, the admin token.
    let monitor = manifest("PodMonitor", "edgerec-origin");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels.get(k), Some(v), "PodMonitor selects {k}={v}");
    }
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["path"], "/metrics");
    assert!(secret["stringData"][endpoint["authorization"]["credentials"]["key"].as_str().unwrap()].is_string());
    let hpa = manifest("HorizontalPodAutoscaler", "edgerec-origin");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "edgerec-origin");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() > manifest("PodDisruptionBudget", "edgerec-origin")["spec"]["minAvailable"].as_u64().unwrap());
    // The custom metric is the one the Prometheus Adapter rule serves, over a series the origin exports.
    let custom = hpa["spec"]["metrics"].as_array().unwrap().iter().find(|m| m["type"] == "Pods").expect("a per-pod custom metric");
    let adapter = manifest("ConfigMap", "edgerec-prometheus-adapter");
    let rules = adapter["data"]["config.yaml"].as_str().unwrap();
    assert!(rules.contains(&format!("as: \"{}\"", custom["pods"]["metric"]["name"].as_str().unwrap())));
    assert!(rules.contains("http_requests_in_flight{"), "the adapter reads the origin's http_requests_in_flight");
}

async fn recommend(client: &reqwest::Client, base: &str, i: usize) -> Result<Value, String> {
    let r = client
        .get(format!("{base}/v1/recommendations?history={}&k=5", rollout::history(i)))
        .header("x-edgerec-edge-key", EDGE_KEY)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("status {}", r.status()));
    }
    r.json().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_runs_the_manifests_pods_under_podman_kube_play() {
    assert!(platform::image_exists(IMAGE_DEV), "{IMAGE_DEV} missing: `cargo xtask image --debug` builds it (`cargo xtask test` does)");
    // The image: non-root, with a health check.
    let user = podman_ok(&["image", "inspect", "--format", "{{.Config.User}}", IMAGE_DEV]);
    assert_eq!(user, "65532:65532");
    // The registry claim: a registry holding MovieLens as the stable version.
    let work = rollout::workdir("platform");
    let (registry, version) = rollout::registry_with_movielens(&work);
    platform::put_volume("edgerec-registry", &registry);
    platform::put_secret("edgerec-origin", &[("admin-token", TOKEN), ("edge-key", EDGE_KEY), ("events-url", "sqlite:/data/events.sqlite")]);
    let deployment = manifest("Deployment", "edgerec-origin");
    let ports = [free_port(), free_port()];
    let replicas: Vec<Value> = ports.iter().enumerate().map(|(i, &p)| platform::replica(&deployment, i, IMAGE_DEV, p)).collect();
    let _played = Played::play(&replicas);
    let bases: Vec<String> = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
    for base in &bases {
        platform::wait_ready(base, Duration::from_secs(90)).await.unwrap();
        assert_eq!(rollout::serving(&reqwest::Client::new(), base).await.as_deref(), Some(version.as_str()), "{base} serves the registry's stable version");
    }
    let container = Played::container(&deployment, 0, "origin");
    assert_eq!(podman_ok(&["inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", &container]), "true", "readOnlyRootFilesystem holds");
    // The image's HEALTHCHECK (plain podman/docker; kube play turns the
    // livenessProbe into its own) runs `origin probe` inside the image: it passes here and fails on a 404.
    let healthcheck = podman_ok(&["image", "inspect", "--format", "{{json .Config.Healthcheck.Test}}", IMAGE_DEV]);
    assert!(healthcheck.contains("/usr/local/bin/origin") && healthcheck.contains("probe"), "health check: {healthcheck}");
    assert!(podman_out(&["exec", &container, "/usr/local/bin/origin", "probe"]).status.success(), "origin probe passes in the pod");
    let missing = podman_out(&["exec", &container, "/usr/local/bin/origin", "probe", "--url", "http://127.0.0.1:8080/nope"]);
    assert!(!missing.status.success(), "origin probe fails on a 404");

    // The retrain job's ONNX Runtime gate runs in this image (no Python): `origin parity` on the served version.
    let parity = podman_out(&["exec", &container, "/usr/local/bin/origin", "parity", "--models", &format!("/registry/versions/{version}")]);
    assert!(parity.status.success(), "origin parity in the image: {}", String::from_utf8_lossy(&parity.stderr));
    assert!(String::from_utf8_lossy(&parity.stdout).contains("users agree"));

    // Traffic through both pods; the edge credential is required.
    let client = reqwest::Client::new();
    for i in 0..200 {
        let base = &bases[i % 2];
        let answer = recommend(&client, base, i).await.unwrap_or_else(|e| panic!("request {i} to {base}: {e}"));
        assert_eq!(answer["source"], "origin");
        assert_eq!(answer["items"].as_array().map(Vec::len), Some(5));
    }
    let stranger = client.get(format!("{}/v1/recommendations?history=1", bases[0])).send().await.unwrap();
    assert_eq!(stranger.status(), 401, "without the edge key (the Secret's edge-key) no answer");
    let metrics = client.get(format!("{}/metrics", bases[0])).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(&format!("model_info{{version=\"{version}\"")), "model_info names the served version");
    assert!(metrics.contains("http_requests_in_flight{route=\"/v1/recommendations\"}"), "the autoscaler's metric is exported");

    // SIGTERM (what the kubelet sends; `podman stop` sends the image's
    // STOPSIGNAL and, unlike a bare kill, does not restart the pod): not
    // ready at once, still answering for the drain delay, then gone.
    let delay = Duration::from_millis(ms(&deployment["spec"]["template"]["spec"]["containers"][0], "EDGEREC_SHUTDOWN_DELAY_MS"));
    let termination = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
    let mut stop =
        platform::podman().args(["stop", "--time", &termination.to_string(), &container]).stdout(std::process::Stdio::null()).spawn().expect("podman stop");
    let signalled = Instant::now();
    let status = loop {
        let s = client.get(format!("{}/readyz", bases[0])).send().await.unwrap();
        if s.status() == 503 || signalled.elapsed() > Duration::from_secs(2) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.status(), 503, "readiness fails once SIGTERM arrives");
    assert_eq!(status.json::<Value>().await.unwrap()["status"], "draining");
    let mut answered_while_draining = 0;
    while signalled.elapsed() < delay - Duration::from_millis(1000) {
        recommend(&client, &bases[0], answered_while_draining).await.unwrap_or_else(|e| panic!("a draining pod still answers: {e}"));
        answered_while_draining += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tokio::task::spawn_blocking(move || stop.wait()).await.unwrap().unwrap().success(), "podman stop");
    let stopped_after = signalled.elapsed();
    assert!(stopped_after < Duration::from_secs(termination), "stopped by SIGKILL after {stopped_after:?}, not by draining");
    assert_eq!(podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &container]), "0", "a drained origin exits 0");
    assert!(stopped_after >= delay, "stopped after {stopped_after:?}, before the drain delay {delay:?}");
    // The other replica never noticed.
    recommend(&client, &bases[1], 0).await.expect("the other pod answers");
    eprintln!("kube play: 2 pods ready, 200 answers, SIGTERM → draining, {answered_while_draining} answers meanwhile, exit 0 after {stopped_after:.1?}");
}

/// `origin parity` (the retrain gate's ONNX Runtime check where no Python
/// is) passes on a trained model and fails, naming the model and the user,
/// when the trainer's recorded ranking disagrees with ONNX Runtime's.
#[test]
fn origin_parity_fails_when_onnx_runtime_disagrees_with_the_trainer() {
    let lib = e2e::procs::ort_lib().expect("libonnxruntime.so (cargo xtask setup)");
    let run =
        |dir: &std::path::Path| Command::new(origin_bin()).args(["parity", "--models"]).arg(dir).arg("--ort-lib").arg(&lib).output().expect("origin runs");
    let good = run(&repo().join("models/movielens"));
    assert!(good.status.success(), "{}", String::from_utf8_lossy(&good.stderr));
    let lines = String::from_utf8_lossy(&good.stdout).lines().filter(|l| l.contains("users agree")).count();
    assert_eq!(lines, 2, "the full and the edge model are both checked");
    let dir = rollout::workdir("parity").join("movielens");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(repo().join("models/movielens")).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), dir.join(f.file_name())).unwrap();
        }
    }
    let mut parity: Value = serde_json::from_slice(&std::fs::read(dir.join("parity.json")).unwrap()).unwrap();
    let user = parity["cases"][0]["user"].as_str().unwrap().to_string();
    let score = parity["cases"][0]["scores"]["full"][0].as_f64().unwrap();
    parity["cases"][0]["scores"]["full"][0] = (score + 0.5).into();
    std::fs::write(dir.join("parity.json"), parity.to_string()).unwrap();
    let bad = run(&dir);
    assert!(!bad.status.success(), "a disagreeing score must fail");
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains(&format!("full user {user}")), "{why}");
}

/// The retrain CronJob's container, as the manifest says it (command, args,
/// environment from the Secret, registry and /tmp volumes, read-only root),
/// run once in the image on a store holding MovieLens' older 80 %: the first
/// version is trained, gated (onnxruntime parity through `origin parity`: the
/// image has no Python) and published as approved.
#[test]
fn the_retrain_job_runs_in_the_image_and_publishes_an_approved_version() {
    assert!(platform::image_exists(IMAGE_DEV), "{IMAGE_DEV} missing: `cargo xtask image --debug` builds it");
    let cron = manifest("CronJob", "edgerec-retrain");
    let container = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let work = rollout::workdir("retrain-job");
    for dir in ["registry", "tmp", "store"] {
        std::fs::create_dir_all(work.join(dir)).unwrap();
    }
    let store = work.join("store/events.sqlite");
    let imported = Command::new(debug_bin("trainer"))
        .args(["import", "--format", "movielens", "--input"])
        .arg(repo().join("data/ml-100k"))
        .args(["--dataset", "movielens", "--until-quantile", "0.8", "--to"])
        .arg(format!("sqlite:{}", store.display()))
        .status()
        .unwrap();
    assert!(imported.success());
    // The container runs as 65532: the volumes must be writable for it (a cluster's fsGroup does this).
    Command::new("chmod").args(["-R", "a+rwX"]).arg(&work).status().unwrap();
    let events = "sqlite:/store/events.sqlite";
    let command = container["command"][0].as_str().unwrap();
    let args: Vec<String> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().replace("$(EDGEREC_EVENTS)", events)).collect();
    let mounts: Vec<String> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let path = m["mountPath"].as_str().unwrap();
            format!("{}:{path}", work.join(path.trim_start_matches('/')).display())
        })
        .collect();
    assert!(mounts.iter().any(|m| m.ends_with(":/registry")) && mounts.iter().any(|m| m.ends_with(":/tmp")), "{mounts:?}");
    let mut run = platform::podman();
    // A disk-backed /tmp, as the job's emptyDir (no tmpfs: podman's --read-only one is root's here).
    run.args(["run", "--rm", "--read-only", "--read-only-tmpfs=false", "--entrypoint", command, "--env", &format!("EDGEREC_EVENTS={events}")]);
    run.arg("--volume").arg(format!("{}:/store", work.join("store").display()));
    for m in &mounts {
        run.args(["--volume", m]);
    }
    // EASE only: the job's command and gate are under test here, not the sequence model's training time.
    // A generous latency budget: the gate's p99 is measured on this (shared) machine, and is not what is under test.
    let out = run.arg(IMAGE_DEV).args(&args).args(["--schedule", "off", "--max-p99-ms", "500"]).output().expect("podman runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the retrain job failed: {log}");
    assert!(log.contains("approved"), "{log}");
    let records = std::fs::read_dir(work.join("registry/records")).unwrap().flatten().collect::<Vec<_>>();
    assert_eq!(records.len(), 1);
    let record: Value = serde_json::from_slice(&std::fs::read(records[0].path()).unwrap()).unwrap();
    assert_eq!(record["status"], "approved", "{record}");
    let parity = record["gate"]["ort_parity"].as_str().unwrap_or_default();
    assert!(parity.contains("users agree") && parity.contains("/usr/local/lib/libonnxruntime"), "parity ran through the image's ONNX Runtime: {record}");
}
