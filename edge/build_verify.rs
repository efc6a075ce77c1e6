//! The build-time check of the model directory the worker embeds, shared by
//! `edge/build.rs` and xtask's tests (`#[path]`): every embedded file must
//! match the manifest's sha256 and size, and the manifest must describe an
//! edge model. A half-written directory (a crashed or running `train`) used
//! to deploy, answer `items: []`, and eject every origin.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The files the worker embeds.
pub const EMBEDDED: [&str; 4] = ["manifest.json", "edge_catalog.json", "catalog_ids.bin", "edge.onnx"];

/// Checks `dir` (module docs).
///
/// # Errors
/// The first file that is missing, unlisted, of the wrong size, or whose
/// sha256 differs from the manifest's, with both values.
pub fn verify(dir: &Path) -> Result<(), String> {
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| format!("{}: {e}", dir.join(name).display()));
    let manifest: serde_json::Value =
        serde_json::from_slice(&read("manifest.json")?).map_err(|e| format!("{}: not a manifest: {e}", dir.join("manifest.json").display()))?;
    if manifest["models"]["edge"]["file"].as_str() != Some("edge.onnx") {
        return Err(format!("{}: the manifest lists no edge model in edge.onnx", dir.display()));
    }
    for name in EMBEDDED.iter().filter(|&&n| n != "manifest.json") {
        let bytes = read(name)?;
        let entry = &manifest["files"][*name];
        let (Some(want), Some(size)) = (entry["sha256"].as_str(), entry["bytes"].as_u64()) else {
            return Err(format!("{}: the manifest lists no sha256 and size for {name}", dir.display()));
        };
        if size != bytes.len() as u64 {
            return Err(format!("{}: {} bytes, the manifest says {size} (a half-written directory?)", dir.join(name).display(), bytes.len()));
        }
        let got = hex::encode(Sha256::digest(&bytes));
        if got != want {
            return Err(format!("{}: sha256 {got}, the manifest says {want}", dir.join(name).display()));
        }
    }
    Ok(())
}
