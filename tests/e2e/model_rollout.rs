//! Fresh models reach every region safely, with real processes: a good
//! canary is promoted under load with no failed request; a worse one is
//! rolled back automatically and marked bad; a corrupt one never serves; a
//! region that loses its registry keeps serving, restores from the backup,
//! restarts and serves the same version while the edge routes to the other.

use std::time::Duration;

use e2e::rollout::{self, Regions, TOKEN, as_version, registry_cmd, registry_with_movielens, wait_serving};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_good_canary_is_promoted_to_every_region_under_load_with_no_failed_request() {
    let base = rollout::workdir("promote");
    let (reg, v1) = registry_with_movielens(&base);
    let v2 = "movielens-rollout-v2";
    registry_cmd(
        &reg,
        &["publish", "--from", &as_version(&e2e::procs::repo().join("models/movielens"), v2, &base).display().to_string(), "--status", "approved"],
    );
    let regions = Regions::start(&reg).await;
    wait_serving(&regions.a.url(), &v1, Duration::from_secs(60)).await;
    // The same model under a new version: only noise can make it look worse. Other suites load
    // this machine meanwhile, so the p99 slack is wider than the default's 10 ms.
    let figs = rollout::rollout_under_load(&reg, &regions, v2, 4.0, &["--p99-slack-ms", "25"]).await;
    assert_eq!(figs.outcome["decision"], "promoted", "{}", figs.outcome);
    assert_eq!(figs.serving, (Some(v2.to_string()), Some(v2.to_string())), "both regions serve the promoted version");
    assert_eq!(figs.failed, 0, "no request failed during the rollout ({} sent)", figs.sent);
    let list = registry_cmd(&reg, &["list"]);
    assert_eq!(list["stable"], v2);
    assert!(list["canary"].is_null(), "the canary pointer is gone: {list}");
    let record = list["versions"].as_array().unwrap().iter().find(|r| r["version"] == v2).unwrap().clone();
    assert_eq!(record["status"], "promoted");
    assert!(record["reason"].as_str().unwrap().contains("p99"), "the record keeps the figures: {record}");
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worse_canary_is_rolled_back_and_marked_bad_and_a_corrupt_one_never_serves() {
    let base = rollout::workdir("rollback");
    let (reg, v1) = registry_with_movielens(&base);
    // A version that loads, verifies and warms up but costs many times more
    // per request (a wide, deep sequence model): p99 rises in the canary region.
    let slow = "movielens-heavy".to_string();
    let heavy = rollout::heavy_version(&base, &slow);
    registry_cmd(&reg, &["publish", "--from", &heavy.display().to_string(), "--status", "approved"]);
    let regions = Regions::start(&reg).await;
    wait_serving(&regions.a.url(), &v1, Duration::from_secs(60)).await;
    let figs = rollout::rollout_under_load(&reg, &regions, &slow, 4.0, &["--p99-slack-ms", "2"]).await;
    assert_eq!(figs.outcome["decision"], "rolled_back", "{}", figs.outcome);
    assert_eq!(figs.serving, (Some(v1.clone()), Some(v1.clone())), "the canary region is back on the stable version");
    let list = registry_cmd(&reg, &["list"]);
    assert_eq!(list["stable"], v1.as_str(), "the stable pointer never moved");
    let record = list["versions"].as_array().unwrap().iter().find(|r| r["version"] == slow.as_str()).unwrap().clone();
    assert_eq!(record["status"], "bad", "{record}");
    // A bad version can never be made a pointer again.
    let refused = std::process::Command::new(e2e::procs::origin_bin())
        .args(["registry", "--registry", &reg.display().to_string(), "promote", "--version", &slow])
        .output()
        .unwrap();
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("never served"));
    // Nor rolled out again: the rollout refuses and the record keeps the canary's figures.
    let again = tokio::process::Command::new(e2e::procs::origin_bin())
        .args(["rollout", "--registry", &reg.display().to_string(), "--canary", &regions.a.url(), "--others", &regions.b.url()])
        .args(["--admin-token", TOKEN, "--version", &slow])
        .output()
        .await
        .unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("never served"), "{}", String::from_utf8_lossy(&again.stderr));
    let list = registry_cmd(&reg, &["list"]);
    let record = list["versions"].as_array().unwrap().iter().find(|r| r["version"] == slow.as_str()).unwrap().clone();
    assert!(record["status"] == "bad" && record["reason"].as_str().unwrap().contains("p99"), "the reason stays: {record}");

    // A version truncated after it was approved: the canary cannot be set; nothing changes.
    let v3 = "movielens-rollout-v3";
    registry_cmd(
        &reg,
        &["publish", "--from", &as_version(&e2e::procs::repo().join("models/movielens"), v3, &base).display().to_string(), "--status", "approved"],
    );
    let full = reg.join("versions").join(v3).join("full.onnx");
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&full, &bytes[..bytes.len() / 2]).unwrap();
    let out = tokio::process::Command::new(e2e::procs::origin_bin())
        .args(["rollout", "--registry", &reg.display().to_string(), "--canary", &regions.a.url(), "--others", &regions.b.url()])
        .args(["--admin-token", TOKEN, "--version", v3, "--window-s", "1"])
        .output()
        .await
        .unwrap();
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(outcome["decision"], "rolled_back", "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(outcome["reason"].as_str().unwrap().contains("full.onnx"), "{outcome}");
    let client = reqwest::Client::new();
    assert_eq!(rollout::serving(&client, &regions.a.url()).await.as_deref(), Some(v1.as_str()));
    let _ = std::fs::remove_dir_all(base);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_region_that_loses_its_registry_restores_it_and_no_request_fails() {
    let base = rollout::workdir("drill");
    let figs = rollout::restore_drill(&base).await;
    assert!(figs.served_from_memory, "region A kept serving from memory: {figs:?}");
    assert_eq!(Some(figs.versions.0.clone()), figs.versions.1, "A serves the same version after restore and restart: {figs:?}");
    assert_eq!(figs.failed, 0, "no request failed during the drill: {figs:?}");
    assert!(figs.by_origin.iter().any(|(o, n)| o.contains("region-b") && *n > 0), "the edge routed to region B meanwhile: {figs:?}");
    let _ = std::fs::remove_dir_all(base);
}
