//! An origin that follows a model registry (`--registry`): every
//! `--registry-poll-ms` it reads the pointer it tracks and, when that names
//! another version than the one serving, hot-reloads it through the
//! [`ModelStore`] (sha256-verified, warmed, swapped atomically; a refused
//! version leaves the current one serving and is not retried until the
//! pointer moves).
//!
//! A registry that disappears (a lost disk) changes nothing: the model in
//! memory keeps serving, readiness holds, and the follower picks the pointer
//! up again once the registry is restored.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry::{Pointer, Registry};
use serde::Serialize;

use crate::config::Track;
use crate::model_store::ModelStore;

/// What the follower last saw, for `/readyz` and the rollout controller.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowerStatus {
    /// The registry's root directory.
    pub root: String,
    /// `stable` or `canary`.
    pub track: &'static str,
    /// The version the tracked pointer named at the last poll (`None`: the
    /// registry or the pointer is missing; the model in memory keeps serving).
    pub pointer: Option<String>,
    /// The last version that was refused, and why (not retried until the pointer moves).
    pub refused: Option<(String, String)>,
}

/// Follows a registry's pointer (module docs).
pub struct Follower {
    root: PathBuf,
    track: Track,
    poll: Duration,
    store: Arc<ModelStore>,
    status: Mutex<FollowerStatus>,
}

impl Follower {
    /// A follower of `root`'s `track` pointer, polled every `poll`.
    pub fn new(root: PathBuf, track: Track, poll: Duration, store: Arc<ModelStore>) -> Arc<Self> {
        let status = FollowerStatus {
            root: root.display().to_string(),
            track: match track {
                Track::Stable => "stable",
                Track::Canary => "canary",
            },
            ..FollowerStatus::default()
        };
        Arc::new(Follower { root, track, poll, store, status: Mutex::new(status) })
    }

    /// What it last saw.
    pub fn status(&self) -> FollowerStatus {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The version the tracked pointer names now, if the registry is there.
    fn wanted(&self) -> Option<String> {
        // `existing`: a lost registry must not be recreated empty by its reader.
        let reg = Registry::existing(&self.root)?;
        let canary = match self.track {
            Track::Canary => reg.pointer(Pointer::Canary).ok().flatten(),
            Track::Stable => None,
        };
        canary.or_else(|| reg.pointer(Pointer::Stable).ok().flatten())
    }

    /// Polls forever (spawn it).
    pub async fn run(self: Arc<Self>) {
        let mut was_missing = false;
        loop {
            let me = self.clone();
            let wanted = tokio::task::spawn_blocking(move || me.wanted()).await.ok().flatten();
            metrics::gauge!("registry_pointer_readable").set(if wanted.is_some() { 1.0 } else { 0.0 });
            match &wanted {
                None if !was_missing => {
                    let serving = self.store.current().map(|m| m.version().to_string());
                    tracing::warn!(registry = %self.root.display(), ?serving, "registry or its pointer is missing: the model in memory keeps serving");
                    was_missing = true;
                }
                None => {}
                Some(version) => {
                    was_missing = false;
                    self.follow(version).await;
                }
            }
            self.status.lock().unwrap_or_else(|p| p.into_inner()).pointer = wanted;
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn follow(&self, version: &str) {
        let serving = self.store.current().map(|m| m.version().to_string());
        let refused_before = self.status().refused.is_some_and(|(v, _)| v == version);
        if serving.as_deref() == Some(version) || refused_before {
            return;
        }
        let dir = self.root.join("versions").join(version);
        tracing::info!(version, ?serving, track = self.status().track, "registry pointer moved: loading");
        let outcome = self.store.load(&dir).await;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(_) => status.refused = None,
            Err(e) => {
                metrics::counter!("registry_versions_refused_total").increment(1);
                status.refused = Some((version.to_string(), e.to_string()));
            }
        }
    }
}
