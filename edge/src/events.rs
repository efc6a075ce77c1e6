//! Events in: `POST /v1/events` → Cloudflare Queue → the queue consumer →
//! an origin's `POST /v1/events`.
//!
//! The edge checks a batch with the origin's own rules
//! (`shared::events::parse_batch`) and answers 202 once the queue holds it:
//! the queue, not an isolate's memory, carries events through an outage of
//! every origin. The consumer delivers to the origins in priority order and
//! acknowledges a queue batch only when an origin acknowledged every event
//! of it (which it does once they are durable); otherwise the whole batch is
//! retried later (`retry_delay` in wrangler.toml) and, after `max_retries`,
//! moved to the dead-letter queue. Delivery is at-least-once; the events'
//! `event_id`s make the origin store each once.

use shared::edge_config::EdgeConfig;
use shared::events::{self, Event, EventsAccepted, MAX_EVENTS_BODY_BYTES, MAX_EVENTS_PER_BATCH};
use shared::request::RequestError;
use worker::{Env, MessageBatch, MessageExt, Request, Response};

use crate::origin_client::{self, OriginRequest};

/// The queue binding (wrangler.toml `[[queues.producers]]`).
pub const QUEUE_BINDING: &str = "EVENTS";

/// Largest queue message we send, bytes of JSON (Cloudflare Queues take 128 KB).
pub const MAX_MESSAGE_BYTES: usize = 96 * 1024;

/// How long the consumer waits for one origin to acknowledge one batch, ms.
pub const DELIVERY_DEADLINE_MS: u64 = 10_000;

fn now_ms() -> i64 {
    worker::Date::now().as_millis() as i64
}

/// `POST /v1/events`: 202 `{"queued": n}` once the queue holds the batch;
/// 413/422/400 as the origin would answer; 503 when no queue is bound or it refuses.
pub async fn accept(req: &mut Request, env: &Env) -> Result<Response, RequestError> {
    crate::require_json(req)?;
    let body = crate::read_body(req, MAX_EVENTS_BODY_BYTES).await?;
    let batch = events::parse_batch(&body, now_ms())?;
    let queue = env.queue(QUEUE_BINDING).map_err(|_| RequestError::new(503, format!("no {QUEUE_BINDING} queue is bound to this worker")))?;
    for message in events::queue_messages(&batch, MAX_MESSAGE_BYTES) {
        queue.send(message).await.map_err(|e| {
            worker::console_error!("edgerec: queueing events failed: {e}");
            RequestError::new(503, "the events queue refused the batch; retry it (event_ids make that safe)")
        })?;
    }
    let body = serde_json::json!({ "queued": batch.len() });
    Ok(Response::from_json(&body).map_err(|e| RequestError::new(500, e.to_string()))?.with_status(202))
}

/// Sends `events` (at most [`MAX_EVENTS_PER_BATCH`]) to the first origin that acknowledges them.
async fn deliver_one(cfg: &EdgeConfig, events: &[Event]) -> Result<EventsAccepted, String> {
    let body = serde_json::json!({ "events": events }).to_string();
    let mut last = String::from("no origin is configured");
    for origin in cfg.by_priority() {
        let url = format!("{}/v1/events", origin.url);
        let call = OriginRequest { url: &url, body: Some(&body), request_id: "events", edge_key: cfg.origin_secret.as_deref(), client_ip: None };
        match origin_client::call_json::<EventsAccepted>(&call, DELIVERY_DEADLINE_MS).await {
            Ok(ack) => return Ok(ack),
            Err(e) => last = format!("{}: {e}", origin.name),
        }
    }
    Err(last)
}

/// The queue consumer: every message's events to an origin; ack the batch
/// when all are acknowledged, else retry it whole. A message that does not
/// parse (never written by [`accept`]) is acknowledged and logged: retrying
/// it could never succeed.
///
/// # Errors
/// Only the runtime's; delivery failures retry the batch instead.
pub async fn consume(batch: MessageBatch<String>, cfg: &EdgeConfig) -> worker::Result<()> {
    let mut events: Vec<Event> = Vec::new();
    for message in batch.messages()? {
        match serde_json::from_str::<Vec<Event>>(message.body()) {
            Ok(mut e) => events.append(&mut e),
            Err(e) => {
                worker::console_error!("edgerec: dropping a queue message that is not an event list: {e}");
                message.ack();
            }
        }
    }
    for chunk in events.chunks(MAX_EVENTS_PER_BATCH) {
        match deliver_one(cfg, chunk).await {
            Ok(ack) if ack.rate_limited > 0 => {
                worker::console_warn!("edgerec: the origin refused {} events over the per-shopper rate", ack.rate_limited)
            }
            Ok(_) => {}
            Err(e) => {
                worker::console_warn!("edgerec: events not delivered ({e}); the queue retries the batch");
                batch.retry_all();
                return Ok(());
            }
        }
    }
    batch.ack_all();
    Ok(())
}
