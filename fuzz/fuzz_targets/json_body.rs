//! The `POST` JSON body, as the edge and the origin parse it: a 4xx naming a
//! field on 422, or a request that survives both forwarded forms unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::request::{self, OriginForm};

fuzz_target!(|data: &[u8]| {
    match request::parse_json(data).and_then(request::validate) {
        Err(e) => {
            assert!(matches!(e.status, 400 | 413 | 422), "status {}", e.status);
            assert!(e.status != 422 || e.field.is_some(), "422 without a field");
        }
        Ok(v) => {
            let q = request::canonical_query(&v);
            assert_eq!(request::validate(request::parse_query(&q).unwrap()).unwrap(), v, "GET form round trip");
            if let OriginForm::Post(body) = request::origin_form(&v, &q) {
                assert_eq!(request::validate(request::parse_json(body.as_bytes()).unwrap()).unwrap(), v, "POST form round trip");
            }
        }
    }
});
