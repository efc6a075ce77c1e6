//! The embedded default: SQLite in WAL mode with `synchronous=FULL` (every
//! commit's WAL frames are fsynced before it returns: an acknowledged batch
//! survives a crash or power loss, <https://sqlite.org/wal.html>).
//!
//! One writer connection (SQLite serialises writers anyway) and one reader
//! connection, which WAL lets read while the writer commits.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};
use shared::events::{CatalogChanges, Event, ItemRecord};

use crate::{Appended, EventStore, SCAN_PAGE, StoreError, categories_from, categories_json};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id   TEXT    NOT NULL UNIQUE,
    shopper    TEXT    NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    item_id    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    time_ms    INTEGER NOT NULL,
    weight     REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_shopper ON events (shopper, time_ms);
CREATE TABLE IF NOT EXISTS items (
    item_id    TEXT    PRIMARY KEY,
    title      TEXT,
    categories TEXT    NOT NULL,
    available  INTEGER NOT NULL,
    retired    INTEGER NOT NULL,
    price      REAL,
    added_ms   INTEGER,
    version    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_version ON items (version);
";

/// Events and catalog in one SQLite file.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

fn connect(path: &Path) -> Result<Connection, rusqlite::Error> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    // A second process (another origin, the trainer) may hold the write lock briefly.
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

fn lock(m: &Mutex<Connection>) -> std::sync::MutexGuard<'_, Connection> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn event_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        event_id: r.get(0)?,
        user_id: r.get(1)?,
        session_id: r.get(2)?,
        item_id: r.get(3)?,
        kind: r.get(4)?,
        time_ms: r.get(5)?,
        weight: r.get::<_, f64>(6)? as f32,
    })
}

impl SqliteStore {
    /// Opens (creating if missing) the store at `path`.
    ///
    /// # Errors
    /// When the file cannot be opened or is not a SQLite database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Corrupt(format!("creating {}: {e}", dir.display())))?;
        }
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA)?;
        let reader = connect(path)?;
        Ok(SqliteStore { writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }
}

impl EventStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn append(&self, events: &[Event]) -> Result<Appended, StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut stored = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO events (event_id, shopper, user_id, session_id, item_id, kind, time_ms, weight)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (event_id) DO NOTHING",
            )?;
            for e in events {
                stored += insert.execute(params![e.event_id, e.shopper(), e.user_id, e.session_id, e.item_id, e.kind, e.time_ms, f64::from(e.weight)])?;
            }
        }
        tx.commit()?;
        Ok(Appended { stored, duplicates: events.len() - stored })
    }

    fn history(&self, shopper: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached("SELECT item_id FROM events WHERE shopper = ?1 ORDER BY time_ms DESC, seq DESC LIMIT ?2")?;
        let mut ids = q.query_map(params![shopper, limit as i64], |r| r.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        ids.reverse();
        Ok(ids)
    }

    fn scan(&self, visit: &mut dyn FnMut(Event) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut after = 0i64;
        loop {
            let page: Vec<(i64, Event)> = {
                let c = lock(&self.reader);
                let mut q = c.prepare_cached(
                    "SELECT event_id, user_id, session_id, item_id, kind, time_ms, weight, seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                q.query_map(params![after, SCAN_PAGE], |r| Ok((r.get(7)?, event_of(r)?)))?.collect::<Result<_, _>>()?
            };
            let Some(&(last, _)) = page.last() else { return Ok(()) };
            after = last;
            for (_, e) in page {
                visit(e)?;
            }
        }
    }

    fn count_present(&self, event_ids: &[String]) -> Result<usize, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached("SELECT 1 FROM events WHERE event_id = ?1")?;
        let mut n = 0;
        for id in event_ids {
            n += usize::from(q.exists(params![id])?);
        }
        Ok(n)
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        let c = lock(&self.reader);
        Ok(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))? as u64)
    }

    fn put_items(&self, items: &[ItemRecord]) -> Result<u64, StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut version: u64 = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM items", [], |r| r.get::<_, i64>(0))? as u64;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO items (item_id, title, categories, available, retired, price, added_ms, version)
                 VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, ?7)
                 ON CONFLICT (item_id) DO UPDATE SET title = excluded.title, categories = excluded.categories,
                    available = excluded.available, retired = 0, price = excluded.price,
                    added_ms = COALESCE(excluded.added_ms, items.added_ms), version = excluded.version",
            )?;
            for it in items {
                version += 1;
                upsert.execute(params![it.item_id, it.title, categories_json(&it.categories), it.available, it.price, it.added_ms, version as i64])?;
            }
        }
        tx.commit()?;
        Ok(version)
    }

    fn retire_item(&self, item_id: &str) -> Result<Option<u64>, StoreError> {
        let mut c = lock(&self.writer);
        let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version = tx.query_row("SELECT COALESCE(MAX(version), 0) FROM items", [], |r| r.get::<_, i64>(0))? + 1;
        let changed = tx.execute("UPDATE items SET retired = 1, version = ?2 WHERE item_id = ?1", params![item_id, version])?;
        tx.commit()?;
        Ok((changed == 1).then_some(version as u64))
    }

    fn catalog_changes(&self, since: u64, limit: usize) -> Result<CatalogChanges, StoreError> {
        let c = lock(&self.reader);
        let mut q = c.prepare_cached(
            "SELECT item_id, title, categories, available, retired, price, added_ms, version FROM items WHERE version > ?1 ORDER BY version LIMIT ?2",
        )?;
        let rows: Vec<(ItemRecord, String)> = q
            .query_map(params![since as i64, limit as i64 + 1], |r| {
                Ok((
                    ItemRecord {
                        item_id: r.get(0)?,
                        title: r.get(1)?,
                        categories: Vec::new(),
                        available: r.get(3)?,
                        retired: r.get(4)?,
                        price: r.get(5)?,
                        added_ms: r.get(6)?,
                        version: r.get::<_, i64>(7)? as u64,
                    },
                    r.get::<_, String>(2)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        for (mut rec, cats) in rows.into_iter().take(limit) {
            rec.categories = categories_from(&cats)?;
            items.push(rec);
        }
        let version = items.last().map_or(since, |r| r.version);
        Ok(CatalogChanges { version, items, more })
    }
}
