//! The edge's copy of the live catalog, learned from the origins without a
//! redeploy: `GET {origin}/v1/catalog/changes?since=V` returns what changed
//! after version `V`; the isolate applies it and asks again from the
//! newest version. An isolate refreshes in the background every
//! [`SYNC_EVERY_MS`]; one whose copy is older than [`MAX_AGE_MS`] (or has
//! never synced) refreshes before it answers, within [`INLINE_BUDGET_MS`],
//! so an item marked unavailable leaves every answer of this edge within
//! `MAX_AGE_MS` plus one sync at worst.

use std::cell::RefCell;

use shared::edge_config::EdgeConfig;
use shared::events::CatalogChanges;
use shared::live_catalog::LiveCatalog;

use crate::origin_client::{self, OriginRequest};

/// Background refresh period, ms.
pub const SYNC_EVERY_MS: u64 = 5_000;
/// Older than this, the copy is refreshed before answering, ms.
pub const MAX_AGE_MS: u64 = 30_000;
/// What an inline refresh may take of a request, ms.
pub const INLINE_BUDGET_MS: u64 = 50;
/// Records asked per page (each ~200 bytes: under the 1 MiB answer bound).
pub const PAGE: usize = 2_000;
/// Pages one refresh reads at most (the rest waits for the next one).
pub const MAX_PAGES: usize = 10;

struct Copy {
    catalog: LiveCatalog,
    /// When the last refresh succeeded (ms since the epoch; 0 = never).
    synced_ms: u64,
    /// When the last refresh started: with every origin down, one request
    /// per [`SYNC_EVERY_MS`] tries, not every request.
    tried_ms: u64,
    /// A refresh is under way.
    in_flight: bool,
}

thread_local! {
    static COPY: RefCell<Copy> = RefCell::new(Copy { catalog: LiveCatalog::new(), synced_ms: 0, tried_ms: 0, in_flight: false });
}

/// What a request should do about the copy at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Fresh enough.
    No,
    /// Refresh in the background (`ctx.wait_until`).
    Background,
    /// Refresh before answering.
    Inline,
}

/// Whether a refresh is due at `now_ms`; marks one under way when it is.
pub fn due(now_ms: u64) -> Due {
    COPY.with(|c| {
        let mut c = c.borrow_mut();
        let age = now_ms.saturating_sub(c.synced_ms);
        let due = if c.in_flight || now_ms.saturating_sub(c.tried_ms) < SYNC_EVERY_MS {
            Due::No
        } else if c.synced_ms == 0 || age > MAX_AGE_MS {
            Due::Inline
        } else {
            Due::Background
        };
        if due != Due::No {
            c.in_flight = true;
            c.tried_ms = now_ms;
        }
        due
    })
}

/// Runs `f` over the copy.
pub fn with<R>(f: impl FnOnce(&LiveCatalog) -> R) -> R {
    COPY.with(|c| f(&c.borrow().catalog))
}

/// When the copy last synced (ms since the epoch; 0 = never), its version and its hidden items.
pub fn status() -> (u64, u64, usize) {
    COPY.with(|c| {
        let c = c.borrow();
        (c.synced_ms, c.catalog.version(), c.catalog.hidden_count())
    })
}

/// Reads changes from the first origin (best priority first) that answers,
/// within `budget_ms` in all, and applies them.
pub async fn refresh(cfg: &EdgeConfig, now_ms: impl Fn() -> u64, budget_ms: u64) {
    let started = now_ms();
    let mut ok = false;
    'origins: for origin in cfg.by_priority() {
        for _ in 0..MAX_PAGES {
            let deadline_ms = budget_ms.saturating_sub(now_ms().saturating_sub(started));
            if deadline_ms < 5 {
                break 'origins;
            }
            let since = with(LiveCatalog::version);
            let url = format!("{}/v1/catalog/changes?since={since}&limit={PAGE}", origin.url);
            let call = OriginRequest { url: &url, body: None, request_id: "catalog-sync", edge_key: cfg.origin_secret.as_deref(), client_ip: None };
            match origin_client::call_json::<CatalogChanges>(&call, deadline_ms).await {
                Ok(changes) => {
                    let more = changes.more;
                    COPY.with(|c| c.borrow_mut().catalog.apply_changes(changes.items));
                    ok = true;
                    if !more {
                        break 'origins;
                    }
                }
                Err(e) => {
                    worker::console_warn!("edgerec: catalog sync from {} failed: {e}", origin.name);
                    if ok {
                        break 'origins; // what was read stands; the rest comes next time
                    }
                    continue 'origins;
                }
            }
        }
        break;
    }
    COPY.with(|c| {
        let mut c = c.borrow_mut();
        c.in_flight = false;
        if ok {
            c.synced_ms = now_ms();
        }
    });
}
