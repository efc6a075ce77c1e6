//! `GET {ORIGIN_URL}/v1/recommendations?…` under a deadline: the fetch and
//! a timer race; at the deadline an `AbortController` cancels the fetch.

use std::pin::pin;
use std::time::Duration;

use futures_util::future::{Either, select};
use shared::failover_path::OriginFailure;
use shared::wire::RecommendationResponse;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

/// Fetches `url` with `x-request-id`, giving up after `deadline_ms` (body
/// included: a trickling answer is as late as a silent one).
///
/// # Errors
/// [`OriginFailure`]: timeout, network error, non-200 status, or a body that
/// is not a recommendation answer.
pub async fn get_json(url: &str, request_id: &str, deadline_ms: u64) -> Result<RecommendationResponse, OriginFailure> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let headers = Headers::new();
        headers.set("accept", "application/json").map_err(net)?;
        headers.set("x-request-id", request_id).map_err(net)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Get).with_headers(headers);
        let request = Request::new_with_init(url, &init).map_err(net)?;
        let mut response = Fetch::Request(request).send_with_signal(&signal).await.map_err(net)?;
        if response.status_code() != 200 {
            return Err(OriginFailure::Status(response.status_code()));
        }
        let body = response.bytes().await.map_err(net)?;
        serde_json::from_slice::<RecommendationResponse>(&body).map_err(|e| OriginFailure::Malformed(e.to_string()))
    };
    let deadline = Delay::from(Duration::from_millis(deadline_ms));
    match select(pin!(call), pin!(deadline)).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => {
            controller.abort();
            Err(OriginFailure::Timeout(deadline_ms))
        }
    }
}

/// `GET {base}/readyz` within `deadline_ms`: true on 200.
pub async fn ready(base: &str, deadline_ms: u64) -> bool {
    let controller = AbortController::default();
    let signal = controller.signal();
    let call = async {
        let request = Request::new(&format!("{base}/readyz"), Method::Get).ok()?;
        Fetch::Request(request).send_with_signal(&signal).await.ok().map(|r| r.status_code() == 200)
    };
    let deadline = Delay::from(Duration::from_millis(deadline_ms));
    match select(pin!(call), pin!(deadline)).await {
        Either::Left((ok, _)) => ok.unwrap_or(false),
        Either::Right(((), _)) => {
            controller.abort();
            false
        }
    }
}

fn net(e: worker::Error) -> OriginFailure {
    OriginFailure::Network(e.to_string())
}
