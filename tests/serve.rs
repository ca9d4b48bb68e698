//! `scratchnet serve` over real HTTP on 127.0.0.1 (a free port): real MNIST
//! test digits sent as PNG and as pixels come back right, every error has
//! its status and a JSON message, the server answers after each bad
//! request, concurrent clients all get right answers, and SIGTERM stops it
//! cleanly.

mod common;

use common::{mnist, Server};
use serde_json::{json, Value};
use std::process::Command;

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

#[test]
fn mnist_test_digits_as_png_and_as_pixels_come_back_right() {
    let s = Server::start(&[]);
    let test = &mnist().test;
    let n = 200;
    let (mut right_png, mut right_pixels) = (0, 0);
    for i in 0..n {
        let (status, a) = s.call("POST", "/api/predict", Some("image/png"), &png(i));
        assert_eq!(status, 200, "{a}");
        assert_eq!(a["probabilities"].as_array().unwrap().len(), 10);
        assert_eq!(a["prepared"].as_array().unwrap().len(), 784);
        right_png += (a["digit"] == test.labels[i]) as usize;
        let (status, a) = s.call("POST", "/api/predict", Some("application/json"), &pixels(i));
        assert_eq!(status, 200, "{a}");
        let sum: f64 = a["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-5, "probabilities sum to {sum}");
        // Pixels are taken as they are.
        assert_eq!(a["prepared"], json!(test.image(i)));
        right_pixels += (a["digit"] == test.labels[i]) as usize;
    }
    println!("right: {right_pixels} of {n} as pixels, {right_png} as PNG (prepared again)");
    // The model reaches ~97% on the whole test set; prepared again (cropped,
    // fitted, centred), the digits lose a little.
    assert!(right_pixels >= 190, "{right_pixels} of {n}");
    assert!(right_png >= 185, "{right_png} of {n}");
    let (status, r) = s.call("GET", "/api/random?index=7", None, b"");
    assert_eq!(status, 200);
    assert_eq!(
        (r["index"].as_u64(), r["label"].as_u64()),
        (Some(7), Some(test.labels[7] as u64))
    );
    let (_, m) = s.call("GET", "/api/model", None, b"");
    assert_eq!(m["parameters"], 160_474);
    assert!(m["test_accuracy"].as_f64().unwrap() > 0.95, "{m}");
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
            "blank",
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

fn image_of_blank() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::GrayImage::from_pixel(40, 40, image::Luma([200]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

#[test]
fn concurrent_clients_all_get_right_answers_and_sigterm_stops_cleanly() {
    let mut s = Server::start(&["--threads", "2"]);
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
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = s.child.wait().unwrap();
    assert!(status.success(), "{status}");
}
