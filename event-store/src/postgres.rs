//! PostgreSQL, for several origins sharing one store. A batch is one
//! `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` (one round trip
//! whatever its size), acknowledged after `COMMIT`, which PostgreSQL makes
//! durable in its WAL (`synchronous_commit = on`, the server default).
//!
//! Catalog versions come from `MAX(version) + 1` under a transaction-scoped
//! advisory lock: a sequence would let two writers commit versions out of
//! order, and a reader that saw version 7 before version 6 committed would
//! never learn of 6.

use ::postgres::NoTls;
use r2d2_postgres::PostgresConnectionManager;
use shared::events::{CatalogChanges, Event, ItemRecord};

use crate::{Appended, EventStore, SCAN_PAGE, StoreError, categories_from, categories_json};

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq        BIGSERIAL PRIMARY KEY,
    event_id   TEXT      NOT NULL UNIQUE,
    shopper    TEXT      NOT NULL,
    user_id    TEXT,
    session_id TEXT,
    item_id    TEXT      NOT NULL,
    kind       TEXT      NOT NULL,
    time_ms    BIGINT    NOT NULL,
    weight     REAL      NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_shopper ON events (shopper, time_ms);
CREATE TABLE IF NOT EXISTS items (
    item_id    TEXT             PRIMARY KEY,
    title      TEXT,
    categories TEXT             NOT NULL,
    available  BOOLEAN          NOT NULL,
    retired    BOOLEAN          NOT NULL,
    price      DOUBLE PRECISION,
    added_ms   BIGINT,
    version    BIGINT           NOT NULL
);
CREATE INDEX IF NOT EXISTS items_by_version ON items (version);
";

/// The advisory lock key that serialises catalog writers (any constant; "edgerec" in ASCII).
const CATALOG_LOCK: i64 = 0x0065_6467_6572_6563;

/// Connections the pool keeps at most.
pub const POOL_SIZE: u32 = 8;

/// Events and catalog in a PostgreSQL database.
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`) and creates the tables if missing.
    ///
    /// # Errors
    /// When the URL does not parse, the server is unreachable, or the tables cannot be created.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let config: ::postgres::Config = url.parse()?;
        let manager = PostgresConnectionManager::new(config, NoTls);
        let pool = r2d2::Pool::builder().max_size(POOL_SIZE).connection_timeout(std::time::Duration::from_secs(5)).build(manager)?;
        let mut c = pool.get()?;
        // Two origins starting together would race on CREATE … IF NOT EXISTS: serialise them.
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CATALOG_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        tx.commit()?;
        drop(c);
        Ok(PgStore { pool })
    }

    /// Empties both tables (tests share one database).
    ///
    /// # Errors
    /// The server's.
    pub fn truncate(&self) -> Result<(), StoreError> {
        self.pool.get()?.batch_execute("TRUNCATE events, items")?;
        Ok(())
    }
}

fn event_of(r: &::postgres::Row) -> Event {
    Event { event_id: r.get(0), user_id: r.get(1), session_id: r.get(2), item_id: r.get(3), kind: r.get(4), time_ms: r.get(5), weight: r.get(6) }
}

fn next_version(tx: &mut ::postgres::Transaction<'_>) -> Result<i64, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CATALOG_LOCK])?;
    Ok(tx.query_one("SELECT COALESCE(MAX(version), 0) FROM items", &[])?.get::<_, i64>(0))
}

impl EventStore for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn append(&self, events: &[Event]) -> Result<Appended, StoreError> {
        // Column arrays for one `unnest`: a batch is one round trip.
        let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        let shoppers: Vec<String> = events.iter().map(Event::shopper).collect();
        let users: Vec<Option<&str>> = events.iter().map(|e| e.user_id.as_deref()).collect();
        let sessions: Vec<Option<&str>> = events.iter().map(|e| e.session_id.as_deref()).collect();
        let items: Vec<&str> = events.iter().map(|e| e.item_id.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        let times: Vec<i64> = events.iter().map(|e| e.time_ms).collect();
        let weights: Vec<f32> = events.iter().map(|e| e.weight).collect();
        let mut c = self.pool.get()?;
        // One statement is its own transaction: durable when it returns.
        let stored = c.execute(
            "INSERT INTO events (event_id, shopper, user_id, session_id, item_id, kind, time_ms, weight)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::real[])
             ON CONFLICT (event_id) DO NOTHING",
            &[&ids, &shoppers, &users, &sessions, &items, &kinds, &times, &weights],
        )? as usize;
        Ok(Appended { stored, duplicates: events.len() - stored })
    }

    fn history(&self, shopper: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut c = self.pool.get()?;
        let rows = c.query("SELECT item_id FROM events WHERE shopper = $1 ORDER BY time_ms DESC, seq DESC LIMIT $2", &[&shopper, &(limit as i64)])?;
        Ok(rows.iter().rev().map(|r| r.get(0)).collect())
    }

    fn scan(&self, visit: &mut dyn FnMut(Event) -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut after = 0i64;
        loop {
            let rows = self.pool.get()?.query(
                "SELECT event_id, user_id, session_id, item_id, kind, time_ms, weight, seq FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&after, &SCAN_PAGE],
            )?;
            let Some(last) = rows.last() else { return Ok(()) };
            after = last.get(7);
            for r in &rows {
                visit(event_of(r))?;
            }
        }
    }

    fn count_present(&self, event_ids: &[String]) -> Result<usize, StoreError> {
        let n: i64 = self.pool.get()?.query_one("SELECT COUNT(*) FROM events WHERE event_id = ANY($1)", &[&event_ids])?.get(0);
        Ok(n as usize)
    }

    fn event_count(&self) -> Result<u64, StoreError> {
        Ok(self.pool.get()?.query_one("SELECT COUNT(*) FROM events", &[])?.get::<_, i64>(0) as u64)
    }

    fn put_items(&self, items: &[ItemRecord]) -> Result<u64, StoreError> {
        let mut c = self.pool.get()?;
        let mut tx = c.transaction()?;
        let mut version = next_version(&mut tx)?;
        let upsert = tx.prepare(
            "INSERT INTO items (item_id, title, categories, available, retired, price, added_ms, version)
             VALUES ($1, $2, $3, $4, FALSE, $5, $6, $7)
             ON CONFLICT (item_id) DO UPDATE SET title = excluded.title, categories = excluded.categories,
                available = excluded.available, retired = FALSE, price = excluded.price,
                added_ms = COALESCE(excluded.added_ms, items.added_ms), version = excluded.version",
        )?;
        for it in items {
            version += 1;
            tx.execute(&upsert, &[&it.item_id, &it.title, &categories_json(&it.categories), &it.available, &it.price, &it.added_ms, &version])?;
        }
        tx.commit()?;
        Ok(version as u64)
    }

    fn retire_item(&self, item_id: &str) -> Result<Option<u64>, StoreError> {
        let mut c = self.pool.get()?;
        let mut tx = c.transaction()?;
        let version = next_version(&mut tx)? + 1;
        let changed = tx.execute("UPDATE items SET retired = TRUE, version = $2 WHERE item_id = $1", &[&item_id, &version])?;
        tx.commit()?;
        Ok((changed == 1).then_some(version as u64))
    }

    fn catalog_changes(&self, since: u64, limit: usize) -> Result<CatalogChanges, StoreError> {
        let rows = self.pool.get()?.query(
            "SELECT item_id, title, categories, available, retired, price, added_ms, version FROM items WHERE version > $1 ORDER BY version LIMIT $2",
            &[&(since as i64), &(limit as i64 + 1)],
        )?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        for r in rows.iter().take(limit) {
            items.push(ItemRecord {
                item_id: r.get(0),
                title: r.get(1),
                categories: categories_from(r.get::<_, &str>(2))?,
                available: r.get(3),
                retired: r.get(4),
                price: r.get(5),
                added_ms: r.get(6),
                version: r.get::<_, i64>(7) as u64,
            });
        }
        let version = items.last().map_or(since, |r| r.version);
        Ok(CatalogChanges { version, items, more })
    }
}

/// Creates an empty database `name` on the server of `url` (whose user needs
/// `CREATEDB`) and returns its URL: each test gets a store of its own on the
/// one real server.
///
/// # Errors
/// The server's, e.g. when `name` exists.
pub fn create_database(url: &str, name: &str) -> Result<String, StoreError> {
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(StoreError::BadUrl(format!("database name {name:?} must be [a-z0-9_]")));
    }
    let mut client = ::postgres::Client::connect(url, NoTls)?;
    client.batch_execute(&format!("CREATE DATABASE {name}"))?;
    let base = url.split('?').next().unwrap_or(url);
    let prefix = base.rsplit_once('/').map_or(base, |(p, _)| p);
    Ok(format!("{prefix}/{name}"))
}
