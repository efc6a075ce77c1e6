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

fn trainer(args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(e2e::procs::debug_bin("trainer")).args(args).current_dir(repo()).output().expect("trainer runs");
    assert!(out.status.success(), "trainer {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// One `trainer retrain` run: seconds, verdict.
struct Retrain {
    seconds: f64,
    verdict: serde_json::Value,
}

fn retrain(store: &str, reg: &Path, extra: &[&str]) -> Retrain {
    let started = Instant::now();
    let reg_arg = reg.display().to_string();
    let out = trainer(&[&["retrain", "--events", store, "--registry", &reg_arg, "--dataset", "movielens", "--schedule", "short"][..], extra].concat());
    Retrain { seconds: started.elapsed().as_secs_f64(), verdict: serde_json::from_slice(&out.stdout).unwrap() }
}

struct Freshness {
    import_s: f64,
    cold: Retrain,
    warm: Retrain,
    chosen: &'static str,
    rollout_s: f64,
    outcome: serde_json::Value,
    uses_batch: bool,
}

/// The shop's older 80 % of MovieLens in a store and a first version trained
/// from it (promoted); both regions serve it. Then a new shopper's batch
/// arrives through region A's `POST /v1/events` with the newest 20 %; a
/// refresh from scratch and one warm-started from the serving version are
/// trained and judged; the approved one (warm first) is rolled out under load.
async fn freshness(base: &Path, window_s: f64) -> Freshness {
    let reg = base.join("registry");
    let store = format!("sqlite:{}", base.join("events.sqlite").display());
    let ml = repo().join("data/ml-100k").display().to_string();
    let import = |part: &[&str]| trainer(&[&["import", "--format", "movielens", "--input", &ml, "--dataset", "movielens", "--to", &store][..], part].concat());
    import(&["--until-quantile", "0.8"]);
    let v1 = retrain(&store, &reg, &[]).verdict["version"].as_str().unwrap().to_string();
    registry_cmd(&reg, &["promote", "--version", &v1]);
    let extra = ["--admin-token", TOKEN, "--events", store.as_str()];
    let a = Origin::spawn_registry(free_port(), &reg, &[&extra[..], &["--registry-track", "canary"]].concat()).await;
    let b = Origin::spawn_registry(free_port(), &reg, &extra).await;
    wait_serving(&a.url(), &v1, Duration::from_secs(60)).await;
    let now = e2e::ingest::now_ms();
    let batch: Vec<serde_json::Value> = ["50", "172", "181", "174", "98"]
        .iter()
        .enumerate()
        .map(|(i, item)| serde_json::json!({ "event_id": format!("fresh-{now}-{i}"), "user_id": "fresh-shopper", "item_id": item, "type": "view", "time": now + i as i64 }))
        .collect();
    let started = Instant::now();
    let r = reqwest::Client::new().post(format!("{}/v1/events", a.url())).json(&serde_json::json!({ "events": batch })).send().await.unwrap();
    assert!(r.status().is_success(), "events accepted: {}", r.status());
    import(&["--from-quantile", "0.8"]);
    let import_s = started.elapsed().as_secs_f64();
    let cold = retrain(&store, &reg, &[]);
    let warm = retrain(&store, &reg, &["--warm-start", "--warm-epochs", "2"]);
    let (chosen, pick) = if warm.verdict["approved"] == true { ("warm start", &warm) } else { ("from scratch", &cold) };
    let version = pick.verdict["version"].as_str().unwrap().to_string();
    let record = registry_cmd(&reg, &["list"])["versions"].as_array().unwrap().iter().find(|r| r["version"] == version.as_str()).unwrap().clone();
    let uses_batch = record["training"]["until_ms"].as_i64().unwrap_or(0) >= now;
    let t = Instant::now();
    let regions = rollout::Regions { a, b };
    let figs = rollout::rollout_under_load(&reg, &regions, &version, window_s, &[]).await;
    Freshness { import_s, chosen, rollout_s: t.elapsed().as_secs_f64(), outcome: figs.outcome, uses_batch, cold, warm }
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
    let base = rollout::workdir("fresh");
    let f = freshness(&base, window_s).await;
    let stages = |r: &Retrain| {
        r.verdict["seconds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| format!("{} {:.0}", s[0].as_str().unwrap(), s[1].as_f64().unwrap()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ndcg = |r: &Retrain, who: &str| r.verdict[who]["metrics"]["ndcg_at_20"].as_f64().unwrap_or(f64::NAN);
    let chosen = if f.chosen == "warm start" { &f.warm } else { &f.cold };
    let total = f.import_s + chosen.seconds + f.rollout_s;
    writeln!(md, "## Freshness: an event batch to a promoted model that uses it\n").unwrap();
    writeln!(md, "The older 80 % of MovieLens-100K in an SQLite store, a first version retrained from it and promoted; both regions serve it. Then a new shopper's batch of views goes to region A's `POST /v1/events` and the newest 20 % arrive (`trainer import --from-quantile 0.8`); `trainer retrain --schedule short` runs from scratch and warm-started from the serving version (`--warm-start --warm-epochs 2`); the approved one (warm first) is rolled out.\n").unwrap();
    writeln!(md, "| refresh | seconds (stages) | next-window NDCG@20 | serving's on the same window | shoppers | gate |\n|---|---|---|---|---|---|").unwrap();
    for (name, r) in [("from scratch (two-epoch SASRec + EASE blend, tuned λ)", &f.cold), ("warm start from the serving version (≤ 2 epochs)", &f.warm)] {
        writeln!(
            md,
            "| {name} | {:.0} ({}) | {:.4} | {:.4} | {} | {} |",
            r.seconds,
            stages(r),
            ndcg(r, "candidate"),
            ndcg(r, "serving"),
            r.verdict["window_users"],
            if r.verdict["approved"] == true {
                "approved".to_string()
            } else {
                format!("refused: {}", r.verdict["reasons"][0].as_str().unwrap_or("").replace('|', "/"))
            }
        )
        .unwrap();
    }
    writeln!(md, "\n| step | seconds |\n|---|---|").unwrap();
    writeln!(md, "| batch accepted, the newest 20 % imported | {:.0} |", f.import_s).unwrap();
    writeln!(md, "| retrain ({}) | {:.0} |", f.chosen, chosen.seconds).unwrap();
    writeln!(md, "| rollout: canary load, {window_s} s window, promotion, both regions serving | {:.0} |", f.rollout_s).unwrap();
    writeln!(md, "| **batch accepted → promoted model serving in both regions** | **{total:.0}** ({:.1} min; goal ≤ 15 min) |\n", total / 60.0).unwrap();
    writeln!(md, "The promoted version's training window ends at or after the batch: **{}**. Rollout: {}. Both retrains ran one after the other; the loop runs one. At this two-epoch schedule a warm start trains as many epochs as a refresh from scratch, so it saves no time here; its saving is against the full schedule (a tuning grid with early stopping, up to 15 epochs per fit, three fits), which this benchmark does not run (minutes per fit on this machine).\n", f.uses_batch, f.outcome["decision"]).unwrap();
    let _ = std::fs::remove_dir_all(&base);

    writeln!(md, "## Rollout under load\n").unwrap();
    writeln!(md, "| scenario | decision | failed / sent | p99 before (ms) | p99 during and after (ms) | canary load (s) | converge (s) | the controller's reason |\n|---|---|---|---|---|---|---|---|").unwrap();
    eprintln!("bench-rollout: a good canary …");
    let base = rollout::workdir("promote");
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
    let base = rollout::workdir("rollback");
    let (reg, v1) = registry_with_movielens(&base);
    let heavy = rollout::heavy_version(&base, "movielens-heavy");
    registry_cmd(&reg, &["publish", "--from", &heavy.display().to_string(), "--status", "approved"]);
    let regions = rollout::Regions::start(&reg).await;
    wait_serving(&regions.a.url(), &v1, Duration::from_secs(60)).await;
    let bad = rollout::rollout_under_load(&reg, &regions, "movielens-heavy", window_s, &["--p99-slack-ms", "2"]).await;
    rollout_row(&mut md, "heavy canary (untrained SASRec d 256, 4 blocks) → rolled back", &bad);
    drop(regions);
    let _ = std::fs::remove_dir_all(&base);
    writeln!(md, "\n`converge` is, for a promotion, the time from the decision until both regions serve the new version; for a rollback, until the canary region serves the stable version again (time to roll back). The heavy canary is slow, not broken: the controller rolls it back on p99 alone, before any request times out.\n").unwrap();

    eprintln!("bench-rollout: the restore drill …");
    let base = rollout::workdir("drill");
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
