//! The same tests against both stores, each against the real thing: a SQLite
//! file, and the PostgreSQL server set-up starts on loopback
//! (`EDGEREC_PG_URL`, default `postgres://edgerec:edgerec@127.0.0.1:5432/edgerec`;
//! each test makes a database of its own there).

use event_store::{EventStore, SCAN_PAGE, postgres::PgStore, sqlite::SqliteStore};
use shared::events::{Event, ItemRecord};

fn pg_url() -> String {
    std::env::var("EDGEREC_PG_URL").unwrap_or_else(|_| "postgres://edgerec:edgerec@127.0.0.1:5432/edgerec".into())
}

fn pg(test: &str) -> PgStore {
    let name = format!(
        "edgerec_t_{test}_{}_{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000
    );
    let url =
        event_store::postgres::create_database(&pg_url(), &name).unwrap_or_else(|e| panic!("PostgreSQL at {} (started by `cargo xtask setup`): {e}", pg_url()));
    PgStore::connect(&url).unwrap()
}

fn sqlite() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (SqliteStore::open(&dir.path().join("events.db")).unwrap(), dir)
}

fn ev(id: &str, shopper: &str, item: &str, t: i64) -> Event {
    Event { event_id: id.into(), user_id: Some(shopper.into()), session_id: None, item_id: item.into(), kind: "view".into(), time_ms: t, weight: 1.0 }
}

fn item(id: &str, available: bool, cats: &[&str], added: Option<i64>) -> ItemRecord {
    ItemRecord {
        item_id: id.into(),
        title: Some(format!("title {id}")),
        categories: cats.iter().map(|c| c.to_string()).collect(),
        available,
        retired: false,
        price: Some(9.5),
        added_ms: added,
        version: 0,
    }
}

fn retried_batches_are_stored_once(s: &dyn EventStore) {
    let batch = vec![ev("e1", "u", "1", 10), ev("e2", "u", "2", 20), ev("e1", "u", "1", 10)];
    let a = s.append(&batch).unwrap();
    assert_eq!((a.stored, a.duplicates), (2, 1), "a duplicate inside one batch is stored once");
    let a = s.append(&batch[..2]).unwrap();
    assert_eq!((a.stored, a.duplicates), (0, 2), "a retried batch stores nothing new");
    assert_eq!(s.event_count().unwrap(), 2);
    assert_eq!(s.count_present(&["e1".into(), "e2".into(), "e3".into()]).unwrap(), 2);
}

fn history_is_the_newest_events_oldest_first(s: &dyn EventStore) {
    let mut batch: Vec<Event> = (0..10).map(|i| ev(&format!("h{i}"), "alice", &format!("i{i}"), 1000 + i)).collect();
    batch.push(ev("b1", "bob", "x", 5));
    let mut session = ev("s1", "ignored", "y", 7);
    session.user_id = None;
    session.session_id = Some("alice".into());
    batch.push(session);
    // Arrival order is not time order: history follows time.
    batch.reverse();
    s.append(&batch).unwrap();
    assert_eq!(s.history("alice", 3).unwrap(), ["i7", "i8", "i9"]);
    assert_eq!(s.history("bob", 50).unwrap(), ["x"]);
    assert_eq!(s.history("s:alice", 50).unwrap(), ["y"], "a session never aliases a user");
    assert!(s.history("nobody", 50).unwrap().is_empty());
}

fn a_scan_reads_every_event_in_arrival_order(s: &dyn EventStore) {
    let n = SCAN_PAGE as usize + 17;
    let all: Vec<Event> = (0..n).map(|i| ev(&format!("scan-{i}"), &format!("u{}", i % 7), &format!("{}", i % 100), i as i64)).collect();
    for chunk in all.chunks(500) {
        s.append(chunk).unwrap();
    }
    let mut seen = Vec::with_capacity(n);
    s.scan(&mut |e| {
        seen.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, all, "every event, once, as stored");
}

fn catalog_changes_are_versioned_and_complete(s: &dyn EventStore) {
    assert_eq!(s.catalog_changes(0, 10).unwrap().items.len(), 0);
    let v1 = s.put_items(&[item("a", true, &["tea"], Some(5)), item("b", true, &[], None)]).unwrap();
    let v2 = s.put_items(&[item("a", false, &["tea", "green"], None)]).unwrap();
    assert!(v2 > v1);
    let c = s.catalog_changes(0, 10).unwrap();
    assert!(!c.more);
    assert_eq!(c.version, v2);
    assert_eq!(c.items.iter().map(|r| r.item_id.as_str()).collect::<Vec<_>>(), ["b", "a"], "oldest change first, one record per item");
    let a = &c.items[1];
    assert_eq!((a.available, a.added_ms, a.categories.len(), a.version), (false, Some(5), 2, v2), "added_ms is kept from the first write");
    assert_eq!(s.catalog_changes(v2, 10).unwrap().items.len(), 0);
    // Retire and revive.
    assert_eq!(s.retire_item("missing").unwrap(), None);
    let v3 = s.retire_item("b").unwrap().unwrap();
    let c = s.catalog_changes(v2, 10).unwrap();
    assert!(c.items[0].retired && !c.items[0].recommendable() && c.version == v3);
    s.put_items(&[item("b", true, &[], None)]).unwrap();
    assert!(s.catalog_changes(v3, 10).unwrap().items[0].recommendable(), "a later put revives");
    // Paging: `more` and the version to ask from next.
    let many: Vec<ItemRecord> = (0..25).map(|i| item(&format!("p{i}"), true, &[], None)).collect();
    s.put_items(&many).unwrap();
    let (mut since, mut got) = (0, 0);
    loop {
        let c = s.catalog_changes(since, 10).unwrap();
        got += c.items.len();
        since = c.version;
        if !c.more {
            break;
        }
    }
    assert_eq!(got, 27, "every item, each once at its newest version");
}

fn concurrent_catalog_writers_never_share_a_version(s: &(dyn EventStore + Sync)) {
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..10 {
                    s.put_items(&[item(&format!("c{t}-{i}"), true, &[], None)]).unwrap();
                }
            });
        }
    });
    let c = s.catalog_changes(0, 1000).unwrap();
    let mut versions: Vec<u64> = c.items.iter().map(|r| r.version).collect();
    assert_eq!(versions.len(), 40);
    versions.dedup();
    assert_eq!(versions.len(), 40, "strictly increasing");
    assert!(c.items.windows(2).all(|w| w[0].version < w[1].version));
}

macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite_store {
            $(#[test] fn $name() { let (s, _dir) = super::sqlite(); super::$name(&s); })*
        }
        mod postgres_store {
            $(#[test] fn $name() { let s = super::pg(stringify!($name)); super::$name(&s); })*
        }
    };
}

both_stores!(
    retried_batches_are_stored_once,
    history_is_the_newest_events_oldest_first,
    a_scan_reads_every_event_in_arrival_order,
    catalog_changes_are_versioned_and_complete,
    concurrent_catalog_writers_never_share_a_version,
);

#[test]
fn an_sqlite_store_keeps_what_it_acknowledged_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    {
        let s = SqliteStore::open(&path).unwrap();
        s.append(&[ev("k1", "u", "1", 1)]).unwrap();
        s.put_items(&[item("a", false, &[], None)]).unwrap();
    }
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.event_count().unwrap(), 1);
    assert!(!s.catalog_changes(0, 10).unwrap().items[0].available);
}
