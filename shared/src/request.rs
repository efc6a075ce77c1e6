//! Parsing recommendation requests off the wire, identically in origin and
//! edge: the `GET` query string and the `POST` JSON body become a
//! [`RecommendationRequest`], or a [`RequestError`] carrying the HTTP status
//! (400, 413, 415, 422) and the offending field.

use serde::Deserialize;

use crate::contract::MAX_K;
use crate::wire::{ApiError, RecommendationRequest, ValidRequest};

/// Largest accepted `POST` body, bytes (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest query string the edge sends to an origin in the `GET` form, bytes
/// (8 KiB: nginx's default `large_client_header_buffers` line, half of
/// Cloudflare's 16 KB URL limit; hyper refuses URIs past 64 KiB with 414).
/// A longer one goes as a `POST` body instead ([`OriginForm`]): a history of
/// 500 ids of 256 bytes that percent-encode to three bytes each would make a
/// ~190 KB query, which the origin refuses, and a refusal must never be
/// mistaken for an unwell origin.
pub const MAX_ORIGIN_QUERY_BYTES: usize = 8 * 1024;

/// How a request travels from the edge to an origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginForm {
    /// `GET /v1/recommendations?{query}` ([`canonical_query`]).
    Get,
    /// `POST /v1/recommendations` with this JSON body ([`origin_body`]), when
    /// the query would be longer than [`MAX_ORIGIN_QUERY_BYTES`].
    Post(String),
    /// Neither fits what an origin accepts (a body over [`MAX_BODY_BYTES`]):
    /// the origin must not be asked.
    TooLarge {
        /// The JSON body's length, bytes.
        body_bytes: usize,
    },
}

/// The form in which `req`, whose canonical query is `query`, can be sent to
/// an origin so that the origin accepts it: never a query or a body past the
/// limits the origin (and any proxy before it) enforces.
pub fn origin_form(req: &ValidRequest, query: &str) -> OriginForm {
    if query.len() <= MAX_ORIGIN_QUERY_BYTES {
        return OriginForm::Get;
    }
    let body = origin_body(req);
    if body.len() <= MAX_BODY_BYTES { OriginForm::Post(body) } else { OriginForm::TooLarge { body_bytes: body.len() } }
}

/// The `POST` body of a valid request: `{"history", "k", "exclude_seen"}`,
/// and `category`, `exclude` when given.
pub fn origin_body(req: &ValidRequest) -> String {
    let mut body = serde_json::json!({ "history": req.history, "k": req.k, "exclude_seen": req.exclude_seen });
    if let Some(u) = &req.user_id {
        body["user_id"] = u.clone().into();
    }
    if let Some(c) = &req.category {
        body["category"] = c.clone().into();
    }
    if !req.exclude.is_empty() {
        body["exclude"] = req.exclude.clone().into();
    }
    body.to_string()
}

/// A request that cannot be served, with the HTTP status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct RequestError {
    /// HTTP status code (4xx).
    pub status: u16,
    /// What is wrong, for humans.
    pub message: String,
    /// The offending field (`k`, `history[3]`, `body`), when one is to blame.
    pub field: Option<String>,
}

impl RequestError {
    /// An error blaming `field`.
    pub fn field(status: u16, field: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError { status, message: message.into(), field: Some(field.into()) }
    }

    /// An error without a field.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        RequestError { status, message: message.into(), field: None }
    }

    /// The JSON body of the answer.
    pub fn body(&self) -> ApiError {
        ApiError { error: self.message.clone(), field: self.field.clone() }
    }
}

/// Query parameters of the cacheable `GET` form: `history` is a comma-separated id list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendationQuery {
    user_id: Option<String>,
    history: Option<String>,
    k: Option<String>,
    exclude_seen: Option<String>,
    category: Option<String>,
    exclude: Option<String>,
}

/// Parses `history=1,2,3&k=10&exclude_seen=true&user_id=…` (without the `?`).
///
/// # Errors
/// 400 for an unknown or repeated parameter, 422 naming `k` or `exclude_seen`
/// when its value is not a number / boolean.
pub fn parse_query(raw: &str) -> Result<RecommendationRequest, RequestError> {
    let q: RecommendationQuery = serde_urlencoded::from_str(raw).map_err(|e| RequestError::new(400, format!("bad query string: {e}")))?;
    let k = match q.k.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<usize>().map_err(|_| RequestError::field(422, "k", format!("k must be an integer between 1 and {MAX_K}, got {raw:?}")))?),
    };
    let exclude_seen = match q.exclude_seen.as_deref() {
        None | Some("") => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(raw) => return Err(RequestError::field(422, "exclude_seen", format!("exclude_seen must be true or false, got {raw:?}"))),
    };
    let history = match q.history.as_deref() {
        None | Some("") => Vec::new(),
        Some(raw) => raw.split(',').map(|s| s.trim().to_string()).collect(),
    };
    let exclude = match q.exclude.as_deref() {
        None | Some("") => Vec::new(),
        Some(raw) => raw.split(',').map(|s| s.trim().to_string()).collect(),
    };
    Ok(RecommendationRequest { user_id: q.user_id, history, k, exclude_seen, category: q.category.filter(|c| !c.is_empty()), exclude })
}

/// Whether a `Content-Type` value is JSON (`application/json`, any parameters).
pub fn is_json_content_type(value: Option<&str>) -> bool {
    value.is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")))
}

/// Parses a `POST` body: syntax errors are 400, well-formed JSON of the
/// wrong shape is 422 naming the field path (e.g. `history[3]`), a body over
/// [`MAX_BODY_BYTES`] is 413.
///
/// # Errors
/// As above.
pub fn parse_json(body: &[u8]) -> Result<RecommendationRequest, RequestError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(RequestError::field(413, "body", format!("body is {} bytes, at most {MAX_BODY_BYTES} are accepted", body.len())));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize::<_, RecommendationRequest>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let field = if path == "." { message_field(&inner.to_string()).unwrap_or_else(|| "body".into()) } else { path };
                RequestError::field(422, field, inner.to_string())
            }
            _ => RequestError::new(400, format!("malformed JSON: {inner}")),
        }
    })
}

/// serde names missing/unknown fields only in its message: "missing field `history`".
fn message_field(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = start + msg[start..].find('`')?;
    Some(msg[start..end].to_string())
}

/// Range checks of [`RecommendationRequest::validate`] as a 422.
///
/// # Errors
/// 422 naming `k` or `history`.
pub fn validate(req: RecommendationRequest) -> Result<ValidRequest, RequestError> {
    req.validate().map_err(|e| RequestError::field(422, e.field, e.to_string()))
}

/// Appends `chunk` to a body being read as a stream, refusing it before the
/// copy once the body would pass `max` bytes ([`MAX_BODY_BYTES`] for a
/// recommendation request, `events::MAX_EVENTS_BODY_BYTES` for an events
/// batch): a body without `Content-Length` (chunked) is bounded as it
/// arrives, not after.
///
/// # Errors
/// 413 naming `body`, with the limit in bytes.
pub fn append_body_chunk(body: &mut Vec<u8>, chunk: &[u8], max: usize) -> Result<(), RequestError> {
    if body.len().saturating_add(chunk.len()) > max {
        return Err(RequestError::field(413, "body", format!("body is over {max} bytes")));
    }
    body.extend_from_slice(chunk);
    Ok(())
}

/// A request reduced to what changes its answer, for the edge's cache key
/// and its query to the origin ([`canonicalize`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Canonical {
    /// The request with only catalog ids, in catalog order, duplicates kept.
    pub request: ValidRequest,
    /// Ids the catalog does not know, in request order (reported in `warnings`).
    pub unknown: Vec<String>,
}

/// Reduces `req` to the request that gets the same answer, so that every
/// spelling of one question shares one cache entry and junk cannot mint new
/// ones: ids `knows` rejects are dropped (and returned, to be named
/// in `warnings`), the rest keep the shopper's order, oldest first.
///
/// Order and duplicates are both kept because both change the answer: the
/// full model may be a sequence model (SASRec), which reads the order, and a
/// repeated item weighs twice in EASE (`s = x·B`). See [`crate::contract`].
pub fn canonicalize(req: &ValidRequest, knows: impl Fn(&str) -> bool) -> Canonical {
    let mut known = Vec::with_capacity(req.history.len());
    let mut unknown = Vec::new();
    for id in &req.history {
        if knows(id) {
            known.push(id);
        } else {
            unknown.push(id.clone());
        }
    }
    let history: Vec<String> = known.into_iter().cloned().collect();
    // `user_id` matters only without a history (the origin reads the
    // shopper's history from its store); with one, it changes nothing and
    // stays out of the key.
    let user_id = if history.is_empty() && req.history.is_empty() { req.user_id.clone() } else { None };
    Canonical {
        request: ValidRequest { history, k: req.k, exclude_seen: req.exclude_seen, user_id, category: req.category.clone(), exclude: req.exclude.clone() },
        unknown,
    }
}

/// The query string of a valid request, in one spelling whichever form
/// (`GET`/`POST`, parameter order, spacing, `user_id`) asked for it. The edge
/// sends it to the origin and keys its cache by it, after [`canonicalize`].
/// Ids are percent-encoded, history order is kept.
pub fn canonical_query(req: &ValidRequest) -> String {
    let history = req.history.join(",");
    let k = req.k.to_string();
    let mut pairs = vec![("history", history.as_str()), ("k", &k), ("exclude_seen", if req.exclude_seen { "true" } else { "false" })];
    if let Some(u) = &req.user_id {
        pairs.push(("user_id", u));
    }
    if let Some(c) = &req.category {
        pairs.push(("category", c));
    }
    let exclude = req.exclude.join(",");
    if !exclude.is_empty() {
        pairs.push(("exclude", &exclude));
    }
    serde_urlencoded::to_string(pairs).expect("string pairs always encode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_json_forms_agree_and_canonicalize_alike() {
        let get = validate(parse_query("k=5&history=50,%20172&user_id=u1").unwrap()).unwrap();
        let post = validate(parse_json(br#"{"history":["50",172],"k":5,"exclude_seen":true}"#).unwrap()).unwrap();
        assert_eq!(ValidRequest { user_id: None, ..get.clone() }, post, "user_id aside, the forms agree");
        let key = |r: &ValidRequest| canonical_query(&canonicalize(r, |_| true).request);
        assert_eq!(key(&get), "history=50%2C172&k=5&exclude_seen=true", "beside a history, user_id is not part of the key");
        assert_eq!(key(&get), key(&post));
        // The canonical form parses back to the same request.
        let c = canonicalize(&get, |_| true).request;
        assert_eq!(validate(parse_query(&canonical_query(&c)).unwrap()).unwrap(), c);
        // Without a history the origin reads the shopper's: then user_id is the key.
        let alone = validate(parse_query("user_id=u1&k=5").unwrap()).unwrap();
        assert_eq!(key(&alone), "history=&k=5&exclude_seen=true&user_id=u1");
        assert_eq!(origin_body(&canonicalize(&alone, |_| true).request), r#"{"exclude_seen":true,"history":[],"k":5,"user_id":"u1"}"#);
    }

    #[test]
    fn ids_with_reserved_characters_survive_the_canonical_form() {
        let req = ValidRequest { history: vec!["a&b=c".into(), "ü ß".into()], k: 3, exclude_seen: false, ..Default::default() };
        assert_eq!(validate(parse_query(&canonical_query(&req)).unwrap()).unwrap(), req);
    }

    #[test]
    fn canonical_requests_drop_unknown_ids_but_keep_order_and_duplicates() {
        let index = |id: &str| id.parse::<usize>().is_ok();
        let r = |h: &[&str]| ValidRequest { history: h.iter().map(|s| s.to_string()).collect(), k: 5, exclude_seen: true, ..Default::default() };
        let a = canonicalize(&r(&["50", "172", "junk-1"]), index);
        let b = canonicalize(&r(&["junk-2", "50", "172"]), index);
        assert_eq!(a.request, b.request, "unknown ids do not split the key");
        assert_eq!(a.request.history, vec!["50", "172"]);
        assert_eq!((a.unknown, b.unknown), (vec!["junk-1".to_string()], vec!["junk-2".to_string()]));
        let reordered = canonicalize(&r(&["172", "50"]), index);
        assert_ne!(reordered.request, a.request, "a sequence model reads the order: a different question");
        let dup = canonicalize(&r(&["50", "172", "50"]), index);
        assert_eq!(dup.request.history, vec!["50", "172", "50"], "a repeated item weighs twice: a different question");
        assert_ne!(canonical_query(&dup.request), canonical_query(&a.request));
    }

    /// Hardening round 2, item 1: the origin accepts what the edge forwards.
    #[test]
    fn long_histories_go_to_the_origin_as_a_body_it_accepts() {
        let short = ValidRequest { history: vec!["50".into(), "172".into()], k: 5, exclude_seen: true, ..Default::default() };
        assert_eq!(origin_form(&short, &canonical_query(&short)), OriginForm::Get);
        // 250 ids of 256 bytes of a character that percent-encodes to three bytes per byte.
        let long = ValidRequest { history: vec!["\u{1}".repeat(256); 250], k: 5, exclude_seen: true, ..Default::default() };
        let query = canonical_query(&long);
        assert!(query.len() > 150_000, "{}", query.len());
        match origin_form(&long, &query) {
            OriginForm::TooLarge { body_bytes } => assert!(body_bytes > MAX_BODY_BYTES),
            other => panic!("{other:?}"),
        }
        let wide = ValidRequest { history: vec!["é".repeat(128); 120], k: 5, exclude_seen: false, ..Default::default() };
        let query = canonical_query(&wide);
        assert!(query.len() > MAX_ORIGIN_QUERY_BYTES);
        let OriginForm::Post(body) = origin_form(&wide, &query) else { panic!("a body fits") };
        assert!(body.len() <= MAX_BODY_BYTES);
        assert_eq!(validate(parse_json(body.as_bytes()).unwrap()).unwrap(), wide, "the origin reads the same request");
    }

    #[test]
    fn streamed_bodies_stop_at_the_limit_before_copying() {
        let mut body = Vec::new();
        let chunk = vec![b' '; 16 * 1024];
        for _ in 0..4 {
            append_body_chunk(&mut body, &chunk, MAX_BODY_BYTES).unwrap();
        }
        let e = append_body_chunk(&mut body, b"x", MAX_BODY_BYTES).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (413, Some("body")));
        assert_eq!(body.len(), MAX_BODY_BYTES, "the refused chunk was not copied");
    }

    #[test]
    fn errors_carry_status_and_field() {
        let e = parse_query("k=ten").unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("k")));
        let e = parse_query("exclude_seen=maybe").unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("exclude_seen")));
        assert_eq!(parse_query("bogus=1").unwrap_err().status, 400);
        assert_eq!(parse_json(b"{\"history\": [").unwrap_err().status, 400);
        let e = parse_json(br#"{"history":["1", -3]}"#).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("history[1]")));
        let e = parse_json(br#"{"k": 3}"#).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("history")));
        let e = parse_json(&vec![b' '; MAX_BODY_BYTES + 1]).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (413, Some("body")));
        let e = validate(parse_json(br#"{"history":[],"k":101}"#).unwrap()).unwrap_err();
        assert_eq!((e.status, e.field.as_deref()), (422, Some("k")));
    }

    #[test]
    fn deeply_nested_json_is_a_clean_error() {
        let deep = format!("{{\"history\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse_json(deep.as_bytes()).unwrap_err().status, 400 | 422));
    }

    #[test]
    fn content_type_check_accepts_parameters_only_on_json() {
        assert!(is_json_content_type(Some("application/json; charset=utf-8")));
        assert!(is_json_content_type(Some("Application/JSON")));
        assert!(!is_json_content_type(Some("text/plain")));
        assert!(!is_json_content_type(None));
    }
}
