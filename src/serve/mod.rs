//! A trained network over HTTP: a page to draw a digit on and watch the
//! network read it, and a small JSON API.
//!
//! - `GET /`: the page (HTML, CSS and JS built into the binary).
//! - `POST /api/predict`: an image (PNG, JPEG, BMP, PGM bytes), prepared as
//!   `scratchnet predict` prepares a file, or JSON `{"pixels": [784 numbers
//!   in 0..1]}` taken as they are; answers
//!   `{"digit", "probabilities": [10], "prepared": [784]}`.
//! - `GET /api/random`: a random MNIST test image with its label and the
//!   answer (`?index=N` for a given one).
//! - `GET /api/model`: architecture, size, test accuracy, training.
//! - `GET /healthz`.
//!
//! Errors are JSON `{"error": "..."}` with their status: 400 for a body
//! that is not an image or not the JSON expected, 408 for a body that does
//! not arrive in time, 413 for a body over the limit, 404, 405, and 503
//! past the cap on connections ([`Limits`]). Inference runs on the
//! runtime's blocking threads, never on the threads that serve connections.

mod classifier;
mod listen;
mod watch;

pub use classifier::{Answer, Classifier};
pub use listen::MOST_CONNECTIONS;
pub use watch::{Plan, Watch};

use crate::data::Split;
use crate::model_io::Model;
use crate::train::{EvalRecord, TrainConfig, CONFIG_KEY, METRICS_KEY};
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// What one client may take of the server.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body: usize,
    /// Time to receive a request's head, from when the server starts
    /// waiting for it (the connection opened, or the last answer sent).
    pub head: Duration,
    /// Time to receive a request's body, from the end of its head.
    pub body: Duration,
    /// Time a connection may wait on the client with nothing owed to it:
    /// after it opens, between requests, or while the client reads no more
    /// of an answer. At or above `head`, an idle connection is closed at
    /// `head` instead.
    pub idle: Duration,
    /// Connections open at once, 1 to [`MOST_CONNECTIONS`] (a value outside
    /// is taken as the nearest end).
    pub connections: usize,
}

impl Limits {
    /// Descriptors a server keeps beside its connections: the listener,
    /// the runtime's, the standard streams, files it reads, and the
    /// connections being refused.
    const SPARE_FILES: usize = 64 + listen::REFUSING;

    /// Raises this process's limit on open files so that `connections`
    /// fit; where the system allows fewer, lowers `connections` to what
    /// fits and says so.
    pub fn fit_open_files(&mut self) -> Option<String> {
        let want = self.connections + Self::SPARE_FILES;
        let allowed = raise_open_files(want);
        if allowed >= want {
            return None;
        }
        let fit = allowed.saturating_sub(Self::SPARE_FILES).max(1);
        let said = format!(
            "--max-connections {}: this process may open {allowed} files; serving at most {fit} connections",
            self.connections
        );
        self.connections = fit;
        Some(said)
    }
}

/// Raises this process's soft limit on open files toward `want`, within
/// the hard limit; returns the limit now in force.
#[cfg(unix)]
pub fn raise_open_files(want: usize) -> usize {
    let want = want as libc::rlim_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the call to fill in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return usize::MAX;
    }
    if limit.rlim_cur < want {
        let raised = libc::rlimit {
            rlim_cur: want.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit, its soft limit within the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
}

/// Elsewhere the limit is not known here: taken as enough.
#[cfg(not(unix))]
pub fn raise_open_files(_want: usize) -> usize {
    usize::MAX
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_body: 4 << 20,
            head: Duration::from_secs(30),
            body: Duration::from_secs(30),
            idle: Duration::from_secs(10),
            connections: 4096,
        }
    }
}

/// What the server serves.
pub struct Service {
    classifier: Classifier,
    /// What `GET /api/model` answers.
    facts: Value,
    /// MNIST's test images, for `GET /api/random`.
    test: Option<Split>,
    limits: Limits,
    /// State of the random-digit draws.
    draws: AtomicU64,
}

/// The page and its parts, built into the binary.
const PAGE: &str = include_str!("../../assets/serve/index.html");
const SCRIPT: &str = include_str!("../../assets/serve/app.js");
const STYLE: &str = include_str!("../../assets/serve/style.css");

impl Service {
    /// Serves `model`; `test`: MNIST's test images, if at hand (the random
    /// digit, and the test accuracy when the model does not record it);
    /// clients held to `limits`.
    pub fn new(model: &Model, test: Option<Split>, limits: Limits) -> Service {
        let classifier = Classifier::new(model);
        let facts = facts(model, &classifier, test.as_ref());
        Service {
            classifier,
            facts,
            test,
            limits,
            draws: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Serves on `listener` until `stop` resolves, then answers the
    /// requests in flight and returns once every connection has closed.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        let limits = self.limits;
        listen::run(listener, self.router(), limits, stop).await
    }

    /// The routes, over this service.
    fn router(self) -> Router {
        Router::new()
            .route(
                "/",
                get(|| async { page(PAGE, "text/html; charset=utf-8") }),
            )
            .route(
                "/app.js",
                get(|| async { page(SCRIPT, "text/javascript; charset=utf-8") }),
            )
            .route(
                "/style.css",
                get(|| async { page(STYLE, "text/css; charset=utf-8") }),
            )
            .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
            .route("/api/model", get(model_facts))
            .route("/api/predict", post(predict))
            .route("/api/random", get(random))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such page or API") })
            .method_not_allowed_fallback(|| async {
                error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "this method is not allowed here",
                )
            })
            .with_state(Arc::new(self))
    }
}

fn page(body: &'static str, kind: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

/// A JSON error with its status.
fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

async fn model_facts(State(s): State<Arc<Service>>) -> Json<Value> {
    Json(s.facts.clone())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pixels {
    pixels: Vec<f32>,
}

/// `POST /api/predict`.
async fn predict(State(s): State<Arc<Service>>, headers: HeaderMap, req: Request) -> Response {
    let bytes = match read_body(req.into_body(), &s.limits).await {
        Ok(b) => b,
        Err(response) => return response,
    };
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = kind.starts_with("application/json");
    // A form's upload (`curl -F file=@digit.png`): its first file.
    let bytes = match kind.starts_with("multipart/form-data") {
        true => match first_file(kind, bytes).await {
            Ok(b) => b,
            Err(why) => return error(StatusCode::BAD_REQUEST, why),
        },
        false => bytes,
    };
    let service = s.clone();
    // Decoding, preparing and the forward pass run off the connections'
    // threads.
    let answer = tokio::task::spawn_blocking(move || match json {
        true => serde_json::from_slice::<Pixels>(&bytes)
            .map_err(|e| {
                format!("not the JSON expected, {{\"pixels\": [784 numbers in 0..1]}}: {e}")
            })
            .and_then(|p| {
                service
                    .classifier
                    .classify(p.pixels)
                    .map_err(|e| format!("{e:#}"))
            }),
        false => service
            .classifier
            .classify_image(&bytes)
            .map_err(|e| format!("{e:#}")),
    })
    .await;
    match answer {
        Ok(Ok(a)) => Json(a).into_response(),
        Ok(Err(why)) => error(StatusCode::BAD_REQUEST, why),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// The first file of a `multipart/form-data` body (the part with a file
/// name, else the first part).
async fn first_file(kind: &str, body: Bytes) -> Result<Bytes, String> {
    let boundary = multer::parse_boundary(kind)
        .map_err(|e| format!("a multipart upload without its boundary ({e})"))?;
    let stream = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut first = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| format!("not a multipart form ({e})"))?
    {
        let named = field.file_name().is_some();
        let data = field
            .bytes()
            .await
            .map_err(|e| format!("a multipart part could not be read ({e})"))?;
        if named {
            return Ok(data);
        }
        first.get_or_insert(data);
    }
    first.ok_or_else(|| "a multipart form with no parts: send the image as its file".into())
}

/// The body, up to `limits.max_body` bytes, within `limits.body`. Past the
/// size limit the rest is read and dropped (up to a bound) before the 413
/// goes out: a client still sending when the connection closed would get a
/// reset instead of the answer.
async fn read_body(body: Body, limits: &Limits) -> Result<Bytes, Response> {
    let max = limits.max_body;
    let due = tokio::time::Instant::now() + limits.body;
    let mut stream = body.into_data_stream();
    let (mut kept, mut seen) = (Vec::new(), 0usize);
    loop {
        let Ok(next) = tokio::time::timeout_at(due, stream.next()).await else {
            return Err(error(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the body did not arrive within {} s (--body-timeout)",
                    limits.body.as_secs_f64()
                ),
            ));
        };
        let Some(chunk) = next else { break };
        let Ok(chunk) = chunk else {
            return Err(error(StatusCode::BAD_REQUEST, "the body could not be read"));
        };
        seen += chunk.len();
        if seen <= max {
            kept.extend_from_slice(&chunk);
        } else if seen > max.saturating_mul(4).max(64 << 20) {
            break;
        }
    }
    if seen > max {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over the limit of {max} bytes (--max-body)"),
        ));
    }
    Ok(Bytes::from(kept))
}

#[derive(Deserialize)]
struct Pick {
    index: Option<usize>,
}

/// `GET /api/random`: a test image (at random, or `?index=N`), its label and
/// the network's answer.
async fn random(State(s): State<Arc<Service>>, Query(pick): Query<Pick>) -> Response {
    let Some(test) = &s.test else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no MNIST test images here (start with --data DIR)",
        );
    };
    let i = match pick.index {
        Some(i) if i >= test.len() => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("index {i}: there are {} test images", test.len()),
            )
        }
        Some(i) => i,
        None => {
            let z = s.draws.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
            (crate::nn::dropout::mix64(z) % test.len() as u64) as usize
        }
    };
    let (label, pixels) = (test.labels[i], test.image(i).into_owned());
    let service = s.clone();
    match tokio::task::spawn_blocking(move || service.classifier.classify(pixels)).await {
        Ok(Ok(a)) => Json(json!({"index": i, "label": label, "digit": a.digit,
            "probabilities": a.probabilities, "prepared": a.prepared}))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// What `GET /api/model` says: the architecture, the parameter count, the
/// test accuracy (as recorded, else measured on `test`), the training
/// configuration and how long it trained.
fn facts(model: &Model, classifier: &Classifier, test: Option<&Split>) -> Value {
    let meta = |k: &str| model.metadata.get(k);
    let recorded: Option<EvalRecord> = meta(METRICS_KEY).and_then(|m| serde_json::from_str(m).ok());
    let test_acc = recorded.as_ref().map(|r| r.test_acc).or_else(|| {
        test.map(|t| {
            let right = (0..t.len())
                .filter(|&i| {
                    classifier
                        .classify(t.image(i).into_owned())
                        .is_ok_and(|a| a.digit == t.labels[i])
                })
                .count();
            right as f64 / t.len().max(1) as f64
        })
    });
    let config: Option<TrainConfig> = meta(CONFIG_KEY).and_then(|c| serde_json::from_str(c).ok());
    let arch = &model.layout.arch;
    json!({
        "architecture": arch.to_string(),
        "arch": arch.spec(),
        "parameters": model.layout.len,
        "inputs": arch.inputs,
        "classes": arch.classes,
        "test_accuracy": test_acc,
        "validation_accuracy": recorded.as_ref().and_then(|r| r.val_acc),
        "steps": meta("scratchnet.steps").and_then(|s| s.parse::<u64>().ok()),
        "configuration": config.map(|c| c.to_toml()),
        "version": meta(crate::model_io::VERSION_KEY),
    })
}
