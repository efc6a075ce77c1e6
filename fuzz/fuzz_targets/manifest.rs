//! `manifest.json` of a model directory, as origin and edge read it, and the
//! directory loader around it (files served from memory): errors, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::{Manifest, ModelFiles, ModelKind};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_json(data) {
        let _ = m.model(ModelKind::Full);
    }
    let _ = ModelFiles::load(|name: &str| if name == "manifest.json" { Ok(data.to_vec()) } else { Err(format!("{name}: not in the fuzz input")) }, &[ModelKind::Full]);
});
