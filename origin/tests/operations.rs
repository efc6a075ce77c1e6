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
    // Rolled away from v2: a second rollback does not bring it back.
    assert_eq!(admin(&o, "/admin/rollback", Some(TOKEN), None).await.0, 409);
    assert_eq!(o.json("/readyz").await["model"]["version"], v1.as_str());

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

/// A copy of the MovieLens model under the temp dir with manifest version `version`.
fn version_dir(version: &str) -> std::path::PathBuf {
    let dir = copy_dir(&movielens(), version);
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest["version"] = json!(version);
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    dir
}

/// Hardening 13: reloads run in the order asked (a slow older one cannot
/// override a newer one), rollback walks back through the good versions,
/// and `path` may only name directories under the models root.
#[tokio::test]
async fn model_changes_are_serialized_and_rollback_walks_back() {
    let o = Origin::start(&movielens(), &[]).await;
    let v1 = o.json("/readyz").await["model"]["version"].as_str().unwrap().to_string();
    let dirs: Vec<_> = ["hist-a", "hist-b", "hist-c"].into_iter().map(version_dir).collect();
    // The slow one (Instacart: a much larger model) is asked first, the fast one right after.
    let slow = repo_instacart_copy();
    let first = {
        let (client, url, body) = (o.client.clone(), o.url("/admin/reload"), json!({"path": slow}));
        tokio::spawn(async move { client.post(url).bearer_auth(TOKEN).json(&body).send().await.unwrap().status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": dirs[0]}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(o.json("/readyz").await["model"]["version"], "hist-a", "the reload asked for last is the one serving");
    for d in &dirs[1..] {
        assert_eq!(admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": d}))).await.0, 200);
    }
    let ready = o.json("/readyz").await;
    assert_eq!(ready["model"]["version"], "hist-c");
    let instacart_version = ready["history"][2].as_str().unwrap().to_string();
    assert_eq!((&ready["history"][0], &ready["history"][1]), (&json!("hist-b"), &json!("hist-a")));
    // Rollback walks back: c → b → a → instacart → v1, then nothing is left.
    for expected in ["hist-b", "hist-a", instacart_version.as_str(), v1.as_str()] {
        let (status, body) = admin(&o, "/admin/rollback", Some(TOKEN), None).await;
        assert_eq!((status, body["model"]["version"].as_str().unwrap()), (200, expected), "{body}");
    }
    assert_eq!(admin(&o, "/admin/rollback", Some(TOKEN), None).await.0, 409);
    // Outside the models root (the temp dir in these tests): refused, nothing loaded.
    for escape in [json!("/etc"), json!(format!("{}/../..", dirs[0].display()))] {
        let (status, body) = admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": escape}))).await;
        assert_eq!((status, body["field"].as_str()), (422, Some("path")), "{body}");
    }
    assert_eq!(o.json("/readyz").await["model"]["version"], v1.as_str());
    for d in dirs.into_iter().chain([slow]) {
        let _ = std::fs::remove_dir_all(d);
    }
}

fn repo_instacart_copy() -> std::path::PathBuf {
    let src = common::repo().join("models/instacart");
    assert!(src.join("manifest.json").exists(), "{} missing: run `cargo xtask train`", src.display());
    copy_dir(&src, "hist-slow")
}

/// Hardening 11: with an edge key, /v1 answers only the edge; operator
/// details need the admin token; the public /readyz says ready and nothing else.
#[tokio::test]
async fn the_origin_answers_its_edge_and_operators_only() {
    let o = Origin::start(&movielens(), &["--edge-key", "edge-s3cret-credential"]).await;
    let anon = o.post(json!({"history": ["50"]})).await;
    assert_eq!(anon.status(), 401);
    let body: Value = anon.json().await.unwrap();
    assert_eq!(body["field"], "x-edgerec-edge-key");
    let wrong = o.client.get(o.url("/v1/recommendations?history=50")).header("x-edgerec-edge-key", "edge-s3cret-credentiaL").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = o.client.get(o.url("/v1/recommendations?history=50")).header("x-edgerec-edge-key", "edge-s3cret-credential").send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let public: Value = o.client.get(o.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(public, json!({"status": "ready"}), "no paths, library locations or reload errors in public");
    assert_eq!(o.client.get(o.url("/metrics")).send().await.unwrap().status(), 401);
    assert!(o.json("/readyz").await["model"]["dir"].is_string(), "the operator still sees the details");
}

/// Hardening 14: behind a vouched edge each shopper has their own bucket;
/// an unvouched forwarded header changes nothing.
#[tokio::test]
async fn rate_limits_follow_the_shopper_the_edge_vouches_for() {
    let o = Origin::start(&movielens(), &["--edge-key", "k-0123456789abcdef", "--rate-limit-per-s", "1", "--rate-limit-burst", "2"]).await;
    let ask = |ip: &'static str| {
        let (client, url) = (o.client.clone(), o.url("/v1/recommendations?history=50"));
        async move { client.get(url).header("x-edgerec-edge-key", "k-0123456789abcdef").header("x-edgerec-client-ip", ip).send().await.unwrap().status().as_u16() }
    };
    let a: Vec<u16> = one_after_another(vec![ask("198.51.100.1"), ask("198.51.100.1"), ask("198.51.100.1")]).await;
    assert_eq!(a.iter().filter(|&&s| s == 429).count(), 1, "{a:?}");
    assert_eq!(ask("198.51.100.2").await, 200, "another shopper behind the same edge is not throttled");
}

async fn one_after_another<F: std::future::Future<Output = u16>>(fs: Vec<F>) -> Vec<u16> {
    let mut out = Vec::new();
    for f in fs {
        out.push(f.await);
    }
    out
}

/// Hardening 15: connections that never finish their headers are closed
/// after the header-read timeout, connections past the cap at once, and
/// normal requests are answered all along.
#[tokio::test]
async fn slow_clients_are_closed_while_others_are_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let o = Origin::start(&movielens(), &["--header-read-timeout-ms", "1000", "--max-connections", "150"]).await;
    let addr = o.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"GET /v1/recommendations?history=50 HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    assert_eq!(o.post(json!({"history": ["50"]})).await.status(), 200, "served beside 100 slow clients");
    // 100 more: about 50 fit under the cap of 150 (the slow ones and the
    // client's own hold the rest); those past it are closed at once, well
    // before the 1 s header timeout could close them.
    let mut over = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        over.spawn(async move {
            let mut buf = [0u8; 1];
            matches!(tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await, Ok(Ok(0) | Err(_)))
        });
    }
    let closed_at_once = over.join_all().await.into_iter().filter(|&closed| closed).count();
    assert!((40..=60).contains(&closed_at_once), "{closed_at_once} of 100 connections past the cap were closed at once");
    // The slow ones: closed by the server after about a second (EOF or an error answer, then EOF).
    for mut s in slow {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a slow connection was still open after {:?}", started.elapsed());
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    // On a new connection: the client's pooled one from the first request has
    // been idle past the 1 s header timeout, which the server applies between
    // requests too, so it is closed (and reusing it races that close).
    let fresh = reqwest::Client::new().post(o.url("/v1/recommendations")).json(&json!({"history": ["50"]})).send().await.expect("a new connection is served");
    assert_eq!(fresh.status(), 200, "still serving");
}

#[tokio::test]
async fn a_burst_beyond_capacity_is_shed_with_503_and_retry_after() {
    let o = Origin::start(&movielens(), &["--max-concurrency", "4", "--inference-workers", "1", "--request-timeout-ms", "10000"]).await;
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
    let mut o = Origin::start(&movielens(), &["--max-queue-delay-us", "300000", "--max-batch", "64", "--request-timeout-ms", "5000"]).await;
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
        if let Some(status) = o.process.try_wait() {
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

/// Hardening round 2, item 4: one client could hold every connection slot
/// (idle keep-alive connections refreshed just under the header timeout, or
/// trickling bodies). Now one client address holds at most
/// `--max-connections-per-client`; another address is still served.
#[tokio::test]
async fn one_client_cannot_hold_every_connection_slot() {
    use tokio::io::AsyncReadExt;
    let o = Origin::start(&movielens(), &["--max-connections-per-client", "20", "--max-connections", "100"]).await;
    let addr: std::net::SocketAddr = o.base.trim_start_matches("http://").parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The 21st from 127.0.0.1 is closed at once (EOF long before the 10 s header timeout).
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0) | Err(_))), "the client's 21st connection stayed open: {closed:?}");
    // Another loopback address is another client, and is served meanwhile.
    let other = reqwest::Client::builder().local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap()).build().unwrap();
    let r = other.post(o.url("/v1/recommendations")).json(&json!({"history": ["50"]})).send().await.expect("another client is served");
    assert_eq!(r.status(), 200);
    // Once the first client lets go, it is served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fresh = reqwest::Client::new().post(o.url("/v1/recommendations")).json(&json!({"history": ["50"]})).send().await.expect("served again");
    assert_eq!(fresh.status(), 200);
}

/// Hardening round 2, item 3: each distinct method was a new, never dropped
/// Prometheus series.
#[tokio::test]
async fn ten_thousand_methods_leave_a_handful_of_method_labels() {
    let o = Origin::start(&movielens(), &[]).await;
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let (client, url) = (o.client.clone(), o.url("/v1/recommendations?history=50"));
        set.spawn(async move {
            for i in (worker..10_000).step_by(8) {
                let m = reqwest::Method::from_bytes(format!("X{i:04}").as_bytes()).unwrap();
                client.request(m, &url).send().await.unwrap();
            }
        });
    }
    set.join_all().await;
    let metrics = o.metrics().await;
    let methods: std::collections::HashSet<&str> =
        metrics.lines().filter(|l| l.starts_with("http_requests_total")).filter_map(|l| l.split("method=\"").nth(1)?.split('"').next()).collect();
    assert!(methods.len() <= 3, "{methods:?}");
    assert!(methods.contains("other"), "{methods:?}");
}

/// Hardening round 2, item 12: a reload whose caller hung up is carried
/// through (the new version serves and the log says so), not thrown away.
#[tokio::test]
async fn a_reload_whose_caller_hangs_up_still_completes() {
    use tokio::io::AsyncWriteExt;
    let o = Origin::start(&movielens(), &[]).await;
    let v2 = copy_dir(&movielens(), "hangup");
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(v2.join("manifest.json")).unwrap()).unwrap();
    manifest["version"] = json!("hangup-v2");
    std::fs::write(v2.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let body = json!({ "path": v2 }).to_string();
    let addr = o.base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /admin/reload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // Model changes run one at a time: three reloads ahead of this one make
    // it wait its turn, and its caller hangs up while it waits.
    let mut ahead = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let (client, url) = (o.client.clone(), o.url("/admin/reload"));
        ahead.spawn(async move { client.post(url).bearer_auth(TOKEN).send().await.unwrap().status().as_u16() });
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(s);
    assert_eq!(ahead.join_all().await, vec![200; 3]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if o.json("/readyz").await["model"]["version"] == "hangup-v2" {
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned reload never swapped in");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = std::fs::remove_dir_all(v2);
}

/// Hardening round 2, item 8: the origin trusted the manifest's item count.
/// A directory whose manifest and catalog agree on one item fewer than the
/// ONNX file scores passed the one-item warm-up and failed under load; now
/// the file's own metadata is checked and the reload refused.
#[tokio::test]
async fn a_manifest_that_miscounts_the_model_is_refused() {
    let o = Origin::start(&movielens(), &[]).await;
    let v1 = o.json("/readyz").await["model"]["version"].as_str().unwrap().to_string();
    let bad = copy_dir(&movielens(), "miscount");
    let mut catalog: Value = serde_json::from_slice(&std::fs::read(bad.join("catalog.json")).unwrap()).unwrap();
    catalog["items"].as_array_mut().unwrap().pop();
    let n = catalog["items"].as_array().unwrap().len();
    let bytes = serde_json::to_vec(&catalog).unwrap();
    std::fs::write(bad.join("catalog.json"), &bytes).unwrap();
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(bad.join("manifest.json")).unwrap()).unwrap();
    manifest["files"]["catalog.json"] = serde_json::to_value(shared::FileEntry::of(&bytes)).unwrap();
    manifest["catalog_items"] = json!(n);
    manifest["models"]["full"]["n_items"] = json!(n);
    manifest["models"]["full"]["top_k"] = json!(shared::contract::output_top_k(n));
    manifest["version"] = json!("miscounted");
    std::fs::write(bad.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    let (status, body) = admin(&o, "/admin/reload", Some(TOKEN), Some(json!({"path": bad}))).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("manifest says"), "{body}");
    assert_eq!(o.json("/readyz").await["model"]["version"], v1.as_str(), "the good model keeps serving");
    let _ = std::fs::remove_dir_all(bad);
}
