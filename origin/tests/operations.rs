//! Operations on a real origin process: hot reload with verification,
//! rollback, SIGHUP, load shedding and graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{Origin, TOKEN, copy_dir, movielens};
use serde_json::{Value, json};

async fn admin(o: &Origin, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = o.client.post(o.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn reload_refuses_bad_models_swaps_good_ones_and_rolls_back() {
    let o = Origin::start(&movielens(), &[]).await;
    let v1 = o.json("/readyz").await["model"]["version"].as_str().unwrap().to_string();

    assert_eq!(admin(&o, "/admin/reload", None, None).await.0, 401);
    assert_eq!(admin(&o, "/admin/reload", Some("wrong-token"), None).await.0, 401);

    // A corrupted model file: refused by its sha256, the old model keeps serving.
    let bad = copy_dir(&movielens(), "corrupt");
    let mut bytes = std::fs::read(bad.join("full.onnx")).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(bad.join("full.onnx"), &bytes).unwrap();
    let (status, body) = admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": bad}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("sha256"), "{body}");
    assert_eq!(body["serving"], v1.as_str());
    // A truncated file whose manifest was "fixed" to match: refused by the model loader.
    let truncated = copy_dir(&movielens(), "truncated");
    let onnx = std::fs::read(truncated.join("full.onnx")).unwrap();
    let cut = &onnx[..onnx.len() / 3];
    std::fs::write(truncated.join("full.onnx"), cut).unwrap();
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(truncated.join("manifest.json")).unwrap()).unwrap();
    manifest["files"]["full.onnx"] = serde_json::to_value(shared::FileEntry::of(cut)).unwrap();
    std::fs::write(truncated.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (status, body) = admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": truncated}))).await;
    assert_eq!(status, 422, "{body}");

    let ready = o.json("/readyz").await;
    assert_eq!(ready["model"]["version"], v1.as_str());
    assert!(ready["last_reload_error"].as_str().unwrap().contains("full.onnx"));
    assert_eq!(o.post(json!({"history": ["50"]})).await.status(), 200, "still serving");
    assert!(o.metrics().await.contains(r#"model_reloads_total{result="error"} 2"#));

    // A good model with a new version swaps in; rollback returns to the old one.
    let good = copy_dir(&movielens(), "v2");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(good.join("manifest.json")).unwrap()).unwrap();
    manifest["version"] = json!("movielens-test-v2");
    std::fs::write(good.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (status, body) = admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": good}))).await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = o.post(json!({"history": ["50"]})).await.json().await.unwrap();
    assert_eq!(answer["model"]["version"], "movielens-test-v2");
    assert!(o.json("/readyz").await["last_reload_error"].is_null());
    let (status, body) = admin(&o, "/admin/rollback", Some(TOKEN), None).await;
    assert_eq!((status, body["model"]["version"].as_str().unwrap()), (200, v1.as_str()));
    let answer: Value = o.post(json!({"history": ["50"]})).await.json().await.unwrap();
    assert_eq!(answer["model"]["version"], v1.as_str());

    // SIGHUP reloads the configured directory.
    o.signal("HUP");
    let started = Instant::now();
    while !o.metrics().await.contains(r#"model_reloads_total{result="ok"} 3"#) {
        assert!(started.elapsed() < Duration::from_secs(30), "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for dir in [bad, truncated, good] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn a_burst_beyond_capacity_is_shed_with_503_and_retry_after() {
    let o = Origin::start(&movielens(), &["--max-concurrency", "4", "--inference-workers", "1"]).await;
    let long: Vec<String> = (1..=400).map(|i| i.to_string()).collect();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (client, url, body) = (o.client.clone(), o.url("/v1/recommendations"), json!({"history": long, "k": 50}));
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&body).send().await.unwrap();
            (r.status().as_u16(), r.headers().get("retry-after").is_some())
        }));
    }
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        match t.await.unwrap() {
            (200, _) => ok += 1,
            (503, true) => shed += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert!(ok >= 4 && shed > 0, "ok={ok} shed={shed}");
    assert!(o.metrics().await.contains("requests_shed_total"));
    assert_eq!(o.post(json!({"history": ["50"]})).await.status(), 200, "recovers after the burst");
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    // Requests wait up to 300 ms for their batch, so they are in flight when SIGTERM lands.
    let mut o = Origin::start(&movielens(), &["--max-queue-delay-us", "300000", "--max-batch", "64"]).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url) = (o.client.clone(), o.url("/v1/recommendations"));
        tasks.push(tokio::spawn(async move { client.post(url).json(&json!({"history": ["50"]})).send().await.map(|r| r.status().as_u16()) }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    o.signal("TERM");
    for t in tasks {
        assert_eq!(t.await.unwrap().expect("in-flight request completed"), 200);
    }
    let started = Instant::now();
    loop {
        if let Some(status) = o.child.try_wait().unwrap() {
            assert!(status.success(), "origin exited with {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "origin did not exit after draining");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(o.client.get(o.url("/healthz")).send().await.is_err(), "no longer listening");
}

#[tokio::test]
async fn rate_limit_deadline_and_empty_rollback_answer_in_json() {
    // Rate limit applied to loopback too: 2 per second, burst 2 → the third request in a row is 429.
    let o = Origin::start(&movielens(), &["--rate-limit-per-s", "2", "--rate-limit-burst", "2", "--rate-limit-loopback"]).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = o.post(json!({"history": ["50"]})).await;
        if r.status() == 429 {
            assert!(r.headers().contains_key("retry-after"));
            let body: Value = r.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("rate limit"));
            statuses.push(429);
        } else {
            statuses.push(r.status().as_u16());
        }
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert_eq!(o.client.get(o.url("/healthz")).send().await.unwrap().status(), 200, "probes are not rate limited");
    // Nothing to roll back to yet.
    let (status, body) = admin(&o, "/admin/rollback", Some(TOKEN), None).await;
    assert_eq!(status, 409, "{body}");
    drop(o);

    // A 1 ms deadline with the batcher holding requests for 50 ms: 504, as JSON.
    let o = Origin::start(&movielens(), &["--request-timeout-ms", "1", "--max-queue-delay-us", "50000"]).await;
    let r = o.post(json!({"history": ["50"]})).await;
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("deadline"));
}
