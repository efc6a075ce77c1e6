//! `cargo xtask bench-rollout`: the fresh-model loop measured with real
//! processes — freshness (an event batch to a promoted model that learnt from
//! it, serving in both regions), a canary promoted under load, a heavy canary
//! rolled back, and the restore drill. Writes the tables to the file named by
//! its argument.
//!
//! Usage: bench-rollout <docs/rollout.md> [window seconds]

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::procs::{Origin, free_port, repo};
use e2e::rollout::{self, RolloutFigures, TOKEN, as_version, registry_cmd, registry_with_movielens, wait_serving};

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgerec-bench-rollout-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn trainer(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(repo().join("target/debug/trainer")).args(args).current_dir(repo()).output().expect("trainer runs");
    assert!(out.status.success(), "trainer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

struct Freshness {
    retrain_s: f64,
    stages: String,
    rollout_s: f64,
    total_s: f64,
    verdict: serde_json::Value,
    outcome: serde_json::Value,
    uses_batch: bool,
}

/// An event batch through region A's `POST /v1/events` into the store, then
/// `trainer retrain` and `origin rollout` until both regions serve the new version.
async fn freshness(base: &Path, schedule: &str, window_s: f64) -> Freshness {
    let (reg, v1) = registry_with_movielens(base);
    let store = format!("sqlite:{}", base.join("events.sqlite").display());
    let ml = repo().join("data/ml-100k").display().to_string();
    trainer(&["import", "--format", "movielens", "--input", &ml, "--dataset", "movielens", "--to", &store]);
    let extra = ["--admin-token", TOKEN, "--events", store.as_str()];
    let a = Origin::spawn_registry(free_port(), &reg, &[&extra[..], &["--registry-track", "canary"]].concat()).await;
    let b = Origin::spawn_registry(free_port(), &reg, &extra).await;
    wait_serving(&a.url(), &v1, Duration::from_secs(60)).await;
    // The batch: a new shopper's views, now.
    let now = e2e::ingest::now_ms();
    let batch: Vec<serde_json::Value> = ["50", "172", "181", "174", "98"]
        .iter()
        .enumerate()
        .map(|(i, item)| serde_json::json!({ "event_id": format!("fresh-{now}-{i}"), "user_id": "fresh-shopper", "item_id": item, "type": "view", "time": now + i as i64 }))
        .collect();
    let started = Instant::now();
    let r = reqwest::Client::new().post(format!("{}/v1/events", a.url())).json(&serde_json::json!({ "events": batch })).send().await.unwrap();
    assert!(r.status().is_success(), "events accepted: {}", r.status());
    let reg_arg = reg.display().to_string();
    let out = trainer(&["retrain", "--events", &store, "--registry", &reg_arg, "--dataset", "movielens", "--schedule", schedule]);
    let retrain_s = started.elapsed().as_secs_f64();
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let version = verdict["version"].as_str().unwrap().to_string();
    let stages = verdict["seconds"].as_array().unwrap().iter().map(|s| format!("{} {:.0} s", s[0].as_str().unwrap(), s[1].as_f64().unwrap())).collect::<Vec<_>>().join(", ");
    let record = registry_cmd(&reg, &["list"])["versions"].as_array().unwrap().iter().find(|r| r["version"] == version.as_str()).unwrap().clone();
    let uses_batch = record["training"]["until_ms"].as_i64().unwrap_or(0) >= now;
    let t = Instant::now();
    let regions = rollout::Regions { a, b };
    let figs = rollout::rollout_under_load(&reg, &regions, &version, window_s, &[]).await;
    Freshness { retrain_s, stages, rollout_s: t.elapsed().as_secs_f64(), total_s: started.elapsed().as_secs_f64(), verdict, outcome: figs.outcome, uses_batch }
}

fn rollout_row(out: &mut String, what: &str, f: &RolloutFigures) {
    let o = &f.outcome;
    writeln!(
        out,
        "| {what} | {} | {} / {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        o["decision"].as_str().unwrap_or("?"),
        f.failed,
        f.sent,
        f.p99_before_ms,
        f.p99_during_ms,
        o["canary_load_s"].as_f64().unwrap_or(f64::NAN),
        o["converge_s"].as_f64().unwrap_or(f64::NAN),
        o["reason"].as_str().unwrap_or("").replace('|', "/")
    )
    .unwrap();
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out_path = args.get(1).cloned().unwrap_or_else(|| "docs/rollout.md".into());
    let window_s: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let mut md = String::new();
    writeln!(md, "# Fresh models: retraining, rollout and restore, measured\n").unwrap();
    writeln!(
        md,
        "Generated {} by `cargo xtask bench-rollout` (`target/debug/bench-rollout {out_path} {window_s}`) on the project's 2-core machine: real origin processes (tract), the real registry on disk, `origin rollout` with a {window_s} s canary window, load from this process (open loop, 100 requests/s over both regions; 50/s through `wrangler dev` in the drill). A request failed = anything but a 200 with 10 items.\n",
        e2e::measure::today()
    )
    .unwrap();

    eprintln!("bench-rollout: freshness …");
    let base = tempdir("fresh");
    let f = freshness(&base, "short", window_s).await;
    writeln!(md, "## Freshness: an event batch to a promoted model that uses it\n").unwrap();
    writeln!(md, "MovieLens-100K imported into an SQLite store (`trainer import`), a new shopper's batch of views sent to region A's `POST /v1/events`; then `trainer retrain --schedule short` (two-epoch SASRec + EASE blend: the candidate before the held-out window, then the refit on the whole log) and `origin rollout`.\n").unwrap();
    writeln!(md, "| step | seconds |\n|---|---|").unwrap();
    writeln!(md, "| retrain (load, candidate, judge, refit, gate with onnxruntime parity, publish): {} | {:.0} |", f.stages, f.retrain_s).unwrap();
    writeln!(md, "| rollout: canary load, {window_s} s window, promotion, both regions serving | {:.0} |", f.rollout_s).unwrap();
    writeln!(md, "| **batch accepted → promoted model serving in both regions** | **{:.0}** ({:.1} min; goal ≤ 15 min) |\n", f.total_s, f.total_s / 60.0).unwrap();
    writeln!(
        md,
        "Gate: {}; next-window NDCG@20 of the candidate {:.4}, of the serving version {:.4}, on {} shoppers; the promoted version's training window ends at or after the batch: **{}**. Rollout: {}.\n",
        if f.verdict["approved"] == true { "approved" } else { "refused" },
        f.verdict["candidate"]["metrics"]["ndcg_at_20"].as_f64().unwrap_or(f64::NAN),
        f.verdict["serving"]["metrics"]["ndcg_at_20"].as_f64().unwrap_or(f64::NAN),
        f.verdict["window_users"],
        f.uses_batch,
        f.outcome["decision"]
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&base);

    writeln!(md, "## Rollout under load\n").unwrap();
    writeln!(md, "| scenario | decision | failed / sent | p99 before (ms) | p99 during and after (ms) | canary load (s) | converge (s) | the controller's reason |\n|---|---|---|---|---|---|---|---|").unwrap();
    eprintln!("bench-rollout: a good canary …");
    let base = tempdir("promote");
    let (reg, v1) = registry_with_movielens(&base);
    let v2 = "movielens-bench-v2";
    registry_cmd(&reg, &["publish", "--from", &as_version(&repo().join("models/movielens"), v2, &base).display().to_string(), "--status", "approved"]);
    let regions = rollout::Regions::start(&reg).await;
    wait_serving(&regions.a.url(), &v1, Duration::from_secs(60)).await;
    let good = rollout::rollout_under_load(&reg, &regions, v2, window_s, &[]).await;
    rollout_row(&mut md, "good canary → promoted", &good);
    drop(regions);
    let _ = std::fs::remove_dir_all(&base);

    eprintln!("bench-rollout: a heavy canary …");
    let base = tempdir("rollback");
    let (reg, v1) = registry_with_movielens(&base);
    let heavy = rollout::heavy_version(&base, "movielens-heavy");
    registry_cmd(&reg, &["publish", "--from", &heavy.display().to_string(), "--status", "approved"]);
    let regions = rollout::Regions::start(&reg).await;
    wait_serving(&regions.a.url(), &v1, Duration::from_secs(60)).await;
    let bad = rollout::rollout_under_load(&reg, &regions, "movielens-heavy", window_s, &["--p99-slack-ms", "2"]).await;
    rollout_row(&mut md, "heavy canary (untrained SASRec d 256, 4 blocks) → rolled back", &bad);
    drop(regions);
    let _ = std::fs::remove_dir_all(&base);
    writeln!(md, "\n`converge` is, for a promotion, the time from the decision until both regions serve the new version; for a rollback, until the canary region serves the stable version again (time to roll back). Failed requests in the heavy scenario are the canary's (its p99 is the point); the stable region answered all of its own.\n").unwrap();

    eprintln!("bench-rollout: the restore drill …");
    let base = tempdir("drill");
    let d = rollout::restore_drill(&base).await;
    writeln!(md, "## Restore drill\n").unwrap();
    writeln!(md, "Region A (priority 1) and region B (priority 2, its registry the backup of A's) behind `wrangler dev`; while load runs through the edge, A's registry is deleted, A keeps serving from memory, `origin registry restore` brings the registry back from B's, A is restarted (SIGTERM, drain) and serves the same version.\n").unwrap();
    writeln!(md, "| requests failed / sent | answers by source | answers by origin | restore (s) | registry lost → A serving again (s) | served from memory meanwhile | version before / after |\n|---|---|---|---|---|---|---|").unwrap();
    writeln!(
        md,
        "| {} / {} | {} | {} | {:.2} | {:.1} | {} | {} / {} |",
        d.failed,
        d.sent,
        d.sources,
        d.by_origin.iter().map(|(o, n)| format!("{o} {n}")).collect::<Vec<_>>().join(", "),
        d.restore_s,
        d.recovery_s,
        d.served_from_memory,
        d.versions.1.clone().unwrap_or_default(),
        d.versions.0
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&base);
    std::fs::write(&out_path, &md).unwrap();
    println!("{md}");
    eprintln!("wrote {out_path}");
}
