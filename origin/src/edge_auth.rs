//! The edge → origin credential. With `--edge-key` (`EDGEREC_EDGE_KEY`) set,
//! `/v1/*` answers only requests carrying the same secret in
//! [`EDGE_KEY_HEADER`] (the worker's `ORIGIN_SECRET`, set with `wrangler
//! secret put`), compared in constant time; anyone who merely knows the
//! origin's address gets 401. A request that passes is marked
//! [`EdgeVouched`], which lets the rate limit trust the shopper address the
//! edge forwards.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::HttpError;

/// Header carrying the edge credential.
pub const EDGE_KEY_HEADER: &str = "x-edgerec-edge-key";

/// Request extension: the edge credential checked out.
#[derive(Debug, Clone, Copy)]
pub struct EdgeVouched;

/// Whether `given` is the configured key, in time independent of how much matched.
pub fn key_matches(expected: &str, given: Option<&[u8]>) -> bool {
    given.is_some_and(|g| bool::from(g.ct_eq(expected.as_bytes())))
}

/// Middleware: 401 without the configured credential; marks vouched requests.
pub async fn require(State(key): State<Arc<str>>, mut request: Request, next: Next) -> Response {
    let given = request.headers().get(EDGE_KEY_HEADER).map(|v| v.as_bytes());
    if !key_matches(&key, given) {
        metrics::counter!("requests_refused_total", "reason" => "edge_key").increment(1);
        return HttpError::field(StatusCode::UNAUTHORIZED, EDGE_KEY_HEADER, format!("this origin answers its edge only: send {EDGE_KEY_HEADER}"))
            .into_response();
    }
    request.extensions_mut().insert(EdgeVouched);
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_matches() {
        assert!(key_matches("s3cret", Some(b"s3cret")));
        for wrong in [&b"s3cre"[..], b"s3cretX", b"", b"S3CRET"] {
            assert!(!key_matches("s3cret", Some(wrong)), "{wrong:?}");
        }
        assert!(!key_matches("s3cret", None));
    }
}
