//! The `GET` query string, as the edge and the origin parse it. Beyond "no
//! panic": a request either parses to a 4xx, or its canonical form (what the
//! edge caches by and forwards) parses back to the same request, and the form
//! it is forwarded in is one the origin accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::request::{self, MAX_BODY_BYTES, MAX_ORIGIN_QUERY_BYTES, OriginForm};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    match request::parse_query(raw).and_then(request::validate) {
        Err(e) => assert!(matches!(e.status, 400 | 413 | 422), "status {}", e.status),
        Ok(v) => {
            let q = request::canonical_query(&v);
            assert_eq!(request::validate(request::parse_query(&q).unwrap()).unwrap(), v, "canonical form round trip");
            match request::origin_form(&v, &q) {
                OriginForm::Get => assert!(q.len() <= MAX_ORIGIN_QUERY_BYTES),
                OriginForm::Post(body) => {
                    assert!(body.len() <= MAX_BODY_BYTES);
                    assert_eq!(request::validate(request::parse_json(body.as_bytes()).unwrap()).unwrap(), v, "the origin reads the same request");
                }
                OriginForm::TooLarge { body_bytes } => assert!(body_bytes > MAX_BODY_BYTES),
            }
        }
    }
});
