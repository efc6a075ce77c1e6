//! The edge worker's tools and build: worker-build, wasm-bindgen-cli (at the
//! version in `Cargo.lock`), wrangler from npm (`package-lock.json`), and
//! `worker-build --profile edge-release` with every tool pointed at its local
//! copy, so nothing is downloaded at build or run time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{root, run};

/// The worker-build release the project is built with.
const WORKER_BUILD_VERSION: &str = "0.8.7";

/// Cargo's profile for the worker's wasm (root `Cargo.toml`).
pub const PROFILE: &str = "edge-release";

/// Output of a command's `--version`, if it runs.
fn version_of(cmd: &str) -> Option<String> {
    let out = Command::new(cmd).arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The `wasm-bindgen` version `Cargo.lock` pins (the CLI must equal it).
fn locked_wasm_bindgen() -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\""
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \"")).and_then(|v| v.strip_suffix('"'))
        {
            return Ok(v.to_string());
        }
    }
    bail!("Cargo.lock pins no wasm-bindgen")
}

fn cargo_bin(name: &str) -> PathBuf {
    let home = std::env::var_os("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    home.join("bin").join(name)
}

/// Installs what the worker build and `wrangler dev` need, when missing or at the wrong version.
pub fn tools() -> anyhow::Result<()> {
    if !version_of(&cargo_bin("worker-build").to_string_lossy()).is_some_and(|v| v.contains(WORKER_BUILD_VERSION)) {
        eprintln!("setup: installing worker-build {WORKER_BUILD_VERSION} (cargo install, a few minutes once)");
        run(Command::new("cargo").args(["install", "--quiet", "--locked", &format!("worker-build@{WORKER_BUILD_VERSION}")]))?;
    }
    let want = locked_wasm_bindgen()?;
    if version_of(&cargo_bin("wasm-bindgen").to_string_lossy()).is_none_or(|v| v.split_whitespace().nth(1) != Some(want.as_str())) {
        // Not --locked: the CLI's own lockfile pins crates this toolchain may not build.
        eprintln!("setup: installing wasm-bindgen-cli {want} (matches Cargo.lock; a few minutes once)");
        run(Command::new("cargo").args(["install", "--quiet", "--force", &format!("wasm-bindgen-cli@{want}")]))?;
    }
    npm_packages()
}

/// `npm ci` when `node_modules` does not match `package-lock.json`.
fn npm_packages() -> anyhow::Result<()> {
    let lock = std::fs::read(root().join("package-lock.json")).context("reading package-lock.json")?;
    let stamp = root().join("node_modules/.edgerec-lock.sha256");
    let want = crate::setup::sha256_hex(&lock);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(());
    }
    eprintln!("setup: npm ci (wrangler and the browser-test tools from package-lock.json)");
    run(Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])).context("npm ci (is the npm registry reachable?)")?;
    std::fs::write(&stamp, want)?;
    Ok(())
}

/// The esbuild binary that ships with wrangler (worker-build bundles with it).
fn esbuild() -> anyhow::Result<PathBuf> {
    let dir = root().join("node_modules/@esbuild");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten() {
        let bin = entry.path().join("bin/esbuild");
        if bin.is_file() {
            return Ok(bin);
        }
    }
    bail!("no esbuild binary under {} (run `cargo xtask setup`)", dir.display())
}

/// `wrangler` from `node_modules`.
pub fn wrangler() -> PathBuf {
    root().join("node_modules/.bin/wrangler")
}

/// Environment every wrangler run gets: no telemetry, no network look-ups of
/// the `cf` object, and the build command's tools.
pub fn wrangler_env(cmd: &mut Command) -> &mut Command {
    cmd.env("WRANGLER_SEND_METRICS", "false").env("CLOUDFLARE_CF_FETCH_ENABLED", "false").env("CI", "true")
}

/// Builds the worker (`edge/build/`) for the model directory in
/// `EDGEREC_MODEL_DIR` (default `models/movielens`). wrangler's `[build]`
/// calls this; `EDGEREC_SKIP_EDGE_BUILD=1` makes it a no-op for runs that
/// built beforehand (the end-to-end tests start many `wrangler dev`s).
pub fn build() -> anyhow::Result<()> {
    if std::env::var_os("EDGEREC_SKIP_EDGE_BUILD").is_some() && root().join("edge/build/index.js").exists() {
        return Ok(());
    }
    build_for(&model_dir())
}

/// Builds the worker embedding the model directory `dir` (a registry
/// version's, when the demo rolls a new version out to the edge).
pub fn build_for(dir: &Path) -> anyhow::Result<()> {
    shop_catalog(dir)?;
    let mut cmd = Command::new(cargo_bin("worker-build"));
    cmd.args(["--profile", PROFILE])
        .current_dir(root().join("edge"))
        .env("EDGEREC_MODEL_DIR", dir)
        .env("WASM_BINDGEN_BIN", cargo_bin("wasm-bindgen"))
        .env("ESBUILD_BIN", esbuild()?);
    let status = cmd.status().context("starting worker-build (run `cargo xtask setup`)")?;
    if !status.success() {
        bail!("worker-build failed with {status}");
    }
    Ok(())
}

/// One wasm build of the edge-model profile (`edge/profile`) that
/// `cargo xtask bench-edge` measures: the worker's own build beside the builds
/// it replaced or could use.
pub struct WasmVariant {
    /// Directory name under `target/edge-profile/` and the table's label.
    pub name: &'static str,
    /// `-C target-feature` for wasm32; `None`: the workspace's `.cargo/config.toml` (the worker's).
    pub features: Option<&'static str>,
    /// `profile.edge-release.opt-level`; `None`: the root `Cargo.toml`'s (the worker's).
    pub opt_level: Option<&'static str>,
}

/// The builds `bench-edge` compares, the worker's first.
pub const WASM_VARIANTS: [WasmVariant; 3] = [
    WasmVariant { name: "worker", features: None, opt_level: None },
    WasmVariant { name: "scalar-size", features: Some("-simd128"), opt_level: Some("\"z\"") },
    WasmVariant { name: "relaxed-simd", features: Some("+simd128,+relaxed-simd"), opt_level: None },
];

/// Builds `edge-profile` for wasm32 once per [`WASM_VARIANTS`] entry (each in
/// its own target directory, so they build once and stay) and binds each for
/// node and for workerd: `target/edge-profile/<name>/{node,web}`.
pub fn build_profiles() -> anyhow::Result<()> {
    let target = crate::target_dir();
    for v in &WASM_VARIANTS {
        let dir = target.join("wasm-variants").join(v.name);
        let mut cmd = crate::cargo();
        cmd.args(["rustc", "--quiet", "-p", "edge-profile", "--lib", "--crate-type", "cdylib", "--target", "wasm32-unknown-unknown", "--profile", PROFILE])
            .env("CARGO_TARGET_DIR", &dir);
        if let Some(f) = v.features {
            cmd.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS", format!("-C target-feature={f}"));
        }
        if let Some(o) = v.opt_level {
            cmd.args(["--config", &format!("profile.{PROFILE}.opt-level={o}")]);
        }
        eprintln!("xtask: building the edge-model profile for wasm32 ({}; minutes the first time)", v.name);
        run(&mut cmd)?;
        let wasm = dir.join(format!("wasm32-unknown-unknown/{PROFILE}/edge_profile.wasm"));
        for js_target in ["nodejs", "web"] {
            let out = target.join("edge-profile").join(v.name).join(if js_target == "web" { "web" } else { "node" });
            run(Command::new(cargo_bin("wasm-bindgen")).args(["--target", js_target, "--out-dir"]).arg(&out).arg(&wasm))?;
        }
    }
    Ok(())
}

/// Refuses a production deploy of the local defaults: `[env.production.vars]`
/// of `wrangler_toml` must set `EDGEREC_ENV = "production"` and an
/// `https://` `ORIGIN_URL`, or `ORIGINS` whose every `url` is `https://`
/// (the worker checks the rest of `ORIGINS` itself). The credential (`ORIGIN_SECRET`) is a secret that
/// lives on Cloudflare, not in the file: the worker itself refuses to run
/// production without it (`shared::edge_config`).
///
/// # Errors
/// The first var that is missing or wrong, with how to fix it.
pub fn check_production(wrangler_toml: &str) -> anyhow::Result<()> {
    let doc: toml_edit::DocumentMut = wrangler_toml.parse().context("parsing wrangler.toml")?;
    let var = |name: &str| {
        doc.get("env")
            .and_then(|e| e.get("production"))
            .and_then(|p| p.get("vars"))
            .and_then(|v| v.get(name))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    if var("EDGEREC_ENV") != "production" {
        bail!("wrangler.toml [env.production.vars] must set EDGEREC_ENV = \"production\"");
    }
    let production = doc.get("env").and_then(|e| e.get("production"));
    let name = |t: Option<&toml_edit::Item>| t.and_then(|t| t.get("name")).and_then(|n| n.as_str()).map(str::to_string);
    if name(production).is_none() || name(production) == name(Some(doc.as_item())) {
        bail!("wrangler.toml: [env.production] needs a name of its own, not the local worker's (a plain `wrangler deploy` would replace it)");
    }
    // The Cache API is not available on *.workers.dev: without a route of the
    // shop's zone every answer would miss the cache (hardening round 2, item 9).
    let has_route = production.is_some_and(|p| {
        p.get("route").is_some_and(|r| r.as_str().is_some_and(|s| !s.is_empty()) || r.is_inline_table() || r.is_table())
            || p.get("routes").and_then(|r| r.as_array()).is_some_and(|a| !a.is_empty())
    });
    let workers_dev = production.and_then(|p| p.get("workers_dev")).and_then(|v| v.as_bool()).unwrap_or(true);
    if !has_route || workers_dev {
        bail!(
            "refusing a production build: wrangler.toml [env.production] needs `routes` on your shop's zone and `workers_dev = false` (the Cache API does not run on workers.dev)"
        );
    }
    let https = |url: &str| url.starts_with("https://") && url.len() > "https://".len();
    let origins = var("ORIGINS");
    if !origins.is_empty() {
        let list: Vec<serde_json::Value> = serde_json::from_str(&origins).context("wrangler.toml [env.production.vars] ORIGINS must be a JSON list")?;
        if list.is_empty() || list.iter().any(|o| !https(o["url"].as_str().unwrap_or(""))) {
            bail!("refusing a production build: every url in wrangler.toml [env.production.vars] ORIGINS must be https:// (got {origins})");
        }
        return Ok(());
    }
    let url = var("ORIGIN_URL");
    if !https(&url) {
        bail!(
            "refusing a production build: wrangler.toml [env.production.vars] ORIGIN_URL = {url:?} must be your origin's https:// URL (and set the credential once: npx wrangler secret put ORIGIN_SECRET --env production)"
        );
    }
    Ok(())
}

/// The model directory the worker embeds (`EDGEREC_MODEL_DIR`, else `models/movielens`).
fn model_dir() -> PathBuf {
    let dir = std::env::var_os("EDGEREC_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("models/movielens"));
    if dir.is_absolute() { dir } else { root().join(dir) }
}

/// Writes `www/generated/catalog.json` (dataset, model version, the id, title
/// and popularity of every item of the worker's catalog head, the whole
/// catalog up to 50,000 items) so the shop page lists the catalog the worker
/// serves and can show popular items when the API is unreachable.
fn shop_catalog(dir: &Path) -> anyhow::Result<()> {
    let read = |name: &str| -> anyhow::Result<serde_json::Value> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {} (run `cargo xtask train`)", path.display()))?;
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))
    };
    let (manifest, catalog) = (read("manifest.json")?, read("edge_catalog.json")?);
    let page = serde_json::json!({
        "dataset": manifest["dataset"],
        "version": manifest["version"],
        "items": catalog["items"],
    });
    let out = root().join("www/generated");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("catalog.json"), serde_json::to_vec(&page)?)?;
    Ok(())
}

#[cfg(test)]
#[path = "../../edge/build_verify.rs"]
mod edge_build_verify;

#[cfg(test)]
mod tests {
    use super::*;

    /// Hardening round 2, item 7: the worker's build embedded the model
    /// directory without checking it (a comment said it did), so a
    /// half-written one deployed. `edge/build.rs` now runs this check.
    #[test]
    fn the_worker_build_refuses_a_model_directory_that_fails_its_sha256s() {
        let good = root().join("models/movielens");
        if !good.join("manifest.json").is_file() {
            eprintln!("skipped: no trained models/movielens");
            return;
        }
        super::edge_build_verify::verify(&good).expect("the trained directory passes");
        let dir = std::env::temp_dir().join(format!("edgerec-build-verify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in super::edge_build_verify::EMBEDDED {
            std::fs::copy(good.join(f), dir.join(f)).unwrap();
        }
        let onnx = std::fs::read(dir.join("edge.onnx")).unwrap();
        std::fs::write(dir.join("edge.onnx"), &onnx[..onnx.len() / 2]).unwrap();
        let e = super::edge_build_verify::verify(&dir).unwrap_err();
        assert!(e.contains("edge.onnx") && e.contains("half-written"), "{e}");
        let mut flipped = onnx.clone();
        flipped[onnx.len() / 2] ^= 1;
        std::fs::write(dir.join("edge.onnx"), &flipped).unwrap();
        assert!(super::edge_build_verify::verify(&dir).unwrap_err().contains("sha256"));
        std::fs::write(dir.join("edge.onnx"), &onnx).unwrap();
        std::fs::write(dir.join("edge_catalog.json"), b"{}").unwrap();
        assert!(super::edge_build_verify::verify(&dir).is_err(), "a catalog that is not the manifest's");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Hardening 8: no cron trigger. A cron event runs in an isolate of its own
    /// whose breaker never saw a failure, so a cron probe cannot close the
    /// breakers that matter; the worker has no scheduled handler for one.
    #[test]
    fn no_cron_probe_is_configured() {
        let shipped = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
        let doc: toml_edit::DocumentMut = shipped.parse().unwrap();
        assert!(doc.get("triggers").is_none(), "wrangler.toml declares [triggers]");
        let worker = std::fs::read_to_string(root().join("edge/src/lib.rs")).unwrap();
        assert!(!worker.contains("#[event(scheduled)]"), "the worker exports a scheduled handler");
    }

    /// The shipped file with the production route an operator adds.
    fn with_route(toml: &str) -> String {
        toml.replace("\n# routes = [", "\nroutes = [")
    }

    /// Hardening round 2, item 6: `npx wrangler deploy` (no `--env`) shipped the
    /// local config under the production worker's name. Now the local worker
    /// has a name of its own, no route and no workers.dev URL.
    #[test]
    fn a_plain_deploy_cannot_replace_or_expose_the_production_worker() {
        let shipped = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
        let doc: toml_edit::DocumentMut = shipped.parse().unwrap();
        let local = doc["name"].as_str().unwrap();
        assert_ne!(Some(local), doc["env"]["production"]["name"].as_str(), "the local config must not carry the production name");
        assert_eq!(doc.get("workers_dev").and_then(|v| v.as_bool()), Some(false), "the local worker must get no workers.dev URL");
        assert!(doc.get("routes").is_none() && doc.get("route").is_none(), "the local worker must have no route");
        let same_name = with_route(&shipped)
            .replace("name = \"edgerec-local\"", "name = \"edgerec\"")
            .replace("\nORIGIN_URL = \"\"\n", "\nORIGIN_URL = \"https://o.example\"\n");
        assert!(check_production(&same_name).unwrap_err().to_string().contains("name of its own"));
    }

    /// Hardening round 2, item 9: workers.dev has no Cache API, so production needs a route.
    #[test]
    fn production_builds_need_a_route_of_the_shop() {
        let shipped = std::fs::read_to_string(root().join("wrangler.toml")).unwrap();
        let https = shipped.replace("\nORIGIN_URL = \"\"\n", "\nORIGIN_URL = \"https://o.example\"\n");
        assert!(check_production(&https).unwrap_err().to_string().contains("routes"), "no route");
        assert!(check_production(&with_route(&https)).is_ok());
        let exposed = with_route(&https).replace("name = \"edgerec\"\nworkers_dev = false", "name = \"edgerec\"\nworkers_dev = true");
        assert!(check_production(&exposed).is_err(), "workers.dev on");
    }

    /// Hardening 17: the shipped file cannot be deployed to production as is;
    /// an https origin passes, an http or empty one does not.
    #[test]
    fn production_builds_need_an_https_origin() {
        let shipped = with_route(&std::fs::read_to_string(root().join("wrangler.toml")).unwrap());
        let e = check_production(&shipped).unwrap_err();
        assert!(e.to_string().contains("ORIGIN_URL"), "{e}");
        let with = |url: &str| shipped.replace("\nORIGIN_URL = \"\"\n", &format!("\nORIGIN_URL = \"{url}\"\n"));
        assert!(check_production(&with("https://origin.shop.example")).is_ok());
        assert!(check_production(&with("http://origin.shop.example")).is_err());
        assert!(check_production(&with("http://127.0.0.1:8080")).is_err());
        assert!(check_production("[vars]\nORIGIN_URL = \"https://x\"\n").is_err(), "no production environment at all");
        let regions = |a: &str, b: &str| {
            let json = format!(r#"[{{"name": "eu", "url": "{a}"}}, {{"name": "us", "url": "{b}", "priority": 2}}]"#);
            shipped.replace("\nORIGIN_URL = \"\"\n", &format!("\nORIGINS = '{json}'\n"))
        };
        assert!(check_production(&regions("https://eu.example", "https://us.example")).is_ok());
        assert!(check_production(&regions("https://eu.example", "http://us.example")).is_err(), "one http region is refused");
        // wrangler itself refuses to deploy production until the credential is set.
        let doc: toml_edit::DocumentMut = shipped.parse().unwrap();
        let required = doc["env"]["production"]["secrets"]["required"].as_array().expect("[env.production] secrets.required");
        assert!(required.iter().any(|v| v.as_str() == Some("ORIGIN_SECRET")));
    }
}
