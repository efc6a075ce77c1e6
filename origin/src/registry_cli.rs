//! `origin registry …`: the operator's commands over a model registry
//! (list, publish, promote, mark bad, verify, retain, backup, restore).
//! Each prints what it did as JSON on stdout.

use std::path::PathBuf;

use anyhow::Context;
use registry::{Pointer, Registry, Status};

/// `origin registry` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Every version with its status and reason, and the pointers.
    List,
    /// Re-hash every file of every version (or of one).
    Verify {
        /// Only this version.
        #[arg(long)]
        version: Option<String>,
    },
    /// Copy a model directory in as a version (verified before and after the copy).
    Publish {
        /// The model directory (as `trainer train --out` writes it).
        #[arg(long)]
        from: PathBuf,
        /// Status to record: `candidate`, or `approved` for a model an operator vouches for.
        #[arg(long, default_value = "candidate")]
        status: String,
        /// Why, in words.
        #[arg(long, default_value = "published by an operator")]
        reason: String,
    },
    /// Point `CURRENT` at a version at once, without a canary (the first
    /// version of a registry, or an operator's rollback to a known good one).
    Promote {
        /// The version.
        #[arg(long)]
        version: String,
    },
    /// Mark a version bad (never served again); removes a pointer naming it
    /// only if it is the canary.
    MarkBad {
        /// The version.
        #[arg(long)]
        version: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Keep the newest N servable versions (and N refused or bad), besides the pointed-at.
    Retain {
        /// How many.
        #[arg(long, default_value_t = 5)]
        keep: usize,
    },
    /// Copy every version, record and pointer to a second registry (another
    /// disk or region), each version verified there after the copy.
    Backup {
        /// The backup registry (created if missing).
        #[arg(long)]
        to: PathBuf,
    },
    /// Bring this registry back from a backup (same as a backup the other way).
    Restore {
        /// The backup registry.
        #[arg(long)]
        from: PathBuf,
    },
}

fn status_of(word: &str) -> anyhow::Result<Status> {
    serde_json::from_value(serde_json::Value::String(word.to_string())).with_context(|| format!("unknown status {word:?}"))
}

/// Runs one command on the registry at `root`.
///
/// # Errors
/// The registry's refusal (a corrupt version, a bad one as a pointer, …).
pub fn run(root: &std::path::Path, command: RegistryCommand) -> anyhow::Result<serde_json::Value> {
    let open_existing = || Registry::existing(root).with_context(|| format!("no registry at {}", root.display()));
    Ok(match command {
        RegistryCommand::List => {
            let reg = open_existing()?;
            serde_json::json!({
                "stable": reg.pointer(Pointer::Stable)?,
                "canary": reg.pointer(Pointer::Canary)?,
                "versions": reg.records()?,
            })
        }
        RegistryCommand::Verify { version } => {
            let reg = open_existing()?;
            let versions = match version {
                Some(v) => vec![v],
                None => reg.versions()?,
            };
            for v in &versions {
                reg.verify(v)?;
            }
            serde_json::json!({ "verified": versions })
        }
        RegistryCommand::Publish { from, status, reason } => {
            let reg = Registry::open(root)?;
            serde_json::to_value(reg.publish(&from, status_of(&status)?, &reason)?)?
        }
        RegistryCommand::Promote { version } => {
            let reg = open_existing()?;
            // The pointer first: it refuses a refused or bad version, whose record must stay as it is.
            reg.set_pointer(Pointer::Stable, Some(&version))?;
            if reg.record(&version)?.is_some_and(|r| r.status != Status::Promoted) {
                reg.set_status(&version, Status::Promoted, "promoted by an operator")?;
            }
            serde_json::json!({ "stable": version })
        }
        RegistryCommand::MarkBad { version, reason } => {
            let reg = open_existing()?;
            if reg.pointer(Pointer::Stable)?.as_deref() == Some(version.as_str()) {
                anyhow::bail!("{version} is the stable version: promote another one first");
            }
            if reg.pointer(Pointer::Canary)?.as_deref() == Some(version.as_str()) {
                reg.set_pointer(Pointer::Canary, None)?;
            }
            serde_json::to_value(reg.set_status(&version, Status::Bad, &reason)?)?
        }
        RegistryCommand::Retain { keep } => serde_json::json!({ "removed": open_existing()?.retain(keep)? }),
        RegistryCommand::Backup { to } => serde_json::to_value(open_existing()?.sync_to(&Registry::open(&to)?)?)?,
        RegistryCommand::Restore { from } => {
            let backup = Registry::existing(&from).with_context(|| format!("no backup registry at {}", from.display()))?;
            serde_json::to_value(backup.sync_to(&Registry::open(root)?)?)?
        }
    })
}
