//! The registry's promises, each against a real directory: only whole,
//! verified versions are ever pointed at; backup and restore bring back the
//! same versions and pointers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use registry::{Pointer, Registry, RegistryError, Status};
use shared::manifest::{FileEntry, MANIFEST_FORMAT, Manifest};

/// A model directory as the trainer writes it (the registry never parses the
/// model files, so their bytes are arbitrary), version `name`.
fn model_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(format!("src-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = BTreeMap::new();
    for (file, bytes) in [("full.onnx", format!("full model of {name}").repeat(1000)), ("catalog.json", format!("[\"{name}\"]"))] {
        std::fs::write(dir.join(file), &bytes).unwrap();
        files.insert(file.to_string(), FileEntry::of(bytes.as_bytes()));
    }
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        version: name.to_string(),
        created_at: "2026-12-04T00:00:00Z".into(),
        dataset: "shop".into(),
        catalog_items: 1,
        log_items: 1,
        log_users: 1,
        log_interactions: 1,
        repeat_purchases: false,
        models: BTreeMap::new(),
        files,
        metrics: serde_json::Value::Null,
    };
    std::fs::write(dir.join("manifest.json"), serde_json::to_vec(&manifest).unwrap()).unwrap();
    dir
}

fn approved(reg: &Registry, base: &Path, name: &str) -> String {
    let v = reg.publish(&model_dir(base, name), Status::Candidate, "trained").unwrap().version;
    reg.set_status(&v, Status::Approved, "gate passed").unwrap();
    v
}

#[test]
fn a_published_version_is_verified_and_pointed_at_atomically() {
    let base = tempfile::tempdir().unwrap();
    let reg = Registry::open(base.path().join("reg")).unwrap();
    let v1 = approved(&reg, base.path(), "shop-v1");
    reg.set_pointer(Pointer::Stable, Some(&v1)).unwrap();
    assert_eq!(reg.pointer(Pointer::Stable).unwrap().as_deref(), Some("shop-v1"));
    assert_eq!(reg.pointer(Pointer::Canary).unwrap(), None);
    // Publishing the same files again is a no-op that keeps the record.
    let again = reg.publish(&model_dir(base.path(), "shop-v1"), Status::Candidate, "again").unwrap();
    assert_eq!(again.status, Status::Approved);
    assert_eq!(reg.versions().unwrap(), vec!["shop-v1".to_string()]);
    let left: Vec<_> = std::fs::read_dir(base.path().join("reg")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert!(left.iter().all(|n| !n.contains("tmp")), "no temporary pointer file left: {left:?}");
}

#[test]
fn a_truncated_file_is_never_made_current() {
    let base = tempfile::tempdir().unwrap();
    let reg = Registry::open(base.path().join("reg")).unwrap();
    let v1 = approved(&reg, base.path(), "shop-v1");
    let v2 = approved(&reg, base.path(), "shop-v2");
    reg.set_pointer(Pointer::Stable, Some(&v1)).unwrap();
    let full = reg.version_dir(&v2).join("full.onnx");
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&full, &bytes[..bytes.len() / 2]).unwrap();
    let err = reg.set_pointer(Pointer::Stable, Some(&v2)).unwrap_err();
    assert!(matches!(err, RegistryError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("full.onnx"), "the error names the file: {err}");
    assert_eq!(reg.pointer(Pointer::Stable).unwrap().as_deref(), Some("shop-v1"), "the pointer is unchanged");
}

#[test]
fn a_manifest_that_lies_is_never_made_current() {
    let base = tempfile::tempdir().unwrap();
    let reg = Registry::open(base.path().join("reg")).unwrap();
    let v1 = approved(&reg, base.path(), "shop-v1");
    // Same size, other bytes: the sha256 the manifest lists is not the file's.
    let catalog = reg.version_dir(&v1).join("catalog.json");
    std::fs::write(&catalog, b"[\"shop-vX\"]").unwrap();
    assert!(matches!(reg.set_pointer(Pointer::Stable, Some(&v1)), Err(RegistryError::Corrupt { .. })));
    // A manifest naming another version than its directory.
    let v2 = approved(&reg, base.path(), "shop-v2");
    let dir2 = reg.version_dir(&v2);
    let renamed = reg.version_dir("shop-v3");
    std::fs::rename(&dir2, &renamed).unwrap();
    let mut r = reg.record("shop-v2").unwrap().unwrap();
    r.version = "shop-v3".into();
    reg.put_record(&r).unwrap();
    assert!(matches!(reg.set_pointer(Pointer::Stable, Some("shop-v3")), Err(RegistryError::Misnamed { .. })));
    // A source directory that does not verify is not published at all.
    let src = model_dir(base.path(), "shop-v4");
    std::fs::write(src.join("full.onnx"), b"short").unwrap();
    assert!(matches!(reg.publish(&src, Status::Candidate, "x"), Err(RegistryError::Corrupt { .. })));
    assert!(!reg.version_dir("shop-v4").exists());
    assert_eq!(reg.pointer(Pointer::Stable).unwrap(), None);
}

#[test]
fn a_crash_mid_publish_leaves_nothing_that_can_be_made_current() {
    let base = tempfile::tempdir().unwrap();
    let reg = Registry::open(base.path().join("reg")).unwrap();
    // What a publish killed before its rename leaves: a staging directory with part of the files.
    let staging = base.path().join("reg/versions/.staging-shop-v1-4242");
    std::fs::create_dir_all(&staging).unwrap();
    let src = model_dir(base.path(), "shop-v1");
    std::fs::copy(src.join("manifest.json"), staging.join("manifest.json")).unwrap();
    std::fs::copy(src.join("catalog.json"), staging.join("catalog.json")).unwrap();
    assert!(reg.versions().unwrap().is_empty(), "a staging directory is not a version");
    assert!(reg.set_pointer(Pointer::Stable, Some(".staging-shop-v1-4242")).is_err());
    assert!(reg.set_pointer(Pointer::Stable, Some("shop-v1")).is_err(), "an unpublished version cannot be pointed at");
    // A version directory renamed in by hand without a record (not through publish) is not servable either.
    std::fs::rename(&staging, reg.version_dir("shop-v1")).unwrap();
    std::fs::copy(src.join("full.onnx"), reg.version_dir("shop-v1").join("full.onnx")).unwrap();
    assert!(matches!(reg.set_pointer(Pointer::Stable, Some("shop-v1")), Err(RegistryError::Unknown(_))));
    // The publish that is retried completes it.
    reg.publish(&src, Status::Approved, "retried").unwrap();
    reg.set_pointer(Pointer::Stable, Some("shop-v1")).unwrap();
}

#[test]
fn refused_and_bad_versions_are_never_served_and_retention_keeps_the_newest() {
    let base = tempfile::tempdir().unwrap();
    let reg = Registry::open(base.path().join("reg")).unwrap();
    let refused = reg.publish(&model_dir(base.path(), "shop-r"), Status::Candidate, "trained").unwrap().version;
    reg.set_status(&refused, Status::Refused, "next-day NDCG@20 0.20 < 0.25 - 0.01").unwrap();
    let err = reg.set_pointer(Pointer::Canary, Some(&refused)).unwrap_err();
    assert!(err.to_string().contains("NDCG"), "the refusal carries the gate's reason: {err}");
    let mut good = Vec::new();
    for i in 0..5 {
        good.push(approved(&reg, base.path(), &format!("shop-g{i}")));
        std::thread::sleep(std::time::Duration::from_millis(5)); // distinct publish times
    }
    reg.set_pointer(Pointer::Stable, Some(&good[0])).unwrap(); // pinned, however old
    reg.set_status(&good[4], Status::Bad, "canary p99 3.1x").unwrap();
    assert!(reg.set_pointer(Pointer::Stable, Some(&good[4])).is_err());
    let removed = reg.retain(2).unwrap();
    let left = reg.versions().unwrap();
    assert!(left.contains(&good[0]), "the stable version stays: {left:?}");
    assert!(left.contains(&good[2]) && left.contains(&good[3]), "the two newest good stay: {left:?}");
    assert!(removed.contains(&good[1]), "{removed:?}");
    assert!(left.contains(&refused) && left.contains(&good[4]), "within their own two: {left:?}");
}

#[test]
fn backup_and_restore_bring_back_the_same_versions_and_pointers() {
    let base = tempfile::tempdir().unwrap();
    let reg = Registry::open(base.path().join("region-a")).unwrap();
    let v1 = approved(&reg, base.path(), "shop-v1");
    let v2 = approved(&reg, base.path(), "shop-v2");
    reg.set_pointer(Pointer::Stable, Some(&v2)).unwrap();
    let backup = Registry::open(base.path().join("backup")).unwrap();
    let first = reg.sync_to(&backup).unwrap();
    assert_eq!(first.copied.len(), 2);
    assert!(first.bytes > 2 * 10_000);
    assert_eq!(reg.sync_to(&backup).unwrap().copied.len(), 0, "a second backup copies nothing");
    // A version damaged in the backup is replaced by the next backup.
    std::fs::write(backup.version_dir(&v1).join("full.onnx"), b"bit rot").unwrap();
    assert_eq!(reg.sync_to(&backup).unwrap().copied, vec![v1.clone()]);
    // Region A loses its disk, then restores.
    std::fs::remove_dir_all(base.path().join("region-a")).unwrap();
    assert!(Registry::existing(base.path().join("region-a")).is_none());
    let restored = Registry::open(base.path().join("region-a")).unwrap();
    let report = backup.sync_to(&restored).unwrap();
    assert_eq!(report.stable.as_deref(), Some(v2.as_str()));
    assert_eq!(restored.versions().unwrap().len(), 2);
    restored.verify(&v1).unwrap();
    assert_eq!(restored.record(&v2).unwrap().unwrap().status, Status::Approved);
    // A corrupt source refuses the backup before any pointer moves.
    std::fs::write(restored.version_dir(&v2).join("catalog.json"), b"x").unwrap();
    let other = Registry::open(base.path().join("other")).unwrap();
    assert!(restored.sync_to(&other).is_err());
    assert_eq!(other.pointer(Pointer::Stable).unwrap(), None);
}
