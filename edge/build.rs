//! Embeds one trained model directory into the worker: `manifest.json`,
//! `edge_catalog.json` (the head of the catalog, with titles),
//! `catalog_ids.bin` (every id's fingerprint) and `edge.onnx` from `$EDGEREC_MODEL_DIR` (default
//! `models/movielens` at the repository root, written by `cargo xtask train`),
//! after checking every file against the manifest's sha256 ([`verify`]): a
//! directory that fails does not build.

use std::path::PathBuf;

#[path = "build_verify.rs"]
mod build_verify;

fn main() {
    println!("cargo:rerun-if-env-changed=EDGEREC_MODEL_DIR");
    println!("cargo:rerun-if-changed=build_verify.rs");
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("EDGEREC_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| manifest_dir.join("../models/movielens"));
    let dir = if dir.is_absolute() { dir } else { manifest_dir.join("..").join(dir) };
    for file in build_verify::EMBEDDED {
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
    if let Err(e) = build_verify::verify(&dir) {
        panic!("refusing to embed the model directory: {e}");
    }
    let dir = dir.canonicalize().expect("model directory exists");
    println!("cargo:rustc-env=EDGEREC_MODEL_DIR={}", dir.display());
}
