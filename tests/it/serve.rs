//! `scratchnet serve` over real HTTP on 127.0.0.1 (a free port): real MNIST
//! test digits sent as PNG and as pixels come back right and exactly as the
//! library and `scratchnet predict` answer them, every error has its status
//! and a JSON message, the server answers after each bad request,
//! concurrent clients all get right answers, SIGTERM stops it cleanly,
//! answering the requests in flight first, and slow, stalled and idle
//! clients are closed within the limits while others are answered.

use crate::common;

use crate::common::{mnist, Server};
use scratchnet::backend::{logits, Target};
use scratchnet::model_io::Model;
use scratchnet::nn::softmax_ce::softmax;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

/// Test image `i` as a PNG (as a user's file would come).
fn png(i: usize) -> Vec<u8> {
    let img = image::GrayImage::from_fn(28, 28, |x, y| {
        let v = mnist().test.image(i)[(y * 28 + x) as usize];
        image::Luma([(v * 256.0).min(255.0) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn pixels(i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"pixels": mnist().test.image(i)})).unwrap()
}

fn probabilities(answer: &Value) -> Vec<f64> {
    let p = answer["probabilities"].as_array().unwrap();
    p.iter().map(|v| v.as_f64().unwrap()).collect()
}

/// The largest absolute difference between two lists of probabilities.
fn apart(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn argmax(p: &[f64]) -> u64 {
    (0..p.len()).fold(0, |best, i| if p[i] > p[best] { i } else { best }) as u64
}

/// The server answers as the library does: for 100 test digits sent as
/// pixels, the probabilities the library computes for those pixels; sent
/// as PNG, what `scratchnet predict --csv` prints for the same file (to 8
/// decimals); and the digit is their argmax. Each image is asked of the
/// library alone, as the server takes it: the matrix library sums batches
/// of under 32 rows in another order, which moves a batched image's
/// probabilities by up to 6e-7. Seen (2026-12-06): pixels 2.9e-8, PNG
/// 3.0e-8: the same bits, printed as decimals (JSON, CSV).
#[test]
fn answers_are_the_librarys_answers() {
    let s = Server::start(&[]);
    let n = 100;
    let model = Model::load(&s.model).unwrap();
    let test = &mnist().test;
    let dir = tempfile::tempdir().unwrap();
    let (mut worst_pixels, mut worst_png) = (0.0f64, 0.0f64);
    for i in 0..n {
        let mut library =
            logits(Target::cpu(2), &model.layout, &model.params, &test.image(i)).unwrap();
        softmax(&mut library, 10);
        let library: Vec<f64> = library.iter().map(|&v| v as f64).collect();
        let (status, a) = s.call("POST", "/api/predict", Some("application/json"), &pixels(i));
        assert_eq!(status, 200, "{a}");
        let p = probabilities(&a);
        worst_pixels = worst_pixels.max(apart(&p, &library));
        assert_eq!(a["digit"], argmax(&p), "image {i} as pixels");

        let file = dir.path().join(format!("{i:03}.png"));
        std::fs::write(&file, png(i)).unwrap();
        let csv = common::predict_csv(&s.model, &[&file]);
        let row = csv.lines().nth(1).unwrap_or_else(|| panic!("{csv}"));
        let want: Vec<f64> = row
            .split(',')
            .skip(2)
            .take(10)
            .map(|v| v.parse().unwrap())
            .collect();
        let (status, a) = s.call("POST", "/api/predict", Some("image/png"), &png(i));
        assert_eq!(status, 200, "{a}");
        let p = probabilities(&a);
        worst_png = worst_png.max(apart(&p, &want));
        assert_eq!(a["digit"], argmax(&p), "image {i} as PNG");
    }
    println!("apart from the library: pixels {worst_pixels:.1e}, PNG (against predict --csv) {worst_png:.1e}");
    assert!(worst_pixels <= 3e-7 && worst_png <= 3e-7);
}

/// Method, path, content type, body, the status expected and a part of the
/// message.
type BadRequest = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Vec<u8>,
    u16,
    &'static str,
);

#[test]
fn every_bad_request_gets_its_status_and_the_server_goes_on() {
    let s = Server::start(&["--max-body", "20000"]);
    let bad: Vec<BadRequest> = vec![
        (
            "POST",
            "/api/predict",
            Some("image/png"),
            b"not an image".to_vec(),
            400,
            "cannot read as an image",
        ),
        (
            "POST",
            "/api/predict",
            None,
            png(0)[..60].to_vec(),
            400,
            "cannot read as an image",
        ),
        (
            "POST",
            "/api/predict",
            Some("application/json"),
            b"{\"pixels\": [".to_vec(),
            400,
            "not the JSON expected",
        ),
        (
            "POST",
            "/api/predict",
            Some("application/json"),
            b"{\"pics\": []}".to_vec(),
            400,
            "not the JSON expected",
        ),
        (
            "POST",
            "/api/predict",
            Some("application/json"),
            b"{\"pixels\": [0.5, 0.5]}".to_vec(),
            400,
            "expected 784 pixels, got 2",
        ),
        (
            "POST",
            "/api/predict",
            Some("application/json"),
            format!("{{\"pixels\": [NaN{}]}}", ", 0".repeat(783)).into_bytes(),
            400,
            "not the JSON expected",
        ),
        (
            "POST",
            "/api/predict",
            Some("application/json"),
            format!("{{\"pixels\": [2.5{}]}}", ", 0".repeat(783)).into_bytes(),
            400,
            "pixel 0 is 2.5",
        ),
        (
            "POST",
            "/api/predict",
            Some("image/png"),
            vec![0u8; 30_000],
            413,
            "over the limit of 20000 bytes",
        ),
        (
            "POST",
            "/api/predict",
            Some("image/png"),
            image_of_blank(),
            400,
            "no digit found: the image is blank",
        ),
        // The same blank picture as pixels gets the same answer.
        (
            "POST",
            "/api/predict",
            Some("application/json"),
            format!("{{\"pixels\": [0{}]}}", ", 0".repeat(783)).into_bytes(),
            400,
            "no digit found: the image is blank",
        ),
        ("GET", "/api/nothing", None, Vec::new(), 404, "no such"),
        ("GET", "/api/predict", None, Vec::new(), 405, "not allowed"),
        ("DELETE", "/api/model", None, Vec::new(), 405, "not allowed"),
        (
            "GET",
            "/api/random?index=10000",
            None,
            Vec::new(),
            400,
            "10000 test images",
        ),
    ];
    for (method, path, kind, body, want, message) in bad {
        let (status, v) = s.call(method, path, kind, &body);
        assert_eq!(status, want, "{method} {path}: {v}");
        let e = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: {v}"));
        assert!(e.contains(message), "{method} {path}: {e}");
        s.healthy();
    }
}

/// `curl -F file=@digit.png` sends a form: its file is the image; a form
/// without one is a clear error.
#[test]
fn a_form_upload_is_read_as_its_file() {
    let s = Server::start(&[]);
    let form = |parts: &[(&str, Option<&str>, &[u8])]| {
        let mut body = Vec::new();
        for (name, file, data) in parts {
            body.extend(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
            body.extend(name.as_bytes());
            body.push(b'"');
            if let Some(f) = file {
                body.extend(format!("; filename=\"{f}\"\r\nContent-Type: image/png").as_bytes());
            }
            body.extend(b"\r\n\r\n");
            body.extend(*data);
            body.extend(b"\r\n");
        }
        body.extend(b"--XyZ--\r\n");
        body
    };
    let kind = Some("multipart/form-data; boundary=XyZ");
    let (_, direct) = s.call("POST", "/api/predict", Some("image/png"), &png(3));
    let body = form(&[("note", None, b"a three"), ("file", Some("d.png"), &png(3))]);
    let (status, a) = s.call("POST", "/api/predict", kind, &body);
    assert_eq!(status, 200, "{a}");
    assert_eq!(a, direct);
    let (status, a) = s.call("POST", "/api/predict", kind, &form(&[]));
    assert_eq!(status, 400, "{a}");
    assert!(a["error"].as_str().unwrap().contains("no parts"), "{a}");
    s.healthy();
}

fn image_of_blank() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(40, 40, image::Luma([200]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn concurrent_clients_all_get_right_answers() {
    let s = Server::start(&["--threads", "2"]);
    // What one client alone is told, per test image.
    let alone: Vec<Value> = (0..40)
        .map(|i| {
            s.call("POST", "/api/predict", Some("application/json"), &pixels(i))
                .1["digit"]
                .clone()
        })
        .collect();
    std::thread::scope(|scope| {
        for t in 0..16 {
            let (s, alone) = (&s, &alone);
            scope.spawn(move || {
                for k in 0..25 {
                    let i = (t * 7 + k) % 40;
                    let (status, a) = match k % 2 {
                        0 => s.call("POST", "/api/predict", Some("application/json"), &pixels(i)),
                        _ => s.call("POST", "/api/predict", Some("image/png"), &png(i)),
                    };
                    assert_eq!(status, 200, "{a}");
                    if k % 2 == 0 {
                        assert_eq!(a["digit"], alone[i], "client {t}, image {i}");
                    }
                }
            });
        }
    });
    s.healthy();
}

/// Test image `i` drawn `side` pixels wide (nearest neighbour), as a PNG: a
/// big picture takes a while to decode and prepare.
fn big_png(i: usize, side: u32) -> Vec<u8> {
    let digit = mnist().test.image(i);
    let img = image::GrayImage::from_fn(side, side, |x, y| {
        let (c, r) = ((x * 28 / side) as usize, (y * 28 / side) as usize);
        image::Luma([255 - (digit[r * 28 + c] * 256.0).min(255.0) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// SIGTERM while requests are in flight: every one is answered, right,
/// and then the server exits cleanly. The requests are slow for their
/// size (6000x6000 pictures: decoding and preparing each takes about a
/// second of the server's two threads), so they are still being computed
/// when the signal comes.
#[test]
fn sigterm_answers_the_requests_in_flight_then_stops() {
    let mut s = Server::start(&["--threads", "2"]);
    let clients = 6;
    let addr = s.url.trim_start_matches("http://").to_string();
    let bodies: Vec<Vec<u8>> = (0..clients).map(|i| big_png(i, 6000)).collect();
    let (sent_tx, sent_rx) = std::sync::mpsc::channel();
    let answers: Vec<(Instant, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bodies
            .iter()
            .map(|body| {
                let (addr, sent) = (&addr, sent_tx.clone());
                scope.spawn(move || {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    let head = format!(
                        "POST /api/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    c.write_all(head.as_bytes()).unwrap();
                    c.write_all(body).unwrap();
                    sent.send(()).unwrap();
                    let mut answer = String::new();
                    c.read_to_string(&mut answer).unwrap();
                    (Instant::now(), answer)
                })
            })
            .collect();
        for _ in 0..clients {
            sent_rx.recv().unwrap();
        }
        // Every request is written; the server reads a request's head as
        // it comes, and computes for seconds.
        std::thread::sleep(Duration::from_millis(200));
        let signalled = Instant::now();
        let pid = s.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let answers: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let after = answers.iter().filter(|(t, _)| *t > signalled).count();
        assert!(
            after > 0,
            "every request was answered before the signal: not in flight"
        );
        println!("{after} of {clients} requests answered after SIGTERM");
        answers
    });
    for (i, (_, answer)) in answers.iter().enumerate() {
        assert!(answer.starts_with("HTTP/1.1 200"), "request {i}: {answer}");
        let body = &answer[answer.find("\r\n\r\n").unwrap() + 4..];
        let v: Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["digit"], mnist().test.labels[i], "request {i}");
    }
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A connection that sent `bytes` and then stalls.
fn stalled(addr: &str, bytes: &[u8]) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(bytes).unwrap();
    c
}

/// Reads `c` until the server closes it (at most 20 s); the seconds from
/// `since` and what the server sent.
fn closed_after(mut c: TcpStream, since: Instant) -> (f64, String) {
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!(
                "still open after 20 s ({e}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    (
        since.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&got).into(),
    )
}

/// Each kind of slow client is closed by its own limit: not before it (the
/// clock starts before the client acts, so before the server's does), and
/// not by another limit (idle 1 s, body 3 s and head 5 s; the idle cases
/// must close before the head limit could). A client that connects and
/// sends nothing and a keep-alive connection after its answer: idle; half
/// a request's head: head; a body that stops short: a 408 at the body's.
#[test]
fn slow_stalled_and_idle_clients_are_closed_within_their_limits() {
    let s = Server::start(&[
        "--idle-timeout",
        "1",
        "--head-timeout",
        "5",
        "--body-timeout",
        "3",
    ]);
    let addr = s.url.trim_start_matches("http://").to_string();
    let half_head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n");
    let short_body = format!(
        "POST /api/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123456789"
    );
    let whole = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let after_sending = |bytes: &[u8]| {
        let since = Instant::now();
        closed_after(stalled(&addr, bytes), since)
    };
    let cases: Vec<(&str, f64, f64, (f64, String))> = std::thread::scope(|scope| {
        let silent = scope.spawn(|| after_sending(b""));
        let head = scope.spawn(|| after_sending(half_head.as_bytes()));
        let body = scope.spawn(|| after_sending(short_body.as_bytes()));
        let kept = scope.spawn(|| {
            let since = Instant::now();
            let mut c = stalled(&addr, whole.as_bytes());
            let mut answer = [0u8; 1024];
            let n = c.read(&mut answer).unwrap();
            let text = String::from_utf8_lossy(&answer[..n]).to_string();
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            closed_after(c, since)
        });
        vec![
            ("sends nothing", 1.0, 5.0, silent.join().unwrap()),
            ("sends half a head", 5.0, 20.0, head.join().unwrap()),
            ("stops its body short", 3.0, 20.0, body.join().unwrap()),
            (
                "is kept alive after its answer",
                1.0,
                5.0,
                kept.join().unwrap(),
            ),
        ]
    });
    for (what, limit, next, (after, _)) in &cases {
        println!("a client that {what}: closed after {after:.2} s (limit {limit} s)");
        assert!(
            after >= limit && after < next,
            "a client that {what}: closed after {after:.2} s, its limit {limit} s"
        );
    }
    let (_, _, _, (_, sent)) = &cases[2];
    assert!(sent.starts_with("HTTP/1.1 408"), "{sent}");
    assert!(sent.contains("--body-timeout"), "{sent}");
    s.healthy();
}

/// 2,000 connections that sent half a request and stall, on a server with
/// the default limits started with a soft limit of 1,024 open files (so it
/// must raise its own): it keeps them all, and answers a normal client.
#[test]
fn the_server_answers_a_client_while_2000_connections_stall() {
    let want = 2_500;
    let allowed = scratchnet::serve::raise_open_files(want);
    if allowed < want {
        return common::skipped(
            "serve::the_server_answers_a_client_while_2000_connections_stall",
            &format!("it opens {want} files; this system allows {allowed}"),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let model = common::trained_model(dir.path(), json!({"epochs": 1}));
    let (mut child, url) = common::serving(
        Command::new("sh")
            .args(["-c", "ulimit -Sn 1024 && exec \"$0\" \"$@\""])
            .arg(common::bin())
            .args(["serve", "--addr", "127.0.0.1:0", "--model"])
            .arg(&model),
    );
    let addr = url.trim_start_matches("http://").to_string();
    let half_head = format!("POST /api/predict HTTP/1.1\r\nHost: {addr}\r\nContent-Len");
    let stalls: Vec<TcpStream> = (0..2000)
        .map(|_| stalled(&addr, half_head.as_bytes()))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let answer = agent
        .get(format!("{url}/healthz"))
        .call()
        .and_then(|mut r| r.body_mut().read_to_string());
    // The stalled ones were all kept: a read finds nothing yet, not the end.
    let lost: Vec<String> = stalls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.set_nonblocking(true).unwrap();
            match (&*c).read(&mut [0u8; 16]) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
                other => Some(format!("{i}: {other:?}")),
            }
        })
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.unwrap(), r#"{"status":"ok"}"#);
    assert!(
        lost.is_empty(),
        "{} stalled connections not kept, among them {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Past `--max-connections` a client gets a 503 that names the flag; once
/// the connections holding the server close, it answers again.
#[test]
fn past_the_cap_on_connections_a_client_gets_503() {
    let s = Server::start(&["--max-connections", "8"]);
    let addr = s.url.trim_start_matches("http://").to_string();
    // Connections are accepted in order: these 8 take every place.
    let held: Vec<TcpStream> = (0..8).map(|_| stalled(&addr, b"")).collect();
    let (status, answer) = s.call("GET", "/healthz", None, b"");
    assert_eq!(status, 503, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("--max-connections"),
        "{answer}"
    );
    drop(held);
    let due = Instant::now() + Duration::from_secs(10);
    while s.call("GET", "/healthz", None, b"").0 != 200 {
        assert!(
            Instant::now() < due,
            "still refused 10 s after the 8 closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
