//! Embeds one trained model directory into the worker: `manifest.json`,
//! `edge_catalog.json` (the head of the catalog, with titles),
//! `catalog_ids.bin` (every id's fingerprint) and `edge.onnx` from `$EDGEREC_MODEL_DIR` (default
//! `models/movielens` at the repository root, written by `cargo xtask train`).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-env-changed=EDGEREC_MODEL_DIR");
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("EDGEREC_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("../models/movielens"));
    let dir = if dir.is_absolute() { dir } else { manifest_dir.join("..").join(dir) };
    for file in ["manifest.json", "edge_catalog.json", "catalog_ids.bin", "edge.onnx"] {
        let path = dir.join(file);
        if !path.is_file() {
            panic!(
                "the edge worker embeds {} but it does not exist: run `cargo xtask train` first \
                 (or point EDGEREC_MODEL_DIR at a trained model directory; directories trained \
                 before the edge catalog existed need `cargo xtask train --retrain`)",
                path.display()
            );
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let dir = dir.canonicalize().expect("model directory exists");
    println!("cargo:rustc-env=EDGEREC_MODEL_DIR={}", dir.display());
}
