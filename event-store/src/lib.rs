//! # edgerec `event-store` — what shoppers did and what the shop sells
//!
//! One trait, [`EventStore`], over two real stores:
//! * [`sqlite::SqliteStore`] — the embedded default: one file, WAL mode,
//!   `synchronous=FULL`, so a batch is on disk when [`EventStore::append`]
//!   returns. Chosen over sled/redb because SQLite's durability is the best
//!   tested of any embedded store, its file is readable by every tool a shop
//!   already has, and its SQL is the same dialect as the second store.
//! * [`postgres::PgStore`] — PostgreSQL, for several origins sharing one store.
//!
//! Both hold two tables: `events` (append-only, unique `event_id`: the
//! idempotency key of at-least-once delivery) and `items` (the live catalog:
//! one row per item, each change stamped with a strictly increasing catalog
//! version, so a reader asking "what changed since V" never misses one).
//!
//! Calls block (the origin runs them on its blocking pool, the trainer
//! directly).

pub mod postgres;
pub mod sqlite;

use shared::events::{CatalogChanges, Event, ItemRecord};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL is not `sqlite:PATH` or `postgres://…`.
    #[error("store URL {0:?} is neither sqlite:PATH nor postgres://…")]
    BadUrl(String),
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("postgres pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// A stored row does not decode (someone else wrote to our tables).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

/// What [`EventStore::append`] did with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// Newly stored.
    pub stored: usize,
    /// Already there (same `event_id`): a retried delivery, stored once.
    pub duplicates: usize,
}

/// Events and catalog, durable.
pub trait EventStore: Send + Sync {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Stores `events` in one transaction, each `event_id` once; returns when
    /// the batch is durable (committed and synced).
    ///
    /// # Errors
    /// The store's; then nothing of the batch is stored.
    fn append(&self, events: &[Event]) -> Result<Appended, StoreError>;

    /// The newest `limit` item ids of `shopper` ([`Event::shopper`]), oldest
    /// first (the order a request's `history` takes).
    ///
    /// # Errors
    /// The store's.
    fn history(&self, shopper: &str, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Every event, in arrival order, `page` at a time (bounded memory for
    /// any size of log); `visit` returning an error stops the scan.
    ///
    /// # Errors
    /// The store's, or the first `visit` error.
    fn scan(&self, visit: &mut dyn FnMut(Event) -> Result<(), StoreError>) -> Result<(), StoreError>;

    /// How many of `event_ids` are stored (the durability test asks this).
    ///
    /// # Errors
    /// The store's.
    fn count_present(&self, event_ids: &[String]) -> Result<usize, StoreError>;

    /// Events stored.
    ///
    /// # Errors
    /// The store's.
    fn event_count(&self) -> Result<u64, StoreError>;

    /// Creates or replaces items (in order, one transaction), each stamped
    /// with the next catalog version; an item's `added_ms` is kept from its
    /// first write when a later one gives none. Returns the new catalog version.
    ///
    /// # Errors
    /// The store's; then no item changed.
    fn put_items(&self, items: &[ItemRecord]) -> Result<u64, StoreError>;

    /// Retires `item_id` (never recommended until a later put), a new
    /// version; `None` when the store never had it.
    ///
    /// # Errors
    /// The store's.
    fn retire_item(&self, item_id: &str) -> Result<Option<u64>, StoreError>;

    /// Records changed after version `since`, oldest change first, at most `limit`.
    ///
    /// # Errors
    /// The store's.
    fn catalog_changes(&self, since: u64, limit: usize) -> Result<CatalogChanges, StoreError>;
}

/// Opens the store a URL names: `sqlite:PATH` (created if missing) or
/// `postgres://user:password@host:port/db` (tables created if missing).
///
/// # Errors
/// [`StoreError::BadUrl`] for another scheme; the store's own when it cannot be opened.
pub fn open(url: &str) -> Result<Box<dyn EventStore>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        Ok(Box::new(sqlite::SqliteStore::open(std::path::Path::new(path))?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgStore::connect(url)?))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

/// Events a [`EventStore::scan`] reads per query.
pub const SCAN_PAGE: i64 = 10_000;

/// The `items.categories` column: a JSON list.
fn categories_json(c: &[String]) -> String {
    serde_json::to_string(c).expect("strings serialize")
}

fn categories_from(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("items.categories {json:?}: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_name_their_store() {
        assert!(matches!(super::open("mysql://x").err(), Some(super::StoreError::BadUrl(_))));
        let dir = tempfile::tempdir().unwrap();
        let s = super::open(&format!("sqlite:{}", dir.path().join("e.db").display())).unwrap();
        assert_eq!(s.kind(), "sqlite");
    }
}
