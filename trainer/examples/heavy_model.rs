//! Writes a model directory like `<like>` whose full model is a deliberately
//! heavy, untrained SASRec (wide, deep, long history) over the same catalog:
//! a version that loads, verifies and warms up like any other but costs many
//! times more per request — the canary the rollout tests must roll back.
//!
//! `cargo run -p trainer --example heavy_model -- <like-dir> <out-dir> <version> [dim] [layers] [max_len]`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use rand::SeedableRng;
use shared::manifest::{FileEntry, Manifest};
use trainer::sasrec::{SasRec, SasRecConfig};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 3, "usage: heavy_model <like-dir> <out-dir> <version> [dim] [layers] [max_len]");
    let (like, out, version) = (PathBuf::from(&args[0]), PathBuf::from(&args[1]), args[2].clone());
    let num = |i: usize, default: usize| args.get(i).map_or(Ok(default), |s| s.parse::<usize>()).context("dim, layers and max_len are numbers");
    let (dim, layers, max_len) = (num(3, 256)?, num(4, 4)?, num(5, 50)?);
    let mut manifest = Manifest::from_json(&std::fs::read(like.join("manifest.json"))?)?;
    let n_items = manifest.models["full"].n_items;
    // Every field the trainer's own runs set; the optional ones at their defaults.
    let config: SasRecConfig = serde_json::from_value(serde_json::json!({
        "dim": dim, "layers": layers, "heads": 2, "max_len": max_len, "dropout": 0.0, "learning_rate": 1e-3,
        "batch_size": 1, "max_epochs": 0, "patience": 0, "negatives": null, "seed": 1
    }))?;
    let model = SasRec::new(config, n_items, &mut rand::rngs::StdRng::seed_from_u64(1))?;
    let onnx = trainer::onnx_export::sequence_model(shared::ModelKind::Full, &model.weights()?, None, 1.0);
    std::fs::create_dir_all(&out)?;
    for name in manifest.files.keys() {
        if name != "full.onnx" {
            std::fs::copy(like.join(name), out.join(name))?;
        }
    }
    std::fs::write(out.join("full.onnx"), &onnx)?;
    manifest.files.insert("full.onnx".into(), FileEntry::of(&onnx));
    let full = manifest.models.get_mut("full").context("a full model")?;
    full.params = BTreeMap::from([
        ("architecture".to_string(), "sasrec (untrained, heavy)".into()),
        ("dim".to_string(), dim.into()),
        ("layers".to_string(), layers.into()),
    ]);
    manifest.version = version;
    std::fs::write(out.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
    eprintln!("wrote {} ({} bytes of full.onnx, d {dim}, {layers} blocks, {max_len} positions)", out.display(), onnx.len());
    Ok(())
}
