//! The recommendation API of a real origin process on the real MovieLens model.

mod common;

use common::{Origin, movielens};
use serde_json::{Value, json};

#[tokio::test]
async fn answers_with_titles_source_and_model() {
    let o = Origin::start(&movielens(), &[]).await;
    assert_eq!(o.json("/healthz").await["status"], "ok");
    let ready = o.json("/readyz").await;
    assert_eq!(ready["model"]["backend"], "tract");
    assert_eq!(ready["model"]["dataset"], "movielens");
    assert!(ready["model"]["items"].as_u64().unwrap() > 1000);

    let r = o.client.post(o.url("/v1/recommendations")).header("x-request-id", "req-42").json(&json!({"history": ["50", "172"], "k": 7})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-42");
    assert_eq!(r.headers()["x-rec-source"], "origin");
    let body: Value = r.json().await.unwrap();
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 7);
    assert!(items.iter().all(|i| i["title"].is_string() && i["item_id"] != "50" && i["item_id"] != "172"));
    assert_eq!(body["source"], "origin");
    assert_eq!(body["model"]["name"], "full");
    assert_eq!(body["model"]["version"], ready["model"]["version"]);
    assert!(items.iter().any(|i| i["title"].as_str().unwrap().starts_with("Return of the Jedi")), "{items:?}");

    // The GET form answers the same, cacheable.
    let g = o.client.get(o.url("/v1/recommendations?history=50,172&k=7")).send().await.unwrap();
    assert!(g.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    assert!(g.headers().contains_key("x-request-id"), "a request id is generated when none is sent");
    let gbody: Value = g.json().await.unwrap();
    assert_eq!(gbody["items"], body["items"]);
    // exclude_seen=false lets the history's items rank.
    let all: Value = o.post(json!({"history": ["50", "172"], "k": 100, "exclude_seen": false})).await.json().await.unwrap();
    assert_eq!(all["items"].as_array().unwrap().len(), 100);
}

#[tokio::test]
async fn unknown_ids_are_warnings_and_no_known_id_gets_popular() {
    let o = Origin::start(&movielens(), &[]).await;
    let body: Value = o.post(json!({"history": ["50", "no-such-movie"]})).await.json().await.unwrap();
    assert_eq!(body["source"], "origin");
    assert!(body["warnings"][0].as_str().unwrap().contains("no-such-movie"));
    let r = o.post(json!({"history": ["nope"], "k": 5, "user_id": "u1"})).await;
    assert_eq!(r.headers()["x-rec-source"], "popular");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["source"], "popular");
    assert_eq!(body["items"].as_array().unwrap().len(), 5);
}

async fn expect_error(r: reqwest::Response, status: u16, field: Option<&str>) {
    assert_eq!(r.status(), status);
    let body: Value = r.json().await.expect("error bodies are JSON");
    assert!(body["error"].is_string(), "{body}");
    if let Some(f) = field {
        assert_eq!(body["field"], f, "{body}");
    }
}

#[tokio::test]
async fn every_bad_request_gets_a_json_4xx_naming_the_field() {
    let o = Origin::start(&movielens(), &[]).await;
    let post_raw = |body: &'static str, ct: &'static str| o.client.post(o.url("/v1/recommendations")).header("content-type", ct).body(body).send();
    expect_error(post_raw("{\"history\": [", "application/json").await.unwrap(), 400, None).await;
    expect_error(post_raw("{\"history\": []}", "text/plain").await.unwrap(), 415, None).await;
    expect_error(o.post(json!({"history": [], "k": 0})).await, 422, Some("k")).await;
    expect_error(o.post(json!({"history": [], "k": 101})).await, 422, Some("k")).await;
    let long: Vec<String> = (0..501).map(|i| i.to_string()).collect();
    expect_error(o.post(json!({"history": long})).await, 422, Some("history")).await;
    expect_error(o.post(json!({"history": ["1", -5]})).await, 422, Some("history[1]")).await;
    expect_error(o.post(json!({"history": "50"})).await, 422, Some("history")).await;
    expect_error(o.post(json!({"k": 3})).await, 422, Some("history")).await;
    expect_error(o.post(json!({"history": [], "bogus": 1})).await, 422, Some("bogus")).await;
    let huge = format!("{{\"history\": [\"{}\"]}}", "9".repeat(70 * 1024));
    let r = o.client.post(o.url("/v1/recommendations")).header("content-type", "application/json").body(huge).send().await.unwrap();
    expect_error(r, 413, Some("body")).await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let r = o.client.post(o.url("/v1/recommendations")).header("content-type", "application/json").body(deep).send().await.unwrap();
    assert!(r.status().is_client_error(), "deep JSON: {}", r.status());
    expect_error(o.client.get(o.url("/v1/recommendations?history=1&k=abc")).send().await.unwrap(), 422, Some("k")).await;
    expect_error(o.client.get(o.url("/v1/recommendations?history=1&exclude_seen=maybe")).send().await.unwrap(), 422, Some("exclude_seen")).await;
    expect_error(o.client.put(o.url("/v1/recommendations")).send().await.unwrap(), 405, None).await;
    expect_error(o.client.get(o.url("/nope")).send().await.unwrap(), 404, None).await;
    // Still healthy after all that.
    assert_eq!(o.post(json!({"history": ["50"]})).await.status(), 200);
}

#[tokio::test]
async fn metrics_report_requests_inference_and_model() {
    let o = Origin::start(&movielens(), &[]).await;
    for _ in 0..3 {
        o.post(json!({"history": ["50"]})).await;
    }
    o.post(json!({"history": [], "k": 0})).await;
    let m = o.metrics().await;
    assert!(m.contains(r#"http_requests_total{route="/v1/recommendations",method="POST",status="200"} 3"#), "{m}");
    assert!(m.contains(r#"status="422""#));
    assert!(m.contains("http_request_duration_seconds_bucket"));
    assert!(m.contains(r#"inference_duration_seconds_count{backend="tract"}"#));
    assert!(m.contains("inference_batch_size_bucket"));
    assert!(m.contains("model_info{version=\"movielens-"));
}

#[tokio::test]
async fn onnx_runtime_backend_agrees_with_tract() {
    let Some(lib) = e2e::procs::ort_lib() else {
        panic!("libonnxruntime.so not found in .venv: run `cargo xtask setup`");
    };
    let tract = Origin::start(&movielens(), &[]).await;
    let ort = Origin::start(&movielens(), &["--backend", "ort-cpu", "--ort-lib", lib.to_str().unwrap()]).await;
    assert_eq!(ort.json("/readyz").await["model"]["backend"], "ort-cpu");
    for history in [json!(["50", "172"]), json!(["1", "2", "3", "100"]), json!(["300"])] {
        let a: Value = tract.post(json!({"history": history, "k": 20})).await.json().await.unwrap();
        let b: Value = ort.post(json!({"history": history, "k": 20})).await.json().await.unwrap();
        assert_eq!(b["model"]["backend"], "ort-cpu");
        let ids = |v: &Value| v["items"].as_array().unwrap().iter().map(|i| i["item_id"].clone()).collect::<Vec<_>>();
        assert_eq!(ids(&a), ids(&b), "same ranking from both backends");
        for (x, y) in a["items"].as_array().unwrap().iter().zip(b["items"].as_array().unwrap()) {
            assert!((x["score"].as_f64().unwrap() - y["score"].as_f64().unwrap()).abs() < 1e-4);
        }
    }
}
