//! `cargo xtask bench-scale`: the scale benchmark (`docs/scale.md`). Per
//! catalog size: generate the synthetic shop log, train it with the default
//! settings, build the worker with that model directory, measure origin and
//! worker (`bench-scale measure`), then write the table (`bench-scale report`).
//! A size that fails to train gets a `FAILED` file with the reason, and its
//! row says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use crate::{bin, root, run};

/// One benchmarked size: label, catalog items, events.
pub struct Size {
    /// Name in paths and the table (`1e6`).
    pub label: &'static str,
    /// Catalog size of the generated log.
    pub items: usize,
    /// Events of the generated log.
    pub events: usize,
}

/// The sizes of the issue: 10⁴, 10⁵ and 10⁶ items, ten events per item.
pub const SIZES: [Size; 3] = [
    Size { label: "1e4", items: 10_000, events: 100_000 },
    Size { label: "1e5", items: 100_000, events: 1_000_000 },
    Size { label: "1e6", items: 1_000_000, events: 10_000_000 },
];

/// Seed of every generated log.
const SEED: &str = "7";

fn model_dir(size: &Size) -> PathBuf {
    root().join("bench/out/scale").join(size.label)
}

/// Generates (once) and trains one size; a failure is recorded in `FAILED`.
fn train(size: &Size, retrain: bool) -> anyhow::Result<()> {
    let csv = root().join(format!("data/synthetic/shop-{}-seed{SEED}.csv", size.label));
    if !csv.is_file() {
        run(Command::new(bin("trainer"))
            .args(["generate", "--items", &size.items.to_string(), "--events", &size.events.to_string(), "--seed", SEED, "--out"])
            .arg(&csv))?;
    }
    let dir = model_dir(size);
    if !retrain && dir.join("manifest.json").is_file() && dir.join("report.json").is_file() {
        eprintln!("xtask: {} is trained (use --retrain to train again)", dir.display());
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    eprintln!("xtask: training the {} size ({} items, {} events) …", size.label, size.items, size.events);
    let started = Instant::now();
    let status = Command::new(bin("trainer"))
        .args(["train", "--format", "csv", "--input"])
        .arg(&csv)
        .args(["--dataset", &format!("synthetic-{}", size.label), "--out"])
        .arg(&dir)
        .current_dir(root())
        .status()
        .context("starting the trainer")?;
    if !status.success() {
        let why = format!("the trainer exited with {status} after {:.0} s (its output above says why)", started.elapsed().as_secs_f64());
        std::fs::write(dir.join("FAILED"), &why)?;
        eprintln!("xtask: {}: {why}", size.label);
    }
    Ok(())
}

/// Builds the worker with `dir` embedded, in a child `cargo xtask` (the build
/// script reads `EDGEREC_MODEL_DIR`; this binary may have been rebuilt since it started).
fn build_edge(dir: Option<&Path>) -> anyhow::Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["xtask", "build-edge"]).env_remove("EDGEREC_SKIP_EDGE_BUILD");
    match dir {
        Some(d) => cmd.env("EDGEREC_MODEL_DIR", d),
        None => cmd.env_remove("EDGEREC_MODEL_DIR"),
    };
    run(&mut cmd)
}

/// Runs the benchmark for the sizes labelled in `only` (all when empty).
///
/// # Errors
/// When a tool fails to run; a size that fails to train is reported in the table instead.
pub fn bench(only: &[String], retrain: bool) -> anyhow::Result<()> {
    let sizes: Vec<&Size> = SIZES.iter().filter(|s| only.is_empty() || only.iter().any(|o| o == s.label)).collect();
    if sizes.is_empty() {
        bail!("--sizes names none of {:?}", SIZES.iter().map(|s| s.label).collect::<Vec<_>>());
    }
    for size in &sizes {
        train(size, retrain)?;
    }
    let result = (|| {
        for size in &sizes {
            let dir = model_dir(size);
            if dir.join("FAILED").is_file() {
                continue;
            }
            build_edge(Some(&dir))?;
            run(Command::new(bin("bench-scale")).arg("measure").arg(&dir))?;
        }
        anyhow::Ok(())
    })();
    // Whatever happened, the worker goes back to embedding the default model.
    build_edge(None)?;
    result?;
    let dirs: Vec<PathBuf> = SIZES.iter().map(model_dir).filter(|d| d.is_dir()).collect();
    run(Command::new(bin("bench-scale")).arg("report").arg("docs/scale.md").args(&dirs))
}

/// `cargo xtask bench-scaleout`: the 10⁵-item shop (trained once, as by
/// `bench-scale`), the origin's image, the worker built with that model, then
/// `bench-scaleout` (the replicas are CPU-limited on core 1); writes docs/scaleout.md.
pub fn scaleout() -> anyhow::Result<()> {
    let size = &SIZES[1];
    train(size, false)?;
    let dir = model_dir(size);
    if let Ok(why) = std::fs::read_to_string(dir.join("FAILED")) {
        bail!("the {} model failed to train: {why}", size.label);
    }
    crate::image::build(true)?;
    build_edge(Some(&dir))?;
    let result = run(Command::new(bin("bench-scaleout")).arg(&dir).arg("docs/scaleout.md"));
    build_edge(None)?;
    result
}
