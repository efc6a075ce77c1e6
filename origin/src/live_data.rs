//! The live side of the origin: the event store and the live catalog.
//!
//! Catalog changes reach [`LiveData::catalog`] two ways: this origin's own
//! writes are applied as soon as the store commits them, and a poller asks
//! the store for changes since the version it holds every
//! `--catalog-poll-ms`, so a change written through another origin sharing a
//! PostgreSQL store is honoured here within one poll.

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use event_store::{EventStore, StoreError};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use shared::events::ItemRecord;
use shared::live_catalog::LiveCatalog;

/// Records read from the store per poll.
const CHANGES_PAGE: usize = 5_000;

/// The store, the catalog as it is now, and the per-shopper event rate limit.
pub struct LiveData {
    /// Where events and item changes are kept.
    pub store: Arc<dyn EventStore>,
    catalog: RwLock<LiveCatalog>,
    shoppers: DefaultKeyedRateLimiter<String>,
}

impl LiveData {
    /// Wraps an opened store; `per_shopper_per_s` events per second per
    /// shopper, bursts of `burst`.
    pub fn new(store: Arc<dyn EventStore>, per_shopper_per_s: NonZeroU32, burst: NonZeroU32) -> Self {
        LiveData { store, catalog: RwLock::new(LiveCatalog::new()), shoppers: RateLimiter::keyed(Quota::per_second(per_shopper_per_s).allow_burst(burst)) }
    }

    /// Reads the catalog (short: a request holds it while it filters its answer).
    pub fn catalog(&self) -> std::sync::RwLockReadGuard<'_, LiveCatalog> {
        self.catalog.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies records the store has committed.
    pub fn apply(&self, records: Vec<ItemRecord>) {
        let mut c = self.catalog.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        c.apply_changes(records);
        metrics::gauge!("catalog_version").set(c.version() as f64);
        metrics::gauge!("catalog_hidden_items").set(c.hidden_count() as f64);
    }

    /// Whether `shopper` may send one more event now.
    pub fn admit(&self, shopper: &str) -> bool {
        self.shoppers.check_key(&shopper.to_string()).is_ok()
    }

    /// Reads every change since the catalog's version (blocking: run it off the async workers).
    ///
    /// # Errors
    /// The store's; what was read before it is applied.
    pub fn catch_up(&self) -> Result<(), StoreError> {
        loop {
            let since = self.catalog().version();
            let changes = self.store.catalog_changes(since, CHANGES_PAGE)?;
            let more = changes.more;
            if !changes.items.is_empty() {
                self.apply(changes.items);
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Polls the store every `every` until the process ends; prunes the
    /// shopper table as it goes (a stream of new shoppers must not grow it
    /// without bound).
    pub fn spawn_poller(self: &Arc<Self>, every: Duration) {
        let live = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let Some(live) = live.upgrade() else { break };
                n += 1;
                if n.is_multiple_of(30) {
                    live.shoppers.retain_recent();
                    live.shoppers.shrink_to_fit();
                }
                match tokio::task::spawn_blocking(move || live.catch_up()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "catalog poll failed; answers follow the last catalog read"),
                    Err(e) => tracing::error!(error = %e, "catalog poll panicked"),
                }
            }
        });
    }
}
