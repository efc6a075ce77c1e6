//! `cargo xtask image`: the origin's OCI image (the trainer rides along for
//! the retrain CronJob), built offline with podman from nothing but this
//! machine's files.
//!
//! No registry can be pulled from here, so the image is `FROM scratch`: a
//! root file system assembled under `target/image/rootfs` from the stripped
//! `origin` and `trainer` binaries, the shared libraries `ldd` says they and
//! ONNX Runtime's `libonnxruntime.so` (from the project's venv) load, and an
//! `/etc/passwd` naming the non-root user 65532. `deploy/Containerfile`
//! says the rest (user, volumes, health check, entry point).
//!
//! Podman runs here under `deploy/podman/containers.conf` (pointed at by
//! `CONTAINERS_CONF`): see that file for why.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::{cargo, root, run, setup, target_dir};

/// The image's name; the tag is the cargo profile (`release` or `dev`).
pub const NAME: &str = "localhost/edgerec-origin";

/// The user the image runs as (the distroless "nonroot" id).
const USER_ID: u32 = 65532;

/// `CONTAINERS_CONF` for every podman command of this project.
pub fn containers_conf() -> PathBuf {
    root().join("deploy/podman/containers.conf")
}

/// A podman command under the project's `containers.conf`.
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf());
    cmd
}

/// Builds `localhost/edgerec-origin:<tag>` from the `release` profile (or the
/// debug build with `debug`, as the tests do: no extra compile) and prints its size.
///
/// # Errors
/// When the build, `ldd`, `strip` or podman fails, or ONNX Runtime is missing.
pub fn build(debug: bool) -> anyhow::Result<String> {
    let (profile_dir, tag) = if debug { ("debug", "dev") } else { ("release", "release") };
    if debug {
        // The workspace build the tests use: `-p` here would resolve other features and rebuild tract.
        crate::build_workspace()?;
    } else {
        run(cargo().args(["build", "--release", "-p", "origin", "-p", "trainer", "--bins"]))?;
    }
    let ort = setup::ort_lib().context("libonnxruntime.so not found in .venv (run `cargo xtask setup`)")?;
    let stage = target_dir().join("image");
    let rootfs = stage.join("rootfs");
    if rootfs.exists() {
        std::fs::remove_dir_all(&rootfs).with_context(|| format!("clearing {}", rootfs.display()))?;
    }
    let bins = target_dir().join(profile_dir);
    let mut libs = BTreeSet::new();
    for name in ["origin", "trainer"] {
        let from = bins.join(name);
        let to = rootfs.join("usr/local/bin").join(name);
        copy(&from, &to)?;
        run(Command::new("strip").arg("--strip-debug").arg(&to))?;
        libs.extend(shared_libraries(&from)?);
    }
    let ort_dir = ort.parent().context("ORT library path has no directory")?;
    for entry in std::fs::read_dir(ort_dir)?.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with("libonnxruntime") {
            copy(&entry.path(), &rootfs.join("usr/local/lib").join(&file))?;
            libs.extend(shared_libraries(&entry.path())?);
        }
    }
    let ort_in_image = Path::new("/usr/local/lib").join(ort.file_name().context("ORT library has no file name")?);
    for lib in &libs {
        copy(lib, &rootfs.join(lib.strip_prefix("/").unwrap_or(lib)))?;
    }
    write(&rootfs.join("etc/passwd"), &format!("root:x:0:0:root:/:/sbin/nologin\nedgerec:x:{USER_ID}:{USER_ID}:edgerec:/data:/sbin/nologin\n"))?;
    write(&rootfs.join("etc/group"), &format!("root:x:0:\nedgerec:x:{USER_ID}:\n"))?;
    // Mount points; /data and /tmp owned by the image's user (Containerfile
    // COPY --chown), so a fresh volume there (podman copies the ownership up) is writable.
    for dir in ["models", "registry"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    let writable = stage.join("writable");
    for dir in ["data", "tmp"] {
        std::fs::create_dir_all(writable.join(dir))?;
    }
    let image = format!("{NAME}:{tag}");
    let containerfile = root().join("deploy/Containerfile");
    run(podman()
        .args(["build", "--quiet", "--format", "docker", "--build-arg"])
        .arg(format!("ORT_DYLIB_PATH={}", ort_in_image.display()))
        .args(["--tag", &image, "--file"])
        .arg(&containerfile)
        .arg(&stage))?;
    let size = podman().args(["image", "inspect", "--format", "{{.Size}}", &image]).output().context("podman image inspect")?;
    ensure!(size.status.success(), "podman image inspect {image} failed");
    let bytes: u64 = String::from_utf8_lossy(&size.stdout).trim().parse().context("image size")?;
    println!(
        "{image}: {:.1} MB ({} profile; origin, trainer, ONNX Runtime {}, {} shared libraries)",
        bytes as f64 / 1e6,
        profile_dir,
        ort_file(&ort),
        libs.len()
    );
    Ok(image)
}

fn ort_file(ort: &Path) -> String {
    ort.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The absolute paths of the shared libraries `binary` loads (its `ldd`
/// lines with a path; the vDSO has none), the dynamic loader included.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(binary).output().context("running ldd")?;
    if !out.status.success() {
        bail!("ldd {} failed: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        // The name the loader asks for (often a link); `copy` copies what it points at.
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Copies a file (following links), creating its directory.
fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().context("no parent")?)?;
    std::fs::copy(from, to).with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path.parent().context("no parent")?)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
