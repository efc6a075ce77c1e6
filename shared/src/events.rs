//! What shoppers do and what the shop changes, on the wire: the
//! `POST /v1/events` batch and the `PUT /v1/items` records, parsed and
//! checked identically by the edge (before it queues a batch) and the origin
//! (before it stores one), so a batch the edge accepted is never refused
//! later for a rule only one side knew.
//!
//! Delivery is at-least-once (edge → Cloudflare Queue → origin, each hop
//! retrying), so every event carries a client-made `event_id`, its
//! idempotency key: a retried batch is stored once.

use serde::{Deserialize, Deserializer, Serialize};

use crate::request::RequestError;
use crate::wire::{MAX_ID_BYTES, check_item_id};

/// Most events in one `POST /v1/events` batch; more is 413.
pub const MAX_EVENTS_PER_BATCH: usize = 500;

/// Largest `POST /v1/events` body, bytes (1 MiB: 500 events of ~2 KiB).
pub const MAX_EVENTS_BODY_BYTES: usize = 1024 * 1024;

/// Longest `event_id`, bytes (a UUID is 36).
pub const MAX_EVENT_ID_BYTES: usize = 128;

/// Longest event `type`, bytes; `[a-z0-9_-]` only.
pub const MAX_EVENT_TYPE_BYTES: usize = 32;

/// How far in the future an event's `time` may lie, ms (5 minutes of clock skew).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// Earliest accepted event time: 2000-01-01T00:00:00Z, ms since the epoch
/// (an earlier one is a client's clock or unit gone wrong, e.g. seconds).
pub const MIN_EVENT_TIME_MS: i64 = 946_684_800_000;

/// Largest accepted `weight`.
pub const MAX_WEIGHT: f32 = 1000.0;

/// Most items in one bulk `PUT /v1/items`.
pub const MAX_ITEMS_PER_PUT: usize = 1000;

/// Most categories of one item, and the longest category, bytes.
pub const MAX_CATEGORIES: usize = 32;

/// Longest item title, bytes.
pub const MAX_TITLE_BYTES: usize = 1024;

/// One event as sent: `time` is RFC 3339 text or milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIn {
    /// Client-made idempotency key (e.g. a UUID), 1..=128 bytes.
    pub event_id: String,
    /// Logged-in shopper, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Browser session, when known; at least one of `user_id`, `session_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The item, by the API's id rules; unknown ids are stored (new products).
    #[serde(deserialize_with = "id_text")]
    pub item_id: String,
    /// `view`, `cart`, `purchase` or a shop-defined `[a-z0-9_-]{1,32}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When it happened.
    pub time: EventTime,
    /// Strength, `(0, 1000]`; default by type ([`default_weight`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<f32>,
}

/// An event's `time`: RFC 3339 text or integer milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventTime {
    /// Milliseconds since the Unix epoch.
    Millis(i64),
    /// RFC 3339, e.g. `2026-12-02T21:58:54Z`.
    Text(String),
}

fn id_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Number(u64),
    }
    Ok(match Id::deserialize(d)? {
        Id::Text(s) => s,
        Id::Number(n) => n.to_string(),
    })
}

/// Body of `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// At most [`MAX_EVENTS_PER_BATCH`].
    pub events: Vec<EventIn>,
}

/// A checked event, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Idempotency key.
    pub event_id: String,
    /// Logged-in shopper.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Browser session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Item id.
    pub item_id: String,
    /// Event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Milliseconds since the epoch (`time` on the wire, so a stored event
    /// is also a valid [`EventIn`]: the edge's queue carries them to the origin as is).
    #[serde(rename = "time")]
    pub time_ms: i64,
    /// Strength.
    pub weight: f32,
}

impl Event {
    /// Who did it: the user when logged in, else the session (`s:` prefixed,
    /// so a session id can never alias a user id).
    pub fn shopper(&self) -> String {
        match (&self.user_id, &self.session_id) {
            (Some(u), _) => u.clone(),
            (None, Some(s)) => format!("s:{s}"),
            (None, None) => String::new(),
        }
    }
}

/// The weight of an event type when the event gives none: a purchase says
/// more than a cart, a cart more than a view (the usual implicit-feedback
/// confidence ordering, Hu, Koren & Volinsky, ICDM 2008).
pub fn default_weight(kind: &str) -> f32 {
    match kind {
        "purchase" => 3.0,
        "cart" => 2.0,
        _ => 1.0,
    }
}

/// Parses a `POST /v1/events` body: 413 over [`MAX_EVENTS_BODY_BYTES`] or
/// [`MAX_EVENTS_PER_BATCH`] events, 400 for malformed JSON, 422 naming the
/// field (`events[3].time`) for the wrong shape or an out-of-range value.
/// `now_ms` is the receiver's clock, for the future-time rule.
///
/// # Errors
/// As above; nothing of a refused batch is kept.
pub fn parse_batch(body: &[u8], now_ms: i64) -> Result<Vec<Event>, RequestError> {
    if body.len() > MAX_EVENTS_BODY_BYTES {
        return Err(RequestError::field(413, "body", format!("body is {} bytes, at most {MAX_EVENTS_BODY_BYTES} are accepted", body.len())));
    }
    let batch: EventBatch = parse_json_body(body)?;
    if batch.events.len() > MAX_EVENTS_PER_BATCH {
        return Err(RequestError::field(413, "events", format!("{} events in one batch, at most {MAX_EVENTS_PER_BATCH}", batch.events.len())));
    }
    batch
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| check_event(e, now_ms).map_err(|(field, why)| RequestError::field(422, format!("events[{i}].{field}"), why)))
        .collect()
}

/// Deserializes JSON, 400 for bad syntax, 422 naming the field path for a wrong shape.
///
/// # Errors
/// As above.
pub fn parse_json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => RequestError::field(422, if path == "." { "body".to_string() } else { path }, inner.to_string()),
            _ => RequestError::new(400, format!("malformed JSON: {inner}")),
        }
    })
}

fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), (&'static str, String)> {
    if value.is_empty() || value.len() > max {
        return Err((field, format!("must be 1..={max} bytes, got {}", value.len())));
    }
    if value.chars().any(char::is_control) {
        return Err((field, "must not contain control characters".into()));
    }
    Ok(())
}

fn check_event(e: EventIn, now_ms: i64) -> Result<Event, (&'static str, String)> {
    check_text("event_id", &e.event_id, MAX_EVENT_ID_BYTES)?;
    if let Some(u) = &e.user_id {
        check_text("user_id", u, MAX_ID_BYTES)?;
    }
    if let Some(s) = &e.session_id {
        check_text("session_id", s, MAX_ID_BYTES)?;
    }
    if e.user_id.is_none() && e.session_id.is_none() {
        return Err(("user_id", "an event needs a user_id or a session_id".into()));
    }
    check_item_id(&e.item_id).map_err(|why| ("item_id", format!("item id {why}")))?;
    if e.kind.is_empty()
        || e.kind.len() > MAX_EVENT_TYPE_BYTES
        || !e.kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(("type", format!("must be view, cart, purchase or [a-z0-9_-]{{1,{MAX_EVENT_TYPE_BYTES}}}, got {:?}", e.kind)));
    }
    let time_ms = match &e.time {
        EventTime::Millis(ms) => *ms,
        EventTime::Text(t) => parse_rfc3339_ms(t).ok_or(("time", format!("must be RFC 3339 (2026-12-02T21:58:54Z) or epoch milliseconds, got {t:?}")))?,
    };
    if time_ms < MIN_EVENT_TIME_MS {
        return Err(("time", format!("{time_ms} ms is before 2000-01-01 (milliseconds since the epoch are expected)")));
    }
    if time_ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(("time", format!("{} s in the future; at most {} s of clock skew is accepted", (time_ms - now_ms) / 1000, MAX_FUTURE_SKEW_MS / 1000)));
    }
    let weight = e.weight.unwrap_or_else(|| default_weight(&e.kind));
    if !(weight.is_finite() && weight > 0.0 && weight <= MAX_WEIGHT) {
        return Err(("weight", format!("must be in (0, {MAX_WEIGHT}], got {weight}")));
    }
    Ok(Event { event_id: e.event_id, user_id: e.user_id, session_id: e.session_id, item_id: e.item_id, kind: e.kind, time_ms, weight })
}

/// RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`) → ms since the epoch.
/// Hand-written because it must run in the worker too (no `std::time` there).
pub fn parse_rfc3339_ms(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |s: &[u8]| -> Option<i64> { if s.iter().all(u8::is_ascii_digit) { std::str::from_utf8(s).ok()?.parse().ok() } else { None } };
    let (y, mo, d, h, mi, s) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?, num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut ms = 0i64;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let frac = &rest[1..1 + digits];
        let first3: Vec<u8> = frac.iter().copied().chain(std::iter::repeat(b'0')).take(3).collect();
        ms = num(&first3)?;
        rest = &rest[1 + digits..];
    }
    let offset_min = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let v = num(&[*h1, *h2])? * 60 + num(&[*m1, *m2])?;
            if *sign == b'-' { -v } else { v }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let (y, m) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + s) - offset_min * 60) * 1000 + ms)
}

/// An item as the shop describes it (`PUT /v1/items/{id}`; the bulk form adds `item_id`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemIn {
    /// Only in the bulk form's entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Category names (for `category=` and cold start).
    #[serde(default)]
    pub categories: Vec<String>,
    /// Whether it may be recommended (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// Price, in the shop's currency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// When it was added (RFC 3339 or epoch ms); default: when first stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_at: Option<EventTime>,
}

/// Body of the bulk `PUT /v1/items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemBatch {
    /// At most [`MAX_ITEMS_PER_PUT`], each with `item_id`.
    pub items: Vec<ItemIn>,
}

/// A catalog record as stored and as the edge learns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// Item id.
    pub item_id: String,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Categories.
    #[serde(default)]
    pub categories: Vec<String>,
    /// May be recommended.
    pub available: bool,
    /// Retired by `DELETE`: never recommended again (a later `PUT` revives it).
    #[serde(default)]
    pub retired: bool,
    /// Price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Added, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_ms: Option<i64>,
    /// Catalog version of this record's last change (strictly increasing per change).
    #[serde(default)]
    pub version: u64,
}

impl ItemRecord {
    /// Whether it may be recommended.
    pub fn recommendable(&self) -> bool {
        self.available && !self.retired
    }
}

/// Checks one item of a `PUT`; `id` is the path's or the entry's `item_id`.
///
/// # Errors
/// `(field, reason)` for the first bad field.
pub fn check_item(id: &str, item: ItemIn, now_ms: i64) -> Result<ItemRecord, (String, String)> {
    check_item_id(id).map_err(|why| ("item_id".to_string(), format!("item id {why}")))?;
    if let Some(t) = &item.title
        && t.len() > MAX_TITLE_BYTES
    {
        return Err(("title".into(), format!("at most {MAX_TITLE_BYTES} bytes, got {}", t.len())));
    }
    if item.categories.len() > MAX_CATEGORIES {
        return Err(("categories".into(), format!("at most {MAX_CATEGORIES}, got {}", item.categories.len())));
    }
    for (i, c) in item.categories.iter().enumerate() {
        check_text("categories", c, MAX_EVENT_ID_BYTES).map_err(|(_, why)| (format!("categories[{i}]"), why))?;
    }
    if let Some(p) = item.price
        && !(p.is_finite() && p >= 0.0)
    {
        return Err(("price".into(), format!("must be a finite number ≥ 0, got {p}")));
    }
    let added_ms = match &item.added_at {
        None => None,
        Some(EventTime::Millis(ms)) => Some(*ms),
        Some(EventTime::Text(t)) => Some(parse_rfc3339_ms(t).ok_or(("added_at".to_string(), format!("must be RFC 3339 or epoch milliseconds, got {t:?}")))?),
    };
    if added_ms.is_some_and(|ms| ms > now_ms.saturating_add(MAX_FUTURE_SKEW_MS)) {
        return Err(("added_at".into(), "lies in the future".into()));
    }
    Ok(ItemRecord {
        item_id: id.to_string(),
        title: item.title,
        categories: item.categories,
        available: item.available.unwrap_or(true),
        retired: false,
        price: item.price,
        added_ms,
        version: 0,
    })
}

/// Answer of `GET /v1/catalog/changes?since=V`: records changed after
/// version `since`, oldest change first, at most `limit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogChanges {
    /// The newest version in `items` (`since` when none): the next call's `since`.
    pub version: u64,
    /// Changed records.
    pub items: Vec<ItemRecord>,
    /// More changes follow: ask again with `since` = the last record's version.
    pub more: bool,
}

/// Splits checked events into JSON arrays of at most `max_bytes` each (a
/// queue's message limit: Cloudflare Queues take 128 KB); an event is never
/// split, and one larger than `max_bytes` travels alone.
pub fn queue_messages(events: &[Event], max_bytes: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = 2;
    for e in events {
        let one = serde_json::to_string(e).expect("events serialize");
        if !current.is_empty() && size + one.len() + 1 > max_bytes {
            out.push(format!("[{}]", current.join(",")));
            current.clear();
            size = 2;
        }
        size += one.len() + 1;
        current.push(one);
    }
    if !current.is_empty() {
        out.push(format!("[{}]", current.join(",")));
    }
    out
}

/// Answer of `POST /v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsAccepted {
    /// Events in the batch.
    pub received: usize,
    /// Newly stored.
    pub stored: usize,
    /// Already stored before (same `event_id`): a retried delivery.
    pub duplicates: usize,
    /// Stored although their item is not in the catalog (maybe new products).
    pub unknown_items: usize,
    /// Not stored: their shopper sent more than the per-shopper rate allows.
    #[serde(default)]
    pub rate_limited: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_300_000_000;

    fn body(events: &str) -> Vec<u8> {
        format!(r#"{{"events":[{events}]}}"#).into_bytes()
    }

    #[test]
    fn a_good_batch_parses_with_defaults() {
        let b = body(
            r#"{"event_id":"e1","session_id":"s","item_id":50,"type":"purchase","time":"2026-12-02T21:58:54.250Z"},{"event_id":"e2","user_id":"u","item_id":"7","type":"view","time":1796000000000,"weight":0.5}"#,
        );
        let ev = parse_batch(&b, NOW).unwrap();
        assert_eq!(ev[0].item_id, "50");
        assert_eq!(ev[0].weight, 3.0);
        assert_eq!(ev[0].time_ms, 1_796_248_734_250);
        assert_eq!(ev[0].shopper(), "s:s");
        assert_eq!((ev[1].weight, ev[1].shopper().as_str()), (0.5, "u"));
    }

    #[test]
    fn bad_fields_are_named_by_position() {
        let ok = r#"{"event_id":"e","user_id":"u","item_id":"1","type":"view","time":1796000000000}"#;
        let cases = [
            (r#"{"event_id":"e","user_id":"u","item_id":"1","type":"view","time":"yesterday"}"#, "events[3].time"),
            (r#"{"event_id":"e","user_id":"u","item_id":"1","type":"view","time":1896000000000}"#, "events[3].time"),
            (r#"{"event_id":"e","user_id":"u","item_id":"1","type":"view","time":1796000000}"#, "events[3].time"),
            (r#"{"event_id":"","user_id":"u","item_id":"1","type":"view","time":1796000000000}"#, "events[3].event_id"),
            (r#"{"event_id":"e","item_id":"1","type":"view","time":1796000000000}"#, "events[3].user_id"),
            (r#"{"event_id":"e","user_id":"u","item_id":"a,b","type":"view","time":1796000000000}"#, "events[3].item_id"),
            (r#"{"event_id":"e","user_id":"u","item_id":"1","type":"View!","time":1796000000000}"#, "events[3].type"),
            (r#"{"event_id":"e","user_id":"u","item_id":"1","type":"view","time":1796000000000,"weight":-1}"#, "events[3].weight"),
        ];
        for (bad, field) in cases {
            let e = parse_batch(&body(&format!("{ok},{ok},{ok},{bad}")), NOW).unwrap_err();
            assert_eq!((e.status, e.field.as_deref()), (422, Some(field)), "{bad}: {e}");
        }
        let e = parse_batch(&body(&format!("{ok},{ok},{ok},{{\"event_id\":\"e\"}}")), NOW).unwrap_err();
        assert_eq!(e.status, 422);
        assert!(e.field.as_deref().unwrap().starts_with("events[3]"), "{e:?}");
        assert_eq!(parse_batch(b"{\"events\":[", NOW).unwrap_err().status, 400);
    }

    #[test]
    fn oversized_batches_are_413() {
        let ok = r#"{"event_id":"e","user_id":"u","item_id":"1","type":"view","time":1796000000000}"#;
        let many = vec![ok; MAX_EVENTS_PER_BATCH + 1].join(",");
        let e = parse_batch(&body(&many), NOW).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (413, Some("events")));
        assert!(parse_batch(&body(&vec![ok; MAX_EVENTS_PER_BATCH].join(",")), NOW).is_ok());
        assert_eq!(parse_batch(&vec![b' '; MAX_EVENTS_BODY_BYTES + 1], NOW).unwrap_err().status, 413);
    }

    #[test]
    fn queue_messages_stay_under_the_limit_and_keep_every_event() {
        let e = |i: usize| Event {
            event_id: format!("e{i}"),
            user_id: Some("u".repeat(200)),
            session_id: None,
            item_id: "i".repeat(250),
            kind: "view".into(),
            time_ms: NOW - 1000,
            weight: 1.0,
        };
        let events: Vec<Event> = (0..500).map(e).collect();
        let msgs = queue_messages(&events, 96 * 1024);
        assert!(msgs.len() > 1 && msgs.iter().all(|m| m.len() <= 96 * 1024), "{}", msgs.len());
        let back: Vec<Event> = msgs.iter().flat_map(|m| serde_json::from_str::<Vec<Event>>(m).unwrap()).collect();
        assert_eq!(back, events);
        assert!(queue_messages(&[], 100).is_empty());
        // What the queue carries is a batch the origin accepts as is.
        let batch = format!(r#"{{"events":{}}}"#, &msgs[0]);
        let again = parse_batch(batch.as_bytes(), NOW).unwrap();
        assert_eq!(again.len(), serde_json::from_str::<Vec<Event>>(&msgs[0]).unwrap().len());
    }

    #[test]
    fn rfc3339_matches_known_instants() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2000-01-01T00:00:00Z"), Some(MIN_EVENT_TIME_MS));
        assert_eq!(parse_rfc3339_ms("2000-01-01T01:00:00+01:00"), Some(MIN_EVENT_TIME_MS));
        assert_eq!(parse_rfc3339_ms("2024-02-29T12:00:00.5Z"), Some(1_709_208_000_500));
        for bad in ["2024-13-01T00:00:00Z", "2024-01-01", "2024-01-01T00:00:00", "2024-01-01T00:00:00.Z", "x024-01-01T00:00:00Z"] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn items_are_checked() {
        let r = check_item("sku-1", ItemIn { available: Some(false), categories: vec!["shoes".into()], ..Default::default() }, NOW).unwrap();
        assert!(!r.recommendable());
        assert_eq!(check_item("", ItemIn::default(), NOW).unwrap_err().0, "item_id");
        assert_eq!(check_item("a", ItemIn { price: Some(f64::NAN), ..Default::default() }, NOW).unwrap_err().0, "price");
        assert_eq!(check_item("a", ItemIn { categories: vec!["ok".into(), String::new()], ..Default::default() }, NOW).unwrap_err().0, "categories[1]");
    }
}
