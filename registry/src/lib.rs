//! edgerec's model registry: the versions a shop's regions may serve, on disk.
//!
//! ```text
//! <root>/versions/<version>/   a model directory as the trainer writes it (manifest.json + files);
//!                              immutable once there, its name is the manifest's version
//! <root>/records/<version>.json  status, reason, training window, gate figures (Record)
//! <root>/CURRENT                 the stable version every region serves (one line)
//! <root>/CANARY                  the version under test in the canary region (absent: none)
//! ```
//!
//! * A version is content-addressed by its manifest: every file's sha256 and
//!   size (FIPS 180-4), and the version string carries the full model's sha256
//!   prefix. [`Registry::verify`] re-hashes every listed file.
//! * Publishing copies into a staging directory, syncs, verifies the copy and
//!   only then renames it into `versions/` (rename is atomic on POSIX), so a
//!   crash mid-publish leaves a staging directory that is never listed.
//! * Pointers are switched by writing a temporary file, syncing it and
//!   renaming it over the pointer; a pointer is only ever set to a version
//!   that verifies and whose record allows serving ([`Status::may_serve`]).
//! * [`Registry::sync_to`] is backup and restore: every version the target
//!   lacks is published there (verified after the copy), then the records,
//!   then the pointers — a reader of the target never sees a pointer to a
//!   version that is not there whole.

mod record;

use std::path::{Path, PathBuf};

use shared::manifest::{Manifest, ManifestError, is_bare_name};
use shared::model_set::MANIFEST_FILE;

pub use record::{Change, Record, Status, TrainingWindow, now};

/// Why a registry operation was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A version's files do not match its manifest (truncated, altered, missing).
    #[error("version {version}: {source}")]
    Corrupt {
        /// The version.
        version: String,
        /// What did not match.
        source: ManifestError,
    },
    /// The manifest names another version than its directory.
    #[error("directory {dir} holds a manifest of version {manifest}")]
    Misnamed {
        /// The directory name.
        dir: String,
        /// The manifest's version.
        manifest: String,
    },
    /// No such version in the registry.
    #[error("no version {0} in the registry")]
    Unknown(String),
    /// The version's record forbids serving it.
    #[error("version {version} is {status:?} ({reason}): it is never served")]
    NotServable {
        /// The version.
        version: String,
        /// Its status.
        status: Status,
        /// Why.
        reason: String,
    },
    /// A version with the same name but other files is already there.
    #[error("version {0} is already in the registry with other files")]
    Conflict(String),
    /// A record file is malformed.
    #[error("record {path}: {source}")]
    Record {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, RegistryError>;

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T> {
    r.map_err(|source| RegistryError::Io { path: path.to_path_buf(), source })
}

/// The two pointers a region can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pointer {
    /// `CURRENT`: the version every region serves.
    Stable,
    /// `CANARY`: the version under test in the canary region.
    Canary,
}

impl Pointer {
    fn file(self) -> &'static str {
        match self {
            Pointer::Stable => "CURRENT",
            Pointer::Canary => "CANARY",
        }
    }
}

/// What [`Registry::sync_to`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    /// Versions copied (and verified there).
    pub copied: Vec<String>,
    /// Versions already there, verified.
    pub present: Vec<String>,
    /// Bytes copied.
    pub bytes: u64,
    /// The stable version the target points at afterwards.
    pub stable: Option<String>,
}

/// A registry rooted at a directory (module docs).
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

/// Writes `bytes` to `path` atomically: a synced temporary file renamed over
/// it, then the directory synced so the rename survives a power loss.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    io(
        &tmp,
        (|| {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()
        })(),
    )?;
    io(path, std::fs::rename(&tmp, path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<()> {
    io(dir, std::fs::File::open(dir).and_then(|d| d.sync_all()))
}

/// Verifies a model directory whole: the manifest parses, and every file it
/// lists has exactly the recorded sha256 and size.
///
/// # Errors
/// [`RegistryError::Corrupt`] naming the first file that does not match, or
/// [`RegistryError::Io`] when the manifest cannot be read.
pub fn verify_dir(dir: &Path) -> Result<Manifest> {
    let label = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let corrupt = |source| RegistryError::Corrupt { version: label.clone(), source };
    let manifest_path = dir.join(MANIFEST_FILE);
    // `from_json` refuses another format and file names outside the directory.
    let manifest = Manifest::from_json(&io(&manifest_path, std::fs::read(&manifest_path))?).map_err(corrupt)?;
    for name in manifest.files.keys() {
        let bytes = std::fs::read(dir.join(name)).map_err(|_| corrupt(ManifestError::Missing(name.clone())))?;
        manifest.verify(name, &bytes).map_err(corrupt)?;
    }
    Ok(manifest)
}

impl Registry {
    /// Opens (creating if needed) the registry at `root`.
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for sub in ["versions", "records"] {
            let dir = root.join(sub);
            io(&dir, std::fs::create_dir_all(&dir))?;
        }
        Ok(Registry { root })
    }

    /// Opens the registry at `root` only if it exists (a region reading a
    /// registry it lost must not recreate it empty).
    pub fn existing(root: impl Into<PathBuf>) -> Option<Self> {
        let root = root.into();
        root.join("versions").is_dir().then_some(Registry { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `version` (which may not exist).
    pub fn version_dir(&self, version: &str) -> PathBuf {
        self.root.join("versions").join(version)
    }

    fn record_path(&self, version: &str) -> PathBuf {
        self.root.join("records").join(format!("{version}.json"))
    }

    /// Re-hashes every file of `version` against its manifest.
    ///
    /// # Errors
    /// [`RegistryError::Unknown`], [`RegistryError::Corrupt`], [`RegistryError::Misnamed`].
    pub fn verify(&self, version: &str) -> Result<Manifest> {
        let dir = self.version_dir(version);
        if !is_bare_name(version) || !dir.join(MANIFEST_FILE).is_file() {
            return Err(RegistryError::Unknown(version.to_string()));
        }
        let manifest = verify_dir(&dir)?;
        if manifest.version != version {
            return Err(RegistryError::Misnamed { dir: version.to_string(), manifest: manifest.version });
        }
        Ok(manifest)
    }

    /// Copies the model directory `from` into the registry as the version its
    /// manifest names, verified before and after the copy, with a record of
    /// `status`. Publishing the same version again (same files) only
    /// rewrites nothing and returns it.
    ///
    /// # Errors
    /// [`RegistryError::Corrupt`] when `from` does not verify,
    /// [`RegistryError::Conflict`] when the version exists with other files,
    /// [`RegistryError::Io`].
    pub fn publish(&self, from: &Path, status: Status, reason: &str) -> Result<Record> {
        let manifest = verify_dir(from)?;
        let version = manifest.version.clone();
        if !is_bare_name(&version) {
            return Err(RegistryError::Corrupt { version: version.clone(), source: ManifestError::NotBareName(version) });
        }
        let dest = self.version_dir(&version);
        if dest.exists() {
            let there = self.verify(&version)?;
            if there.files != manifest.files {
                return Err(RegistryError::Conflict(version));
            }
        } else {
            self.copy_in(from, &manifest)?;
        }
        match self.record(&version)? {
            Some(existing) => Ok(existing),
            None => {
                let record = Record::new(&version, &manifest.dataset, status, reason);
                self.put_record(&record)?;
                Ok(record)
            }
        }
    }

    /// Copies the listed files and the manifest into a staging directory,
    /// syncs and verifies them, then renames the directory into place.
    fn copy_in(&self, from: &Path, manifest: &Manifest) -> Result<u64> {
        let staging = self.root.join("versions").join(format!(".staging-{}-{}", manifest.version, std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        io(&staging, std::fs::create_dir_all(&staging))?;
        let mut bytes = 0;
        for name in manifest.files.keys().map(String::as_str).chain([MANIFEST_FILE]) {
            let (src, dst) = (from.join(name), staging.join(name));
            bytes += io(&src, std::fs::copy(&src, &dst))?;
            io(&dst, std::fs::File::open(&dst).and_then(|f| f.sync_all()))?;
        }
        sync_dir(&staging)?;
        if let Err(e) = verify_dir(&staging) {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(e);
        }
        let dest = self.version_dir(&manifest.version);
        io(&dest, std::fs::rename(&staging, &dest))?;
        sync_dir(&self.root.join("versions"))?;
        Ok(bytes)
    }

    /// The record of `version`, if any.
    ///
    /// # Errors
    /// [`RegistryError::Io`] or [`RegistryError::Record`] for a malformed one.
    pub fn record(&self, version: &str) -> Result<Option<Record>> {
        let path = self.record_path(version);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| RegistryError::Record { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }

    /// Writes a record (atomically).
    ///
    /// # Errors
    /// [`RegistryError::Io`].
    pub fn put_record(&self, record: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
        write_atomic(&self.record_path(&record.version), &bytes)
    }

    /// Sets the status of `version` with a reason.
    ///
    /// # Errors
    /// [`RegistryError::Unknown`] without a record, [`RegistryError::Io`].
    pub fn set_status(&self, version: &str, status: Status, reason: &str) -> Result<Record> {
        let mut record = self.record(version)?.ok_or_else(|| RegistryError::Unknown(version.to_string()))?;
        record.set(status, reason);
        self.put_record(&record)?;
        Ok(record)
    }

    /// The version `pointer` names, if set.
    ///
    /// # Errors
    /// [`RegistryError::Io`] other than a missing file.
    pub fn pointer(&self, pointer: Pointer) -> Result<Option<String>> {
        let path = self.root.join(pointer.file());
        match std::fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().to_string()).filter(|v| !v.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }

    /// Points `pointer` at `version` after verifying every file of it and
    /// checking its record allows serving; `None` removes the pointer.
    ///
    /// # Errors
    /// [`RegistryError::Unknown`] (no such directory, or no record),
    /// [`RegistryError::Corrupt`], [`RegistryError::NotServable`],
    /// [`RegistryError::Io`]; the pointer is unchanged.
    pub fn set_pointer(&self, pointer: Pointer, version: Option<&str>) -> Result<()> {
        let path = self.root.join(pointer.file());
        let Some(version) = version else {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RegistryError::Io { path, source: e }),
                _ => sync_dir(&self.root),
            };
        };
        self.verify(version)?;
        // A version without a record did not come through `publish` (or its publish died before the record).
        let record = self.record(version)?.ok_or_else(|| RegistryError::Unknown(version.to_string()))?;
        if !record.status.may_serve() {
            return Err(RegistryError::NotServable { version: version.to_string(), status: record.status, reason: record.reason });
        }
        write_atomic(&path, format!("{version}\n").as_bytes())
    }

    /// Every version directory (staging directories excluded), oldest record first.
    ///
    /// # Errors
    /// [`RegistryError::Io`].
    pub fn versions(&self) -> Result<Vec<String>> {
        let dir = self.root.join("versions");
        let mut out: Vec<(String, String)> = Vec::new();
        for entry in io(&dir, std::fs::read_dir(&dir))?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !entry.path().is_dir() {
                continue;
            }
            let published = self.record(&name).ok().flatten().map(|r| r.published_at).unwrap_or_default();
            out.push((published, name));
        }
        out.sort();
        Ok(out.into_iter().map(|(_, v)| v).collect())
    }

    /// Every record, oldest first.
    ///
    /// # Errors
    /// As [`Registry::versions`] and [`Registry::record`].
    pub fn records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for v in self.versions()? {
            if let Some(r) = self.record(&v)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Removes all but the newest `keep` servable versions that no pointer
    /// names (refused and bad versions go after `keep` of their own, so their
    /// reasons stay readable a while). Returns the versions removed.
    ///
    /// # Errors
    /// [`RegistryError::Io`].
    pub fn retain(&self, keep: usize) -> Result<Vec<String>> {
        let pinned: Vec<String> = [Pointer::Stable, Pointer::Canary].into_iter().filter_map(|p| self.pointer(p).ok().flatten()).collect();
        let records = self.records()?;
        let mut removed = Vec::new();
        for good in [true, false] {
            let group: Vec<&Record> = records.iter().filter(|r| r.status.may_serve() == good && !pinned.contains(&r.version)).collect();
            for r in group.iter().take(group.len().saturating_sub(keep)) {
                let dir = self.version_dir(&r.version);
                io(&dir, std::fs::remove_dir_all(&dir))?;
                let _ = std::fs::remove_file(self.record_path(&r.version));
                removed.push(r.version.clone());
            }
        }
        Ok(removed)
    }

    /// Backup and restore: makes `target` hold every version of this
    /// registry (copied and verified there; versions already there are
    /// verified, a corrupt one is replaced), then this registry's records, then
    /// its pointers. Versions only the target has are left alone.
    ///
    /// # Errors
    /// The first version that does not verify here ([`RegistryError::Corrupt`])
    /// or cannot be copied; the target's pointers are then unchanged.
    pub fn sync_to(&self, target: &Registry) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        for version in self.versions()? {
            let manifest = self.verify(&version)?;
            match target.verify(&version) {
                Ok(there) if there.files == manifest.files => report.present.push(version.clone()),
                Ok(_) => return Err(RegistryError::Conflict(version)),
                Err(_) => {
                    let dir = target.version_dir(&version);
                    if dir.exists() {
                        io(&dir, std::fs::remove_dir_all(&dir))?; // corrupt or partial there: replaced whole
                    }
                    report.bytes += target.copy_in(&self.version_dir(&version), &manifest)?;
                    report.copied.push(version.clone());
                }
            }
            if let Some(record) = self.record(&version)? {
                target.put_record(&record)?;
            }
        }
        for pointer in [Pointer::Stable, Pointer::Canary] {
            target.set_pointer(pointer, self.pointer(pointer)?.as_deref())?;
        }
        report.stable = target.pointer(Pointer::Stable)?;
        Ok(report)
    }
}
