//! The living shop end to end, under `wrangler dev`: events go edge →
//! Cloudflare Queue (Miniflare's) → origin → store and ride out an outage
//! of the origin; an item marked unavailable leaves the edge's answers —
//! origin, edge model and cached alike — within the 60 s goal.

use std::time::{Duration, Instant};

use e2e::procs::free_port;
use e2e::{Edge, Origin, ingest, repo};
use serde_json::{Value, json};

const EDGE_KEY: &str = "live-shop-edge-key-0123456789";
const ADMIN: &str = "live-shop-admin-token-0123456789";

fn store_url(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("edgerec-live-{tag}-{}-{}", std::process::id(), ingest::now_ms()));
    format!("sqlite:{}", dir.join("events.sqlite").display())
}

async fn origin(port: u16, store: &str) -> Origin {
    Origin::start_with(port, &repo().join("models/movielens"), &["--edge-key", EDGE_KEY, "--admin-token", ADMIN, "--events", store, "--catalog-poll-ms", "200"])
        .await
}

async fn present(store: &str, ids: Vec<String>) -> usize {
    let url = store.to_string();
    tokio::task::spawn_blocking(move || event_store::open(&url).and_then(|s| s.count_present(&ids))).await.unwrap().unwrap()
}

/// Polls the store until all of `ids` are there; how long it took.
async fn until_stored(store: &str, ids: &[String], limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let n = present(store, ids.to_vec()).await;
        if n == ids.len() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "{n} of {} events in the store after {limit:?}", ids.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn post_events(client: &reqwest::Client, edge: &Edge, body: String) -> (u16, Value) {
    let r = client.post(format!("{}/v1/events", edge.url())).header("content-type", "application/json").body(body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn events_reach_the_store_through_the_queue_and_ride_out_an_origin_outage() {
    let store = store_url("queue");
    let port = free_port();
    let mut o = origin(port, &store).await;
    let edge = Edge::start(&[("ORIGIN_URL", &o.url()), ("ORIGIN_SECRET", EDGE_KEY)]).await;
    let client = reqwest::Client::new();

    let first = ingest::events("edge-a", 120, ingest::now_ms());
    let (status, body) = post_events(&client, &edge, ingest::body(&first)).await;
    assert_eq!((status, body["queued"].as_u64()), (202, Some(120)), "{body}");
    let took = until_stored(&store, &first.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), Duration::from_secs(60)).await;
    eprintln!("LIVE edge → queue → origin → store: {:.2} s", took.as_secs_f64());
    // A logged-in shopper without a history: the edge asks the origin, which reads the store.
    let user = first[0].user_id.clone().unwrap();
    let by_user: Value = client.get(format!("{}/v1/recommendations?user_id={user}&k=5", edge.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(by_user["source"], "origin", "{by_user}");
    assert_eq!(by_user["items"].as_array().unwrap().len(), 5);

    // The edge checks a batch with the origin's rules before queueing it.
    let mut bad = serde_json::to_value(&first[..2]).unwrap();
    bad[1]["time"] = "yesterday".into();
    let (status, body) = post_events(&client, &edge, json!({ "events": bad }).to_string()).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("events[1].time")), "{body}");
    let many = ingest::events("edge-many", 501, ingest::now_ms());
    assert_eq!(post_events(&client, &edge, ingest::body(&many)).await.0, 413);

    // Every origin down: the edge still takes events, the queue keeps them,
    // and they arrive once the origin is back (retry_delay 2 s locally).
    o.kill();
    let during = ingest::events("edge-outage", 80, ingest::now_ms());
    let (status, _) = post_events(&client, &edge, ingest::body(&during)).await;
    assert_eq!(status, 202, "the queue accepts while the origin is down");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ids: Vec<String> = during.iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(present(&store, ids.clone()).await, 0, "nothing can be stored while the origin is down");
    let _back = origin(port, &store).await;
    let took = until_stored(&store, &ids, Duration::from_secs(90)).await;
    eprintln!("LIVE events queued during the outage stored {:.2} s after the origin came back", took.as_secs_f64());
}

async fn edge_ids(client: &reqwest::Client, edge: &Edge, query: &str) -> (Vec<String>, String) {
    let v: Value = client.get(format!("{}/v1/recommendations?{query}", edge.url())).send().await.unwrap().json().await.unwrap();
    let ids = v["items"].as_array().unwrap_or_else(|| panic!("{v}")).iter().map(|i| i["item_id"].as_str().unwrap().to_string()).collect();
    (ids, v["source"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn a_hidden_item_leaves_every_edge_answer_within_a_minute() {
    let store = store_url("hide");
    let port = free_port();
    let mut o = origin(port, &store).await;
    let edge = Edge::start(&[("ORIGIN_URL", &o.url()), ("ORIGIN_SECRET", EDGE_KEY)]).await;
    let client = reqwest::Client::new();
    let query = "history=50,172,181&k=10";
    let (before, source) = edge_ids(&client, &edge, query).await;
    assert_eq!(source, "origin");
    let hidden = before[0].clone();
    // Answers of the edge model for another history hold it too, to be checked once the origin is gone.
    let put = client.put(format!("{}/v1/items/{hidden}", o.url())).bearer_auth(ADMIN).json(&json!({ "available": false })).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let hidden_at = Instant::now();
    let mut origin_gone = None;
    loop {
        let (ids, _) = edge_ids(&client, &edge, query).await;
        if !ids.contains(&hidden) {
            assert_eq!(ids.len(), 10, "k is still filled: {ids:?}");
            break;
        }
        if origin_gone.is_none() {
            let direct: Value = client
                .get(format!("{}/v1/recommendations?{query}", o.url()))
                .header("x-edgerec-edge-key", EDGE_KEY)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if direct["items"].as_array().unwrap().iter().all(|i| i["item_id"] != hidden.as_str()) {
                origin_gone = Some(hidden_at.elapsed());
            }
        }
        assert!(hidden_at.elapsed() < Duration::from_secs(60), "{hidden} still in the edge's answers after 60 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let at_edge = hidden_at.elapsed();
    eprintln!("LIVE hidden item gone: origin {:.2} s, edge {:.2} s", origin_gone.unwrap_or(at_edge).as_secs_f64(), at_edge.as_secs_f64());
    // With the origin gone the edge model and the cache answer: the item stays out.
    o.kill();
    for q in [query, "history=50,172&k=10", "history=181&k=20"] {
        let (ids, source) = edge_ids(&client, &edge, q).await;
        assert_ne!(source, "origin");
        assert!(!ids.contains(&hidden), "{q} from {source}: {ids:?}");
    }
}
