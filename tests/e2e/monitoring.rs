//! Monitoring as a platform team runs it: the Prometheus configuration and
//! rules in `deploy/prometheus` pass `promtool` (config check and the rules'
//! unit tests), and a real Prometheus running them over two live origins
//! records every series the rules define, fills every panel of the Grafana
//! dashboard, and raises the alert of an origin that went away.

use std::time::Duration;

use e2e::Origin;
use e2e::ingest;
use e2e::monitoring::{self, Prometheus, Target};
use e2e::procs::{free_port, repo};
use e2e::rollout::{self, TOKEN};
use serde_json::Value;

#[test]
fn the_configuration_and_rules_pass_promtool() {
    let dir = rollout::workdir("promtool");
    let config = monitoring::configure(&dir, TOKEN, &[Target { address: "127.0.0.1:9".into(), region: "a", track: "stable" }]);
    let (ok, out) = monitoring::promtool(&dir, &["check", "config", &config.display().to_string()]);
    assert!(ok, "promtool check config: {out}");
    let prom = repo().join("deploy/prometheus");
    let (ok, out) = monitoring::promtool(&prom, &["check", "rules", "edgerec.rules.yml"]);
    assert!(ok, "promtool check rules: {out}");
    // The rules' unit tests: each alert fires on its series and stays quiet beside them.
    let (ok, out) = monitoring::promtool(&prom, &["test", "rules", "tests/edgerec.rules.test.yml"]);
    assert!(ok, "promtool test rules: {out}");
    // The same check fails on a rule that no longer says what the tests expect.
    let broken = rollout::workdir("promtool-broken");
    std::fs::create_dir_all(broken.join("tests")).unwrap();
    let rules = std::fs::read_to_string(prom.join("edgerec.rules.yml")).unwrap().replace("(14.4 * 0.001)", "(200 * 0.001)");
    std::fs::write(broken.join("edgerec.rules.yml"), rules).unwrap();
    std::fs::copy(prom.join("tests/edgerec.rules.test.yml"), broken.join("tests/edgerec.rules.test.yml")).unwrap();
    let (ok, _) = monitoring::promtool(&broken, &["test", "rules", "tests/edgerec.rules.test.yml"]);
    assert!(!ok, "a fast-burn threshold of 200× must fail the rules' unit tests");
}

/// Every query of the Grafana dashboard, its `$region` variable set to all.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_slice(&std::fs::read(repo().join("deploy/grafana/dashboards/edgerec.json")).unwrap()).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap().replace("$region", ".*");
            queries.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    assert!(queries.len() >= 12, "the dashboard has its panels");
    queries
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_records_the_rules_over_live_origins_and_fills_every_dashboard_panel() {
    let models = repo().join("models/movielens");
    let flags = ["--admin-token", TOKEN];
    let a = Origin::start_with(free_port(), &models, &flags).await;
    let mut b = Origin::start_with(free_port(), &models, &flags).await;
    let dir = rollout::workdir("prometheus");
    let targets = [
        Target { address: format!("127.0.0.1:{}", a.port), region: "a", track: "canary" },
        Target { address: format!("127.0.0.1:{}", b.port), region: "b", track: "stable" },
    ];
    let config = monitoring::configure(&dir, TOKEN, &targets);
    let prometheus = Prometheus::start(&config).await;

    // Traffic and events on both origins while Prometheus scrapes them every
    // second (from its first scrape on: a counter's increase before it is not a rate).
    prometheus.wait_for("up == 1", Duration::from_secs(30), |r| r.len() == 2).await;
    let client = reqwest::Client::new();
    let bases = [a.url(), b.url()];
    let version = rollout::serving(&client, &bases[0]).await.expect("a version");
    let load = rollout::start_load(bases.to_vec(), rollout::load_spec(40.0, 8.0));
    for round in 0..4 {
        let events = ingest::events(&format!("mon{round}"), 20, ingest::now_ms() - 2_000);
        for base in &bases {
            ingest::post(&client, base, &events).await.expect("events stored");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let outcomes = load.await.unwrap();
    assert!(outcomes.iter().all(|o| o.status == 200), "every request answered");

    // The recording rules, one series per origin.
    let limit = Duration::from_secs(60);
    let rate = prometheus.wait_for("origin:http_requests:rate1m", limit, |r| r.len() == 2).await;
    assert!(rate.iter().all(|s| s["metric"]["region"].is_string() && s["metric"]["track"].is_string()), "region and track labels: {rate:?}");
    let versions = prometheus.query("origin:model_version:info").await;
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions.iter().all(|s| s["metric"]["version"] == version.as_str()), "both origins serve {version}: {versions:?}");
    let ready = prometheus.query("origin_ready == 1").await;
    assert_eq!(ready.len(), 2, "both origins report ready: {ready:?}");
    // Every panel of the dashboard has data.
    for (title, expr) in dashboard_queries() {
        prometheus.wait_for(&expr, limit, |r| !r.is_empty()).await;
        eprintln!("panel {title:?}: data");
    }
    // Quiet while all is well: no alert fires or is pending.
    let alerts = prometheus.query("ALERTS").await;
    assert!(alerts.is_empty(), "no alert while both origins serve: {alerts:?}");

    // An origin goes away: its down alert becomes pending at once (it pages after its `for`).
    b.kill();
    let down = format!("ALERTS{{alertname=\"EdgerecOriginDown\",instance=\"{}\"}}", targets[1].address);
    let pending = prometheus.wait_for(&down, Duration::from_secs(30), |r| !r.is_empty()).await;
    assert_eq!(pending[0]["metric"]["alertstate"], "pending");
    assert_eq!(pending[0]["metric"]["region"], "b");
    let others = prometheus.query("ALERTS{alertname!=\"EdgerecOriginDown\"}").await;
    assert!(others.is_empty(), "only the down alert: {others:?}");
}
