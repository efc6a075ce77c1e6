//! Property tests of request parsing (bounded fuzzing, part of every test
//! run): arbitrary bytes and query strings never panic, and every rejection
//! is a 4xx the servers can send.

use proptest::prelude::*;
use shared::request::{self, MAX_BODY_BYTES};

fn is_client_error(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// JSON-ish bodies: fragments of a real request shuffled, so the parser gets
/// past the first byte more often than with uniform noise.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"history\"".to_string()),
        Just("\"k\"".to_string()),
        Just("\"exclude_seen\"".to_string()),
        Just("\"user_id\"".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "\"[^\"]{0,12}\"",
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_and_rejections_are_4xx(body in prop::collection::vec(any::<u8>(), 0..512)) {
        match request::parse_json(&body).and_then(request::validate) {
            Ok(v) => prop_assert!((1..=shared::contract::MAX_K).contains(&v.k)),
            Err(e) => prop_assert!(is_client_error(e.status), "status {}", e.status),
        }
    }

    #[test]
    fn jsonish_bodies_never_panic_and_name_a_field_on_422(body in jsonish()) {
        if let Err(e) = request::parse_json(body.as_bytes()).and_then(request::validate) {
            prop_assert!(is_client_error(e.status));
            if e.status == 422 {
                prop_assert!(e.field.is_some(), "422 without a field for {body:?}: {e:?}");
            }
        }
    }

    #[test]
    fn arbitrary_query_strings_never_panic(q in ".{0,200}") {
        match request::parse_query(&q).and_then(request::validate) {
            Ok(v) => {
                // A valid request's canonical form parses back to itself.
                let again = request::validate(request::parse_query(&request::canonical_query(&v)).unwrap()).unwrap();
                prop_assert_eq!(again, v);
            }
            Err(e) => prop_assert!(is_client_error(e.status)),
        }
    }

    #[test]
    fn valid_requests_round_trip_through_both_forms(
        history in prop::collection::vec("[a-zA-Z0-9&=%ü-]{1,12}", 0..20),
        k in 1usize..=100,
        exclude in any::<bool>(),
    ) {
        let body = serde_json::json!({"history": history, "k": k, "exclude_seen": exclude}).to_string();
        let post = request::validate(request::parse_json(body.as_bytes()).unwrap()).unwrap();
        let get = request::validate(request::parse_query(&request::canonical_query(&post)).unwrap()).unwrap();
        prop_assert_eq!(get, post);
    }
}

#[test]
fn oversized_and_hostile_bodies_are_refused_cleanly() {
    let huge = vec![b'['; MAX_BODY_BYTES + 1];
    assert_eq!(request::parse_json(&huge).unwrap_err().status, 413);
    let deep = "[".repeat(10_000);
    let e = request::parse_json(format!("{{\"history\": {deep}").as_bytes()).unwrap_err();
    assert!(is_client_error(e.status), "deep nesting: {e:?}");
    let ten_k: Vec<String> = (0..10_000).map(|i| i.to_string()).collect();
    let body = serde_json::json!({ "history": ten_k }).to_string();
    let e = request::parse_json(body.as_bytes()).and_then(request::validate).unwrap_err();
    assert_eq!((e.status, e.field.as_deref()), (413, Some("body")), "10k ids exceed 64 KiB");
    let e = request::parse_json(br#"{"history": ["1"], "k": -1}"#).unwrap_err();
    assert_eq!((e.status, e.field.as_deref()), (422, Some("k")));
}
