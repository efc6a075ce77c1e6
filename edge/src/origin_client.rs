//! `GET {origin}/v1/recommendations?…` (or a `POST` of the body when the
//! query would be too long for the origin, `shared::request::OriginForm`)
//! under a deadline: the fetch and a timer race; at the deadline, or when the
//! caller drops the future (a hedged request that lost), an
//! `AbortController` cancels the fetch. The answer is read as a stream and
//! refused past `shared::origin_answer::MAX_ANSWER_BYTES` (decompressed).
//! The edge credential goes in [`EDGE_KEY_HEADER`], the shopper's address in
//! [`CLIENT_IP_HEADER`] (the origin trusts it only beside a valid credential).

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use shared::failover_path::OriginFailure;
use shared::origin_answer::append_answer_chunk;
use shared::wire::RecommendationResponse;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// The edge → origin credential header (`ORIGIN_SECRET`).
pub const EDGE_KEY_HEADER: &str = "x-edgerec-edge-key";
/// The shopper's address, for the origin's per-client rate limit.
pub const CLIENT_IP_HEADER: &str = "x-edgerec-client-ip";

/// One call to the origin.
pub struct OriginRequest<'a> {
    /// Full URL (with the canonical query for a `GET`).
    pub url: &'a str,
    /// The JSON body of a `POST`; `None` for a `GET`.
    pub body: Option<&'a str>,
    /// Forwarded as `x-request-id`.
    pub request_id: &'a str,
    /// The edge credential, when configured.
    pub edge_key: Option<&'a str>,
    /// The shopper's address, when known.
    pub client_ip: Option<&'a str>,
}

/// Fetches `call.url`, giving up after `deadline_ms` (body included: a
/// trickling answer is as late as a silent one).
///
/// # Errors
/// [`OriginFailure`]: timeout, network error, non-200 status, or a body that
/// is not a recommendation answer.
pub async fn get_json(call: &OriginRequest<'_>, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
    call_json(call, deadline_ms).await
}

/// [`get_json`] for any JSON answer `T` (events acknowledgements, catalog changes).
///
/// # Errors
/// As [`get_json`].
pub async fn call_json<T: serde::de::DeserializeOwned>(call: &OriginRequest<'_>, deadline_ms: u64) -> Result<T, OriginFailure> {
    let controller = AbortOnDrop(Some(AbortController::default()));
    let signal = controller.0.as_ref().expect("set until dropped").signal();
    let url = call.url;
    let call = async {
        let headers = Headers::new();
        headers.set("accept", "application/json").map_err(net)?;
        headers.set("x-request-id", call.request_id).map_err(net)?;
        if let Some(key) = call.edge_key {
            headers.set(EDGE_KEY_HEADER, key).map_err(net)?;
        }
        if let Some(ip) = call.client_ip {
            headers.set(CLIENT_IP_HEADER, ip).map_err(net)?;
        }
        let mut init = RequestInit::new();
        if let Some(body) = call.body {
            headers.set("content-type", "application/json").map_err(net)?;
            init.with_method(Method::Post).with_body(Some(body.into()));
        } else {
            init.with_method(Method::Get);
        }
        init.with_headers(headers);
        let request = Request::new_with_init(url, &init).map_err(net)?;
        let mut response = Fetch::Request(request).send_with_signal(&signal).await.map_err(net)?;
        if response.status_code() != 200 {
            return Err(OriginFailure::Status(response.status_code()));
        }
        let mut body = Vec::new();
        let mut stream = response.stream().map_err(net)?;
        while let Some(chunk) = stream.next().await {
            append_answer_chunk(&mut body, &chunk.map_err(net)?).map_err(OriginFailure::Malformed)?;
        }
        serde_json::from_slice::<T>(&body).map_err(|e| OriginFailure::Malformed(e.to_string()))
    };
    let deadline = Delay::from(Duration::from_millis(deadline_ms));
    match select(pin!(call), pin!(deadline)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(OriginFailure::Timeout(deadline_ms)),
    }
}

/// Aborts the fetch when the call ends, whichever way: at the deadline, or
/// dropped unfinished. Aborting a fetch that has finished does nothing.
struct AbortOnDrop(Option<AbortController>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.abort();
        }
    }
}

fn net(e: worker::Error) -> OriginFailure {
    OriginFailure::Network(e.to_string())
}
