//! Events and the live catalog on real origin processes, against both real
//! stores: an SQLite file, and the PostgreSQL server set-up started.

mod common;

use std::time::{Duration, Instant};

use common::{Origin, TOKEN, movielens};
use e2e::ingest;
use serde_json::{Value, json};

async fn origin_on(store: &str) -> Origin {
    Origin::start(&movielens(), &["--events", store, "--catalog-poll-ms", "200"]).await
}

fn sqlite_url(tag: &str) -> String {
    let dir = std::env::temp_dir().join(format!("edgerec-events-{tag}-{}-{}", std::process::id(), ingest::now_ms()));
    format!("sqlite:{}", dir.join("events.sqlite").display())
}

/// Nothing acknowledged is lost: SIGKILL in the middle of a load of
/// batches, then every acknowledged `event_id` is in the store.
async fn acknowledged_events_survive_a_sigkill(store: &str) {
    for rep in 0..3 {
        let mut o = origin_on(store).await;
        let base = o.base.clone();
        let run = ingest::crash_run(&base, store, 50, 4, 2_000, || o.process.kill()).await;
        assert!(run.acknowledged >= 2_000, "rep {rep}: only {} events acknowledged before the kill", run.acknowledged);
        assert_eq!(run.found, run.acknowledged, "rep {rep}: acknowledged events lost after SIGKILL ({} batches sent)", run.sent_batches);
    }
}

#[tokio::test]
async fn sqlite_keeps_every_acknowledged_event_through_a_sigkill() {
    acknowledged_events_survive_a_sigkill(&sqlite_url("crash")).await;
}

#[tokio::test]
async fn postgres_keeps_every_acknowledged_event_through_a_sigkill() {
    acknowledged_events_survive_a_sigkill(&ingest::pg_database("crash")).await;
}

async fn ids(o: &Origin, query: &str) -> Vec<String> {
    let v: Value = o.client.get(o.url(&format!("/v1/recommendations?{query}"))).send().await.unwrap().json().await.unwrap();
    v["items"].as_array().unwrap_or_else(|| panic!("{v}")).iter().map(|i| i["item_id"].as_str().unwrap().to_string()).collect()
}

/// Polls until `pred` holds on `o`'s answer to `query`; the seconds it took.
async fn until(o: &Origin, query: &str, limit: Duration, pred: impl Fn(&[String]) -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let got = ids(o, query).await;
        if pred(&got) {
            return started.elapsed().as_secs_f64();
        }
        assert!(started.elapsed() < limit, "{query}: still {got:?} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two origins on one PostgreSQL store: an item hidden through one leaves
/// the other's answers within its poll, a shopper's events sent to one make
/// the other's answer, and an event retried through the other is stored once.
#[tokio::test]
async fn origins_sharing_postgres_share_catalog_and_histories() {
    let store = ingest::pg_database("shared");
    let (a, b) = (origin_on(&store).await, origin_on(&store).await);
    let query = "history=50,172,181&k=10";
    let top = ids(&b, query).await[0].clone();
    let put = a.client.put(a.url(&format!("/v1/items/{top}"))).bearer_auth(TOKEN).json(&json!({ "available": false })).send().await.unwrap();
    assert_eq!(put.status(), 200);
    let took = until(&b, query, Duration::from_secs(10), |got| !got.contains(&top) && got.len() == 10).await;
    eprintln!("hidden at the other origin after {took:.2} s");
    // Back again.
    a.client.put(a.url(&format!("/v1/items/{top}"))).bearer_auth(TOKEN).json(&json!({ "available": true })).send().await.unwrap();
    until(&b, query, Duration::from_secs(10), |got| got.contains(&top)).await;

    let evs = ingest::events("phone", 3, ingest::now_ms());
    let user = evs[0].user_id.clone().unwrap();
    let one = vec![evs[0].clone()];
    assert_eq!(ingest::post(&a.client, &a.base, &one).await, Ok(1));
    let v: Value = b.client.post(b.url("/v1/events")).json(&json!({ "events": one })).send().await.unwrap().json().await.unwrap();
    assert_eq!((v["stored"].as_u64(), v["duplicates"].as_u64()), (Some(0), Some(1)), "retried through another origin: stored once ({v})");
    let laptop: Value = b.client.get(b.url(&format!("/v1/recommendations?user_id={user}&k=5"))).send().await.unwrap().json().await.unwrap();
    assert_eq!(laptop["source"], "origin", "the history sent to A answers at B: {laptop}");
    let laptop_ids: Vec<&str> = laptop["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert!(!laptop_ids.contains(&evs[0].item_id.as_str()), "the stored history's item is seen: {laptop_ids:?}");
}

/// Both stores: a retired item never comes back in any answer form, and
/// `category=`/`exclude=` hold with `k` still filled.
async fn catalog_rules_hold(store: &str) {
    let o = origin_on(store).await;
    let query = "history=50,172,181&k=10";
    let before = ids(&o, query).await;
    let (gone, other) = (before[0].clone(), before[1].clone());
    let put = |id: &str, body: Value| o.client.put(o.url(&format!("/v1/items/{id}"))).bearer_auth(TOKEN).json(&body).send();
    assert_eq!(put(&gone, json!({ "title": "Gone", "categories": ["drama"] })).await.unwrap().status(), 200);
    let del = o.client.delete(o.url(&format!("/v1/items/{gone}"))).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(del.status(), 200);
    let after = ids(&o, query).await;
    assert!(!after.contains(&gone) && after.len() == 10, "{after:?}");
    let post: Value = o.post(json!({ "history": ["50", "172", "181"], "k": 10 })).await.json().await.unwrap();
    assert!(post["items"].as_array().unwrap().iter().all(|i| i["item_id"] != gone.as_str()), "the POST form too");
    // exclude= (e.g. the cart) and category=.
    let ex = ids(&o, &format!("{query}&exclude={other}")).await;
    assert!(!ex.contains(&other) && ex.len() == 10, "{ex:?}");
    let bulk = o
        .client
        .put(o.url("/v1/items"))
        .bearer_auth(TOKEN)
        .json(&json!({ "items": [
            { "item_id": "1", "categories": ["animation"] }, { "item_id": "2", "categories": ["animation"] }, { "item_id": "3", "categories": ["drama"] }
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulk.status(), 200);
    let cat = ids(&o, &format!("{query}&category=animation")).await;
    assert_eq!(
        cat.iter().collect::<std::collections::BTreeSet<_>>(),
        ["1", "2"].iter().map(|s| s.to_string()).collect::<Vec<_>>().iter().collect(),
        "only the category's two items"
    );
    let bad = o.client.put(o.url("/v1/items")).bearer_auth(TOKEN).json(&json!({ "items": [{ "item_id": "4" }, { "categories": [] }] })).send().await.unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.unwrap()["field"], "items[1].item_id");
}

#[tokio::test]
async fn sqlite_catalog_rules_hold_in_every_answer() {
    catalog_rules_hold(&sqlite_url("rules")).await;
}

#[tokio::test]
async fn postgres_catalog_rules_hold_in_every_answer() {
    catalog_rules_hold(&ingest::pg_database("rules")).await;
}
