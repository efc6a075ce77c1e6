//! What the registry knows of a version beside its files: where it stands in
//! the promotion process, why, on what data it was trained and how it scored.
//! Records change (a candidate is approved, then promoted or marked bad);
//! the version's files never do.

use serde::{Deserialize, Serialize};

/// Where a version stands. The path a good version takes is
/// `Candidate → Approved → Canary → Promoted`; `Refused` (by the gate) and
/// `Bad` (by the canary, or by an operator) are final: neither is ever made
/// current again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Published, not yet judged.
    Candidate,
    /// Passed the promotion gate; waits for a rollout.
    Approved,
    /// Refused by the promotion gate (the reason says which check).
    Refused,
    /// Serving in the canary region.
    Canary,
    /// Made the stable version every region serves (now or before).
    Promoted,
    /// Rolled back: worse in the canary, or marked bad by an operator.
    Bad,
}

impl Status {
    /// Whether a pointer may name a version with this status.
    pub fn may_serve(self) -> bool {
        !matches!(self, Status::Refused | Status::Bad)
    }
}

/// The time span of the events a version was trained on, Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingWindow {
    /// Oldest event, ms since the Unix epoch.
    pub from_ms: u64,
    /// Newest event, ms since the Unix epoch.
    pub until_ms: u64,
    /// Events read.
    pub events: u64,
}

/// One status change, kept in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// RFC 3339 UTC.
    pub at: String,
    /// The status set.
    pub status: Status,
    /// Why, in words.
    pub reason: String,
}

/// `records/<version>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The version (the manifest's `version`, the directory's name).
    pub version: String,
    /// Dataset (shop) name from the manifest.
    pub dataset: String,
    /// When the version entered the registry, RFC 3339 UTC.
    pub published_at: String,
    /// Where it stands now.
    pub status: Status,
    /// The reason of the last change.
    pub reason: String,
    /// The events it was trained on, when it came from a store.
    #[serde(default)]
    pub training: Option<TrainingWindow>,
    /// The promotion gate's figures and verdict (free-form, written by the trainer).
    #[serde(default)]
    pub gate: serde_json::Value,
    /// Every status change, oldest first.
    #[serde(default)]
    pub changes: Vec<Change>,
}

impl Record {
    /// A new record with status `status`.
    pub fn new(version: &str, dataset: &str, status: Status, reason: &str) -> Self {
        let at = now();
        Record {
            version: version.to_string(),
            dataset: dataset.to_string(),
            published_at: at.clone(),
            status,
            reason: reason.to_string(),
            training: None,
            gate: serde_json::Value::Null,
            changes: vec![Change { at, status, reason: reason.to_string() }],
        }
    }

    /// Sets the status and appends the change.
    pub fn set(&mut self, status: Status, reason: &str) {
        self.status = status;
        self.reason = reason.to_string();
        self.changes.push(Change { at: now(), status, reason: reason.to_string() });
    }
}

/// Now, RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
