//! The origin's answers, 4xx and 5xx included, through the real router and
//! its layers (`tower::ServiceExt::oneshot`), with a fake backend: no trained
//! model, no socket.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use clap::Parser;
use serde_json::{Value, json};
use shared::inference::Ranked;
use shared::{Catalog, CatalogItem, InferenceError, Manifest, ModelKind, RankingPolicy};
use tower::ServiceExt;

use crate::backend::Backend;
use crate::batcher::{BatchConfig, Batcher};
use crate::config::{BackendPref, ServeConfig};
use crate::model_store::{LoadSettings, LoadedModel, ModelStore};
use crate::server::app;
use crate::state::AppState;

const ITEMS: usize = 20;
const TOKEN: &str = "router-test-token";

/// How the fake model behaves.
#[derive(Clone, Copy)]
enum Fake {
    /// Ranks items by index, best first.
    Ranks,
    /// Every run fails.
    Fails,
    /// Every run takes this long.
    Sleeps(Duration),
}

impl Backend for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn run(&self, rows: &[Vec<(usize, f32)>]) -> Result<Vec<Ranked>, InferenceError> {
        match *self {
            Fake::Fails => Err(InferenceError::Contract("the fake model is broken".into())),
            Fake::Sleeps(d) => {
                std::thread::sleep(d);
                Ok(rows.iter().map(|_| ranked()).collect())
            }
            Fake::Ranks => Ok(rows.iter().map(|_| ranked()).collect()),
        }
    }
}

fn ranked() -> Ranked {
    Ranked { indices: (0..ITEMS).collect(), scores: (0..ITEMS).map(|i| (ITEMS - i) as f32).collect() }
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    serve: ServeConfig,
}

fn config(extra: &[&str]) -> ServeConfig {
    let mut argv = vec!["origin", "--models", "/nonexistent/models/fake", "--admin-token", TOKEN];
    argv.extend_from_slice(extra);
    Args::parse_from(argv).serve
}

fn model(fake: Fake) -> LoadedModel {
    let items = (0..ITEMS).map(|i| CatalogItem { id: format!("{i}"), title: Some(format!("Item {i}")), popularity: (ITEMS - i) as u64 }).collect();
    let batch = BatchConfig { max_batch: 8, max_queue_delay: Duration::ZERO, workers: 1, queue_capacity: 4 };
    LoadedModel {
        dir: "/nonexistent/models/fake".into(),
        manifest: Manifest {
            format: shared::manifest::MANIFEST_FORMAT,
            version: "fake-v1".into(),
            created_at: "2026-11-24T00:00:00Z".into(),
            dataset: "fake".into(),
            catalog_items: ITEMS,
            log_items: ITEMS,
            log_users: 1,
            log_interactions: 1,
            repeat_purchases: false,
            models: BTreeMap::new(),
            files: BTreeMap::new(),
            metrics: Value::Null,
        },
        policy: RankingPolicy::new(Catalog::new(items).unwrap(), ModelKind::Full, ITEMS).unwrap(),
        batcher: Batcher::start(Arc::new(fake), batch),
        backend: "fake",
        backend_reason: "router test".into(),
        load_seconds: 0.0,
    }
}

/// The router over a store serving `fake` (or nothing), with `extra` flags.
fn router(fake: Option<Fake>, extra: &[&str]) -> axum::Router {
    let cfg = config(extra);
    let settings = LoadSettings {
        backend: BackendPref::Tract,
        ort: None,
        batch: BatchConfig { max_batch: 8, max_queue_delay: Duration::ZERO, workers: 1, queue_capacity: 4 },
    };
    let store = Arc::new(ModelStore::new(settings));
    if let Some(f) = fake {
        store.serve_unverified(model(f));
    }
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let state = Arc::new(AppState {
        store,
        models_dir: cfg.models.clone(),
        models_root: cfg.models_root(),
        follower: None,
        admin_token: cfg.admin_token.clone(),
        metrics,
        live: live_data(),
        draining: Default::default(),
    });
    app(state, &cfg)
}

/// A live-data side over a fresh SQLite store of its own.
fn live_data() -> Arc<crate::live_data::LiveData> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("edgerec-router-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = event_store::sqlite::SqliteStore::open(&dir.join("events.sqlite")).unwrap();
    let (per_s, burst) = (std::num::NonZeroU32::new(5).unwrap(), std::num::NonZeroU32::new(20).unwrap());
    Arc::new(crate::live_data::LiveData::new(Arc::new(store), per_s, burst))
}

async fn send(router: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let mut req = req;
    req.extensions_mut().insert(ConnectInfo("203.0.113.9:4000".parse::<SocketAddr>().unwrap()));
    let r = router.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn post(body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/recommendations").header("content-type", "application/json").body(body.into()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn answers_from_the_fake_model_without_the_seen_items() {
    let r = router(Some(Fake::Ranks), &[]);
    let (status, body) = send(&r, post(r#"{"history": ["0", "2"], "k": 3}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ids: Vec<&str> = body["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["1", "3", "4"]);
    assert_eq!((body["source"].as_str(), body["model"]["dataset"].as_str()), (Some("origin"), Some("fake")));
}

#[tokio::test]
async fn every_client_error_is_json_naming_its_field() {
    let r = router(Some(Fake::Ranks), &[]);
    let long = format!(r#"{{"history": ["{}"]}}"#, "9".repeat(70_000));
    let cases: Vec<(Request<Body>, StatusCode, Option<&str>)> = vec![
        (post("{\"history\": ["), StatusCode::BAD_REQUEST, None),
        (post(long), StatusCode::PAYLOAD_TOO_LARGE, Some("body")),
        (Request::post("/v1/recommendations").header("content-type", "text/plain").body(Body::from("x")).unwrap(), StatusCode::UNSUPPORTED_MEDIA_TYPE, None),
        (post(r#"{"history": ["1"], "k": 0}"#), StatusCode::UNPROCESSABLE_ENTITY, Some("k")),
        (post(r#"{"history": ["1", -3]}"#), StatusCode::UNPROCESSABLE_ENTITY, Some("history[1]")),
        (post(r#"{"history": ["1,2"]}"#), StatusCode::UNPROCESSABLE_ENTITY, Some("history")),
        (get("/v1/recommendations?history=1&bogus=2"), StatusCode::BAD_REQUEST, None),
        (get("/v1/nope"), StatusCode::NOT_FOUND, None),
        (Request::delete("/v1/recommendations").body(Body::empty()).unwrap(), StatusCode::METHOD_NOT_ALLOWED, None),
        (Request::post("/admin/reload").body(Body::empty()).unwrap(), StatusCode::UNAUTHORIZED, None),
        (get("/metrics"), StatusCode::UNAUTHORIZED, None),
    ];
    for (req, want, field) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body) = send(&r, req).await;
        assert_eq!(status, want, "{what}: {body}");
        assert!(body["error"].is_string(), "{what}: JSON error body, got {body}");
        if let Some(f) = field {
            assert_eq!(body["field"], f, "{what}");
        }
    }
}

#[tokio::test]
async fn server_side_failures_are_503_500_and_504() {
    let (status, body) = send(&router(None, &[]), get("/v1/recommendations?history=1")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "no model yet: {body}");
    let (status, body) = send(&router(Some(Fake::Fails), &[]), get("/v1/recommendations?history=1")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(body["error"].as_str().unwrap().contains("broken"));
    let slow = router(Some(Fake::Sleeps(Duration::from_millis(300))), &["--request-timeout-ms", "50"]);
    let (status, body) = send(&slow, get("/v1/recommendations?history=1")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
}

#[tokio::test]
async fn the_edge_key_rate_limit_and_public_readiness() {
    let r = router(Some(Fake::Ranks), &["--edge-key", "k3y-0123456789abcdef", "--rate-limit-per-s", "1", "--rate-limit-burst", "1"]);
    let (status, body) = send(&r, get("/v1/recommendations?history=1")).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNAUTHORIZED, Some("x-edgerec-edge-key")));
    let keyed = || Request::get("/v1/recommendations?history=1").header("x-edgerec-edge-key", "k3y-0123456789abcdef").body(Body::empty()).unwrap();
    assert_eq!(send(&r, keyed()).await.0, StatusCode::OK);
    assert_eq!(send(&r, keyed()).await.0, StatusCode::TOO_MANY_REQUESTS, "the peer's bucket of 1 is spent");
    let (status, body) = send(&r, get("/readyz")).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ready"})));
    let (status, body) = send(&r, Request::get("/readyz").header("authorization", format!("Bearer {TOKEN}")).body(Body::empty()).unwrap()).await;
    assert_eq!((status, body["model"]["version"].as_str()), (StatusCode::OK, Some("fake-v1")));
    let (status, _) = send(&router(None, &[]), get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// A request body whose bytes never arrive (a stranger trickling nothing).
struct NeverArrives;

impl http_body::Body for NeverArrives {
    type Data = axum::body::Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::task::Poll::Pending
    }
}

/// Hardening round 2, item 4: `/admin/reload` read up to 2 MB of body, with
/// no time limit, before it checked the token.
#[tokio::test]
async fn admin_endpoints_check_the_token_before_reading_a_body() {
    let r = router(Some(Fake::Ranks), &[]);
    let stranger = Request::post("/admin/reload").header("content-type", "application/json").body(Body::new(NeverArrives)).unwrap();
    let answered = tokio::time::timeout(Duration::from_secs(2), send(&r, stranger)).await;
    let (status, body) = answered.expect("answered without waiting for the body");
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let big = Request::post("/admin/reload").header("authorization", format!("Bearer {TOKEN}")).body(Body::from(vec![b' '; 5_000])).unwrap();
    let (status, body) = send(&r, big).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("body")), "{body}");
}

/// Hardening round 2, item 3: any token is an HTTP method, and each one
/// became a Prometheus label value that was never dropped.
#[test]
fn method_labels_come_from_a_fixed_set() {
    let mut labels = std::collections::HashSet::new();
    for i in 0..10_000 {
        let m = axum::http::Method::from_bytes(format!("X{i:04}").as_bytes()).unwrap();
        labels.insert(crate::telemetry::method_label(&m));
    }
    for m in ["GET", "POST", "HEAD", "DELETE"] {
        labels.insert(crate::telemetry::method_label(&axum::http::Method::from_bytes(m.as_bytes()).unwrap()));
    }
    assert_eq!(labels.len(), 5, "{labels:?}");
    assert!(labels.contains("other"));
}

/// Hardening round 2, item 11: answers given for the edge credential said
/// `Cache-Control: public`, so a shared cache in front of the origin would
/// hand them to anyone.
#[tokio::test]
async fn answers_for_the_edge_credential_are_private() {
    let key = "edge-credential-0123";
    let r = router(Some(Fake::Ranks), &["--edge-key", key]);
    let mut req = Request::get("/v1/recommendations?history=1").header("x-edgerec-edge-key", key).body(Body::empty()).unwrap();
    req.extensions_mut().insert(ConnectInfo("203.0.113.9:4000".parse::<SocketAddr>().unwrap()));
    let resp = r.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["cache-control"], "private, no-store");
    let open = router(Some(Fake::Ranks), &[]);
    let mut req = get("/v1/recommendations?history=1");
    req.extensions_mut().insert(ConnectInfo("203.0.113.9:4000".parse::<SocketAddr>().unwrap()));
    let resp = open.oneshot(req).await.unwrap();
    assert!(resp.headers()["cache-control"].to_str().unwrap().starts_with("public, max-age="), "no credential: a shared cache may keep it");
}

/// Hardening round 2, item 15: settings that deploy silently wrong are refused at start-up.
#[test]
fn short_secrets_are_refused_at_start_up() {
    assert!(config(&[]).validate().is_ok(), "the test token is long enough");
    let mut short = config(&[]);
    short.admin_token = Some("admin".into());
    let e = short.validate().unwrap_err().to_string();
    assert!(e.contains("EDGEREC_ADMIN_TOKEN") && e.contains("5 bytes") && e.contains("16"), "{e}");
    assert!(config(&["--edge-key", "k"]).validate().unwrap_err().to_string().contains("EDGEREC_EDGE_KEY"));
    assert!(config(&["--max-connections-per-client", "0"]).validate().is_err());
}

fn events_body(events: &[serde_json::Value]) -> String {
    serde_json::json!({ "events": events }).to_string()
}

fn event(id: &str, user: &str, item: &str) -> serde_json::Value {
    serde_json::json!({ "event_id": id, "user_id": user, "item_id": item, "type": "view", "time": 1_796_000_000_000i64 })
}

fn post_events(body: String) -> Request<Body> {
    Request::post("/v1/events").header("content-type", "application/json").body(Body::from(body)).unwrap()
}

fn put_item(id: &str, body: serde_json::Value, token: Option<&str>) -> Request<Body> {
    let mut r = Request::put(format!("/v1/items/{id}")).header("content-type", "application/json");
    if let Some(t) = token {
        r = r.header("authorization", format!("Bearer {t}"));
    }
    r.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn events_are_stored_once_and_bad_ones_name_their_field() {
    let r = router(Some(Fake::Ranks), &[]);
    let batch = events_body(&[event("e1", "u1", "3"), event("e2", "u1", "4"), event("e3", "u1", "new-sku")]);
    let (status, body) = send(&r, post_events(batch.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["stored"].as_u64(), body["unknown_items"].as_u64()), (Some(3), Some(1)), "{body}");
    let (_, body) = send(&r, post_events(batch)).await;
    assert_eq!((body["stored"].as_u64(), body["duplicates"].as_u64()), (Some(0), Some(3)), "a retried batch is stored once: {body}");
    let mut bad = event("e4", "u1", "3");
    bad["time"] = "tomorrow".into();
    let (status, body) = send(&r, post_events(events_body(&[event("e5", "u1", "3"), bad]))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("events[1].time")), "{body}");
    let many: Vec<_> = (0..=shared::events::MAX_EVENTS_PER_BATCH).map(|i| event(&format!("m{i}"), "u2", "3")).collect();
    let (status, _) = send(&r, post_events(events_body(&many))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // One shopper past the per-shopper limit (burst 20 here): the rest are refused, not stored.
    let flood: Vec<_> = (0..30).map(|i| event(&format!("f{i}"), "flooder", "3")).collect();
    let (_, body) = send(&r, post_events(events_body(&flood))).await;
    assert_eq!((body["stored"].as_u64(), body["rate_limited"].as_u64()), (Some(20), Some(10)), "{body}");
}

#[tokio::test]
async fn a_logged_in_shopper_gets_the_stored_history() {
    let r = router(Some(Fake::Ranks), &[]);
    let (_, cold) = send(&r, get("/v1/recommendations?user_id=u9&k=3")).await;
    assert_eq!(cold["source"], "popular", "no history yet: {cold}");
    send(&r, post_events(events_body(&[event("h1", "u9", "0"), event("h2", "u9", "1")]))).await;
    let (status, warm) = send(&r, get("/v1/recommendations?user_id=u9&k=3")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(warm["source"], "origin", "the stored history went to the model: {warm}");
    let ids: Vec<&str> = warm["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["2", "3", "4"], "the stored history's items are seen, so left out");
}

#[tokio::test]
async fn hidden_items_leave_every_answer_and_writes_need_the_admin_token() {
    let r = router(Some(Fake::Ranks), &[]);
    let (_, before) = send(&r, get("/v1/recommendations?k=5")).await;
    let first = before["items"][0]["item_id"].as_str().unwrap().to_string();
    let (status, _) = send(&r, put_item(&first, serde_json::json!({ "available": false }), None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "item writes need the admin token");
    let (status, body) = send(&r, put_item(&first, serde_json::json!({ "available": false }), Some(TOKEN))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for uri in ["/v1/recommendations?k=5", "/v1/recommendations?history=1,2&k=5"] {
        let (_, after) = send(&r, get(uri)).await;
        let ids: Vec<&str> = after["items"].as_array().unwrap().iter().map(|i| i["item_id"].as_str().unwrap()).collect();
        assert!(!ids.contains(&first.as_str()) && ids.len() == 5, "{uri}: {ids:?} still holds {first} or is short");
        assert!(after["catalog_version"].as_u64().unwrap() >= 1);
    }
    let (status, body) = send(&r, put_item("x", serde_json::json!({ "price": -1 }), Some(TOKEN))).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("price")));
    let (status, changes) = send(&r, get("/v1/catalog/changes?since=0")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(changes["items"][0]["item_id"].as_str(), Some(first.as_str()));
}
