//! Logs (tracing, JSON by default) and Prometheus metrics.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::LogFormat;

/// Installs the global tracing subscriber (`RUST_LOG` filters, default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,tower_http=info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// How often recorded histogram samples are folded into their buckets.
pub const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the global metrics recorder, starts its upkeep task, and returns
/// the handle `/metrics` renders.
///
/// The exporter keeps every histogram sample in a queue until the next
/// render or upkeep folds it into the buckets; `install_recorder` spawns no
/// upkeep (metrics-exporter-prometheus docs, "Upkeep and maintenance"), so
/// without scrapes the queue grew by every request (found by the 10-minute
/// soak: +2 MiB/min). The task here drains it every
/// [`METRICS_UPKEEP_INTERVAL`], scraped or not.
///
/// # Errors
/// If a recorder is already installed, or when called outside a Tokio runtime.
pub fn init_metrics() -> anyhow::Result<PrometheusHandle> {
    let runtime = tokio::runtime::Handle::try_current()?;
    // Latency buckets from 100 µs to 10 s: inference is sub-millisecond, timeouts are seconds.
    let buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
    let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];
    // Event ingest lag (shopper's action → durable here) is seconds to hours when a queue backs up.
    let lag = [0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)?
        .set_buckets_for_metric(Matcher::Full("event_ingest_lag_seconds".into()), &lag)?
        .set_buckets_for_metric(Matcher::Full("inference_batch_size".into()), &batch)?
        .install_recorder()?;
    let upkeep = handle.clone();
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// The `method` label of a request: one of RFC 9110's methods (and PATCH),
/// else `other`. Any token is a valid HTTP method, so labelling by the raw
/// method let a stranger add a Prometheus series per request (`X0001`,
/// `X0002`, …) that was never dropped.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Counts every request and records its latency by route, method and status
/// (each label from a fixed set: the matched route or `unmatched`,
/// [`method_label`], the status code), and keeps `http_requests_in_flight`
/// by route: the load signal an autoscaler wants for a batched model server
/// (CPU saturates late when requests wait in the batch queue).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(request.method()).to_string();
    let started = Instant::now();
    let _in_flight = InFlight::enter(route.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("route", route), ("method", method), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels).record(started.elapsed().as_secs_f64());
    response
}

/// One request in `http_requests_in_flight{route}`; leaves it when dropped,
/// also when the client goes away and the request's future is cancelled.
struct InFlight(metrics::Gauge);

impl InFlight {
    fn enter(route: String) -> Self {
        let gauge = metrics::gauge!("http_requests_in_flight", "route" => route);
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
