//! A bounded load run of the prediction API on loopback (`cargo bench
//! --bench serve_load`): the server of `scratchnet serve`, in this process
//! on 2 threads, and 1, 8 and 64 keep-alive clients, each sending for a few
//! seconds; pixel bodies (JSON) and PNG bodies. Prints throughput, p50 and
//! p99 latency and failures. The clients share the machine's cores with the
//! server, so on 2 cores the figures are a floor.
//!
//! `SERVE_LOAD_SECONDS` (default 5) sets each run's length.

use scratchnet::backend::Target;
use scratchnet::data::Dataset;
use scratchnet::serve::{Limits, Service};
use scratchnet::train::{Observer, RunControl, TrainConfig, Trainer};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

struct Quiet;
impl Observer for Quiet {}

fn main() {
    let data = Dataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        Some(10_000),
    )
    .expect("the bundled MNIST");
    // A model trained for one epoch: load does not depend on its accuracy.
    let cfg = TrainConfig::resolve(None, json!({"epochs": 1})).unwrap();
    let mut t = Trainer::new(cfg, &data, Target::cpu(2), None).unwrap();
    let ctl = RunControl::default();
    t.run(&mut Quiet, &ctl).unwrap();
    let model = t.trained_model().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/api/predict", listener.local_addr().unwrap());
    let service = Service::new(&model, None, Limits::default());
    runtime.spawn(service.serve(listener, std::future::pending()));

    let image = data.test.image(0);
    let pixels = serde_json::to_vec(&json!({ "pixels": image })).unwrap();
    let png = {
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            image::Luma([(image[(y * 28 + x) as usize] * 256.0).min(255.0) as u8])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let seconds: u64 = std::env::var("SERVE_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!("| body | connections | requests/s | p50 | p99 | failed |");
    println!("|---|---|---|---|---|---|");
    for (what, body, kind) in [
        ("pixels (JSON)", &pixels, "application/json"),
        ("PNG", &png, "image/png"),
    ] {
        for clients in [1, 8, 64] {
            let (mut latencies, failed) =
                run(&url, body, kind, clients, Duration::from_secs(seconds));
            latencies.sort();
            let n = latencies.len();
            let at = |q: f64| latencies[((n as f64 * q) as usize).min(n - 1)];
            println!(
                "| {what} | {clients} | {:.0} | {:.2} ms | {:.2} ms | {failed} |",
                n as f64 / seconds as f64,
                at(0.50).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
            );
        }
    }
}

/// `clients` threads, each with its own keep-alive connection, sending
/// `body` for `length`; every request's latency, and how many failed.
fn run(
    url: &str,
    body: &[u8],
    kind: &str,
    clients: usize,
    length: Duration,
) -> (Vec<Duration>, usize) {
    let stop = AtomicBool::new(false);
    let results: Vec<(Vec<Duration>, usize)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                s.spawn(|| {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .into();
                    let (mut lat, mut failed) = (Vec::new(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let ok = agent
                            .post(url)
                            .header("Content-Type", kind)
                            .send(body)
                            .ok()
                            .filter(|r| r.status() == 200)
                            .and_then(|mut r| r.body_mut().read_to_vec().ok())
                            .is_some();
                        lat.push(t0.elapsed());
                        failed += !ok as usize;
                    }
                    (lat, failed)
                })
            })
            .collect();
        std::thread::sleep(length);
        stop.store(true, Ordering::Relaxed);
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let failed = results.iter().map(|r| r.1).sum();
    (results.into_iter().flat_map(|r| r.0).collect(), failed)
}
