//! `train --watch`: a page that shows a run as it goes, and afterwards the
//! drawing pad answering with the model it made.
//!
//! - `GET /`: the page; `GET /events`: the run as Server-Sent Events, the
//!   history so far first (a late or returning browser misses nothing),
//!   then each event as it happens: `start`, `progress` (at most every
//!   [`PROGRESS_EVERY`]: the steps done, the mean loss of minibatches
//!   since the last, the speed and the time left), `eval` (an evaluation's record), `digits` (once:
//!   the digits shown), `look` (the first layer's pictures, the answers on
//!   the digits shown, the confusion matrix), `end`.
//! - `GET /units?branch=B`: the first layer's branch B as a PNG.
//! - `POST /stop`: stops the run as Ctrl-C does; only with the page's
//!   token in `X-Watch-Token`, which another site cannot read or send;
//!   once the run has ended, refused (409).
//! - `GET /pad` and the API of [`super::Service`], once the run has ended.
//!
//! On a loopback address every request must be addressed to it (`Host`
//! an address or `localhost`): a page of another site whose name was made
//! to point here (DNS rebinding) is refused.

use super::{error, page, Limits, Service};
use crate::data::Split;
use crate::model_io::Model;
use crate::train::metrics::confusion;
use crate::train::{EvalRecord, Look, Observer};
use crate::units::{self, Grid};
use anyhow::Context;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tower::ServiceExt;

/// The least time between two `progress` events.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Digits shown with their current answers.
const DIGITS: usize = 100;

const PAGE: &str = include_str!("../../assets/watch/index.html");
const SCRIPT: &str = include_str!("../../assets/watch/watch.js");
const STYLE: &str = include_str!("../../assets/watch/watch.css");

/// What the page is told of a run before its first step.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    /// The network, as `784 -> [ReLU 128 | tanh 64] -> ...`.
    pub network: String,
    pub total_steps: usize,
    pub steps_per_epoch: usize,
    /// Steps done before this process (a resumed run).
    pub done: usize,
    /// Samples a step takes.
    pub batch: usize,
    /// Whether steps are minibatches (each reports its loss).
    pub minibatch: bool,
    /// The configuration, as TOML.
    pub config: String,
}

/// One event of the run, as sent.
#[derive(Clone)]
struct Said {
    kind: &'static str,
    data: Arc<str>,
}

/// The events so far: every one that is part of the record, and the last
/// `look` (its pictures replace the ones before). `progress` comes at most
/// once a second; past [`MOST_PROGRESS`] of them, every other one
/// kept is dropped, so a long run's history stays small.
#[derive(Default)]
struct History {
    kept: Vec<Said>,
    progress: usize,
    look: Option<Said>,
    end: Option<Said>,
}

/// `progress` events kept in the history before it is thinned.
const MOST_PROGRESS: usize = 4000;

impl History {
    fn replay(&self) -> Vec<Said> {
        let mut all = self.kept.clone();
        all.extend(self.look.iter().chain(&self.end).cloned());
        all
    }
}

/// What the observer on the training thread and the server share.
struct Shared {
    history: Mutex<History>,
    live: broadcast::Sender<Said>,
    /// The first layer's pictures of the last evaluation.
    units: Mutex<Vec<Grid>>,
    token: String,
    stop: Arc<AtomicBool>,
    /// The drawing pad's service, once the run has a model.
    pad: OnceLock<Router>,
    limits: Limits,
    /// Raised when the page closes: the event streams end.
    closing: tokio::sync::watch::Sender<bool>,
    /// Whether the page is served on a loopback address only.
    loopback: AtomicBool,
    /// Whether the run has ended (Stop has nothing left to stop).
    ended: AtomicBool,
}

impl Shared {
    /// Records `data` as a `kind` event and sends it to every browser.
    fn say(&self, kind: &'static str, data: Value) {
        let said = Said {
            kind,
            data: data.to_string().into(),
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        match kind {
            "look" => h.look = Some(said.clone()),
            "end" => h.end = Some(said.clone()),
            _ => h.kept.push(said.clone()),
        }
        if kind == "progress" {
            h.progress += 1;
            if h.progress > MOST_PROGRESS {
                // Every other one, the last kept.
                let (all, mut nth) = (h.progress, 0);
                h.kept.retain(|e| {
                    nth += usize::from(e.kind == "progress");
                    e.kind != "progress" || (all - nth) % 2 == 0
                });
                h.progress = all.div_ceil(2);
            }
        }
        // Sent under the lock: a browser subscribing now gets it once,
        // in the history or live.
        let _ = self.live.send(said);
    }
}

/// A run being watched: the [`Observer`] that tells the page, and the
/// server.
pub struct Watch {
    shared: Arc<Shared>,
    plan: Plan,
    started: Instant,
    last_progress: Option<Instant>,
    /// The summed loss and the steps since the last `progress`.
    losses: (f64, usize),
    shown_digits: bool,
    /// The server's thread, and what tells it to stop.
    server: Option<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Watch {
    /// A watch of the run `plan` describes; the page's Stop raises `stop`.
    pub fn new(plan: Plan, stop: Arc<AtomicBool>, limits: Limits) -> Watch {
        let shared = Arc::new(Shared {
            history: Mutex::default(),
            live: broadcast::channel(1024).0,
            units: Mutex::default(),
            token: token(),
            stop,
            pad: OnceLock::new(),
            limits,
            closing: tokio::sync::watch::channel(false).0,
            loopback: AtomicBool::new(true),
            ended: AtomicBool::new(false),
        });
        shared.say("start", json!(plan));
        Watch {
            shared,
            plan,
            started: Instant::now(),
            last_progress: None,
            losses: (0.0, 0),
            shown_digits: false,
            server: None,
        }
    }

    /// Serves the page on `listener`, on a thread of its own with one
    /// worker, until [`Watch::close`].
    pub fn start(&mut self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(2)
            .enable_all()
            .build()
            .context("cannot start the page's thread")?;
        listener.set_nonblocking(true)?;
        let loopback = listener.local_addr()?.ip().is_loopback();
        self.shared.loopback.store(loopback, Ordering::SeqCst);
        let (router, limits) = (self.router(), self.shared.limits);
        let (closing, closed) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(l) => {
                            super::listen::run(l, router, limits, async {
                                let _ = closed.await;
                            })
                            .await
                        }
                        Err(e) => eprintln!("warning: the page cannot be served: {e}"),
                    }
                })
            })
            .context("cannot start the page's thread")?;
        self.server = Some((closing, thread));
        Ok(())
    }

    /// Stops serving the page: the requests in flight are answered, the
    /// event streams end.
    pub fn close(mut self) {
        if let Some((closing, thread)) = self.server.take() {
            self.shared.closing.send_replace(true);
            let _ = closing.send(());
            let _ = thread.join();
        }
    }

    fn router(&self) -> Router {
        let shared = self.shared.clone();
        Router::new()
            .route("/", get(watch_page))
            .route(
                "/watch.js",
                get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
            )
            .route(
                "/watch.css",
                get(|| async { page(STYLE, "text/css; charset=utf-8") }),
            )
            .route("/events", get(events))
            .route("/units", get(units_png))
            .route("/stop", post(stop))
            .fallback(pad)
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                here_only,
            ))
            .with_state(shared)
    }

    /// Tells the page how the run ended; with `model`, the pad answers with
    /// it from now on (`test`: MNIST's test images, for its random digit).
    pub fn ended(&self, how: &str, message: &str, model: Option<&Model>, test: Option<Split>) {
        self.shared.ended.store(true, Ordering::SeqCst);
        if let Some(m) = model {
            let service = Service::new(m, test, self.shared.limits);
            let _ = self.shared.pad.set(service.router());
        }
        self.shared.say(
            "end",
            json!({"outcome": how, "message": message, "pad": model.is_some(),
                   "elapsed_s": self.started.elapsed().as_secs_f64()}),
        );
    }
}

impl Observer for Watch {
    fn step(&mut self, done: usize, total: usize, loss: f64) {
        if self.plan.minibatch {
            self.losses = (self.losses.0 + loss, self.losses.1 + 1);
        }
        let now = Instant::now();
        if self
            .last_progress
            .is_some_and(|t| now - t < PROGRESS_EVERY && done < total)
        {
            return;
        }
        self.last_progress = Some(now);
        let elapsed = (now - self.started).as_secs_f64();
        let steps = done.saturating_sub(self.plan.done);
        let per_s = steps as f64 / elapsed.max(1e-9);
        let (sum, n) = std::mem::take(&mut self.losses);
        self.shared.say(
            "progress",
            json!({
                "step": done,
                "loss": (n > 0).then(|| sum / n as f64),
                "epoch": done as f64 / self.plan.steps_per_epoch.max(1) as f64,
                "images_per_s": per_s * self.plan.batch as f64,
                "elapsed_s": elapsed,
                "eta_s": (total - done) as f64 / per_s.max(1e-9),
            }),
        );
    }

    fn eval(&mut self, r: &EvalRecord) -> anyhow::Result<()> {
        self.shared.say("eval", serde_json::to_value(r)?);
        Ok(())
    }

    fn looks(&self) -> bool {
        true
    }

    fn look(&mut self, look: &Look<'_>) -> anyhow::Result<()> {
        let split = look.split;
        let shown = split.len().min(DIGITS);
        if !std::mem::replace(&mut self.shown_digits, true) {
            let digits: Vec<Value> = (0..shown)
                .map(|i| json!({"label": split.labels[i], "pixels": hex(&split.image(i))}))
                .collect();
            let side = (split.features as f64).sqrt() as usize;
            self.shared.say(
                "digits",
                json!({"split": look.split_name, "side": side, "digits": digits}),
            );
        }
        let grids = units::grids(look.layout, look.params).unwrap_or_default();
        let labels: Vec<String> = grids.iter().map(|g| g.label.clone()).collect();
        *self.shared.units.lock().unwrap_or_else(|p| p.into_inner()) = grids;
        self.shared.say(
            "look",
            json!({
                "iter": look.record.iter,
                "units": labels,
                "answers": &look.predicted[..shown],
                "confusion": confusion(&split.labels, look.predicted),
                "split": look.split_name,
            }),
        );
        Ok(())
    }
}

/// A token of 128 bits from the system's random source (the time and
/// process id where there is none).
fn token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let z = crate::nn::dropout::mix64(t.as_nanos() as u64 ^ u64::from(std::process::id()));
        bytes[..8].copy_from_slice(&z.to_le_bytes());
        bytes[8..].copy_from_slice(&crate::nn::dropout::mix64(z).to_le_bytes());
    }
    hex_bytes(&bytes)
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An image's pixels (0..1) as bytes in hexadecimal.
fn hex(pixels: &[f32]) -> String {
    let bytes: Vec<u8> = pixels
        .iter()
        .map(|p| (p * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect();
    hex_bytes(&bytes)
}

/// `GET /`: the page, with this run's token in it.
async fn watch_page(State(s): State<Arc<Shared>>) -> Response {
    let body = PAGE.replace("{{token}}", &s.token);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// `GET /events`.
async fn events(
    State(s): State<Arc<Shared>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (past, rx) = {
        let h = s.history.lock().unwrap_or_else(|p| p.into_inner());
        (h.replay(), s.live.subscribe())
    };
    // Live events until the page closes, then those already sent; a
    // browser that lags behind ends its stream, and on reconnecting gets the
    // whole history again.
    let closing = s.closing.subscribe();
    let live = stream::unfold(
        (rx, closing, false),
        |(mut rx, mut closing, closed)| async move {
            if !closed {
                let got = tokio::select! {
                    biased;
                    got = rx.recv() => Some(got),
                    _ = closing.wait_for(|c| *c) => None,
                };
                if let Some(got) = got {
                    return got.ok().map(|said| (said, (rx, closing, false)));
                }
            }
            let said = rx.try_recv().ok()?;
            Some((said, (rx, closing, true)))
        },
    );
    let all = stream::iter(past)
        .chain(live)
        .map(|said| Ok(Event::default().event(said.kind).data(&*said.data)));
    // Comments in the quiet times keep the connection within the idle limit.
    let every = (s.limits.idle / 2).max(Duration::from_millis(100));
    Sse::new(all).keep_alive(KeepAlive::new().interval(every))
}

#[derive(Deserialize)]
struct Branch {
    branch: usize,
}

/// `GET /units?branch=B`.
async fn units_png(State(s): State<Arc<Shared>>, Query(b): Query<Branch>) -> Response {
    let grid = s
        .units
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(b.branch)
        .cloned();
    let Some(grid) = grid else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no picture of branch {} (yet)", b.branch),
        );
    };
    match tokio::task::spawn_blocking(move || grid.png()).await {
        Ok(Ok(png)) => (
            [
                (header::CONTENT_TYPE, "image/png"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            png,
        )
            .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// Whether a request's `Host` names this machine by address or as
/// `localhost`: a page of another site whose name was made to point here
/// (DNS rebinding) names its own host.
fn addressed_here(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

/// Every request, on a loopback address: refused unless addressed to it.
async fn here_only(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if s.loopback.load(Ordering::SeqCst) && !addressed_here(req.headers()) {
        return error(
            StatusCode::FORBIDDEN,
            "this page answers only at this machine's own address (127.0.0.1 or localhost)",
        );
    }
    next.run(req).await
}

/// `POST /stop`.
async fn stop(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let given = headers.get("x-watch-token").and_then(|v| v.to_str().ok());
    if given != Some(s.token.as_str()) {
        return error(
            StatusCode::FORBIDDEN,
            "Stop needs this run's token (X-Watch-Token), which only its page has",
        );
    }
    if s.ended.load(Ordering::SeqCst) {
        return error(StatusCode::CONFLICT, "the run has already ended");
    }
    s.stop.store(true, Ordering::SeqCst);
    Json(json!({"stopping": true})).into_response()
}

/// Everything else: the drawing pad's page (at `/pad`) and API, once the
/// run has a model.
async fn pad(State(s): State<Arc<Shared>>, mut req: Request) -> Response {
    let Some(router) = s.pad.get() else {
        let known = ["/pad", "/app.js", "/style.css", "/healthz"];
        let path = req.uri().path();
        if known.contains(&path) || path.starts_with("/api/") {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the model is still training: the pad answers once the run ends",
            );
        }
        return error(StatusCode::NOT_FOUND, "no such page or API");
    };
    if req.uri().path() == "/pad" {
        *req.uri_mut() = Uri::from_static("/");
    }
    match router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> Watch {
        let plan = Plan {
            network: "784 -> 10".into(),
            total_steps: 10,
            steps_per_epoch: 10,
            done: 0,
            batch: 1,
            minibatch: true,
            config: String::new(),
        };
        Watch::new(plan, Arc::default(), Limits::default())
    }

    #[test]
    fn a_long_history_is_thinned_keeping_every_record_in_order() {
        let w = watch();
        for i in 0..=MOST_PROGRESS {
            w.shared.say("progress", json!(i));
            if i % 1000 == 0 {
                w.shared.say("eval", json!({"at": i}));
            }
        }
        let h = w.shared.history.lock().unwrap();
        let kinds: Vec<&str> = h.kept.iter().map(|e| e.kind).collect();
        assert_eq!(kinds[0], "start");
        assert_eq!(kinds.iter().filter(|k| **k == "eval").count(), 5);
        let progress: Vec<usize> = h
            .kept
            .iter()
            .filter(|e| e.kind == "progress")
            .map(|e| e.data.parse().unwrap())
            .collect();
        assert_eq!(progress.len(), MOST_PROGRESS / 2 + 1);
        assert_eq!(h.progress, progress.len());
        assert!(progress.windows(2).all(|p| p[0] < p[1]), "in order");
        assert_eq!(progress.last(), Some(&MOST_PROGRESS));
        // Each evaluation still follows the progress event said before it.
        let at = |kind: &str, data: &str| {
            h.kept
                .iter()
                .position(|e| e.kind == kind && &*e.data == data)
        };
        assert!(at("eval", r#"{"at":2000}"#) > at("progress", "1999"));
    }

    #[test]
    fn only_requests_addressed_to_this_machine_are_here() {
        let with = |host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, host.parse().unwrap());
            addressed_here(&h)
        };
        for host in [
            "127.0.0.1:8080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "10.0.0.2",
        ] {
            assert!(with(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example:80",
        ] {
            assert!(!with(host), "{host}");
        }
        assert!(!addressed_here(&HeaderMap::new()));
    }
}
