//! A fault-injecting HTTP/1.1 proxy for the path edge → origin. The test
//! switches its [`Fault`] at any time; each request is handled by the fault
//! in force when it arrives.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the proxy does to each request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Forward untouched.
    Pass,
    /// Stop listening: connections are refused (the origin's host is up, its process is not).
    Refuse,
    /// Close the connection without answering (the origin is gone).
    Down,
    /// Accept and never answer (held for `Blackhole`'s duration, then closed).
    Blackhole,
    /// Forward after this delay.
    Delay(Duration),
    /// Forward after a delay drawn uniformly from `[min, max]`.
    Jitter(Duration, Duration),
    /// Answer this status with a JSON error body, without forwarding.
    Status(u16),
    /// Forward, then send only the first half of the origin's body (well-formed HTTP, malformed JSON).
    Truncate,
    /// Answer 500 to this share of requests (0.0..=1.0), forward the rest.
    RandomErrors(f64),
    /// Forward this share of requests (0.0..=1.0) after the delay, the rest at once: a slow tail.
    TailDelay(f64, Duration),
}

/// Longest a [`Fault::Blackhole`] holds a request, so every test ends by itself.
const BLACKHOLE_HOLD: Duration = Duration::from_secs(30);

struct State {
    upstream: String,
    fault: Mutex<Fault>,
    client: reqwest::Client,
    requests: AtomicU64,
    rng: Mutex<u64>,
    last_request_id: Mutex<Option<String>>,
    refusing: tokio::sync::watch::Sender<bool>,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (`http://host:port`).
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let state = Arc::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            fault: Mutex::new(Fault::Pass),
            client: reqwest::Client::builder().pool_max_idle_per_host(16).build().expect("reqwest client"),
            requests: AtomicU64::new(0),
            rng: Mutex::new(0x9E37_79B9_7F4A_7C15),
            last_request_id: Mutex::new(None),
            refusing: tokio::sync::watch::Sender::new(false),
        });
        let accept_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut refusing = accept_state.refusing.subscribe();
            let mut listener = Some(listener);
            loop {
                let Some(l) = &listener else {
                    // Refusing: no socket listens until the fault changes, then the same port again.
                    let _ = refusing.wait_for(|r| !*r).await;
                    listener = TcpListener::bind(addr).await.ok();
                    continue;
                };
                tokio::select! {
                    accepted = l.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = Arc::clone(&accept_state);
                        tokio::spawn(async move {
                            let service = service_fn(move |req| handle(Arc::clone(&state), req));
                            // An Err from the service closes the connection unanswered: that is the `Down` fault.
                            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                        });
                    }
                    _ = refusing.wait_for(|r| *r) => listener = None,
                }
            }
        });
        FaultProxy { addr, state, task }
    }

    /// The proxy's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the fault for requests from now on.
    pub fn set(&self, fault: Fault) {
        self.state.refusing.send_replace(fault == Fault::Refuse);
        *self.state.fault.lock().expect("fault lock") = fault;
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The `x-request-id` of the latest request, if it had one.
    pub fn last_request_id(&self) -> Option<String> {
        self.state.last_request_id.lock().expect("id lock").clone()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn json(status: u16, body: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", "application/json".parse().expect("static header"));
    r
}

/// xorshift64: a uniform draw in [0, 1) without a dependency.
fn draw(state: &State) -> f64 {
    let mut x = state.rng.lock().expect("rng lock");
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    (*x >> 11) as f64 / (1u64 << 53) as f64
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, std::io::Error> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
    *state.last_request_id.lock().expect("id lock") = id;
    let fault = state.fault.lock().expect("fault lock").clone();
    let closed = || std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "fault: connection closed");
    match fault {
        // Connections accepted just before the listener closed.
        Fault::Down | Fault::Refuse => return Err(closed()),
        Fault::Blackhole => {
            tokio::time::sleep(BLACKHOLE_HOLD).await;
            return Err(closed());
        }
        Fault::Status(s) => return Ok(json(s, &format!("{{\"error\":\"injected HTTP {s}\"}}"))),
        Fault::RandomErrors(p) if draw(&state) < p => return Ok(json(500, "{\"error\":\"injected random error\"}")),
        Fault::Delay(d) => tokio::time::sleep(d).await,
        Fault::Jitter(lo, hi) => tokio::time::sleep(lo + (hi.saturating_sub(lo)).mul_f64(draw(&state))).await,
        Fault::TailDelay(p, d) if draw(&state) < p => tokio::time::sleep(d).await,
        Fault::Pass | Fault::Truncate | Fault::RandomErrors(_) | Fault::TailDelay(..) => {}
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let url = format!("{}{}", state.upstream, parts.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut forward = state.client.request(parts.method.clone(), url).body(body);
    for name in ["content-type", "x-request-id", "accept"] {
        if let Some(v) = parts.headers.get(name) {
            forward = forward.header(name, v.clone());
        }
    }
    let Ok(upstream) = forward.send().await else { return Err(closed()) };
    let status = upstream.status().as_u16();
    let content_type = upstream.headers().get("content-type").cloned();
    let Ok(mut bytes) = upstream.bytes().await else { return Err(closed()) };
    if fault == Fault::Truncate {
        bytes = bytes.slice(..bytes.len() / 2);
    }
    let mut r = Response::new(Full::new(bytes));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    if let Some(ct) = content_type {
        r.headers_mut().insert("content-type", ct);
    }
    Ok(r)
}
