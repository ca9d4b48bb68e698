//! The page of `scratchnet serve` in a real browser: headless Chromium
//! (Debian's `chromium`, driven through `chromedriver` with WebDriver
//! actions, which the browser turns into pointer events). Digits drawn on
//! the pad with a mouse and a pen, and an MNIST test digit traced as
//! strokes, are read right; the ten bars show; Clear, the random test digit
//! and an upload work; screenshots of a desktop and a phone-sized window go
//! to `target/tmp/screenshots/`.

#[path = "../../tests/it/common/mod.rs"]
mod common;

use common::{mnist, Server};
use fantoccini::actions::{
    InputSource, MouseActions, PenActions, PointerAction, MOUSE_BUTTON_LEFT,
};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver on a free port, stopped when dropped.
struct Driver(Child, u16);

impl Driver {
    fn start() -> Driver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver(child, port)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn browser(driver: &Driver, profile: &Path) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", format!("--user-data-dir={}", profile.display()),
            ],
        }
    });
    let caps = caps.as_object().unwrap().clone().into_iter().collect();
    // chromedriver on loopback speaks plain HTTP.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("a WebDriver connection to Chromium")
}

/// The pad's top-left corner in the viewport and its size, in CSS pixels.
async fn pad_rect(c: &Client) -> (f64, f64, f64) {
    let r = c
        .execute(
            "const r = document.getElementById('pad').getBoundingClientRect(); return [r.left, r.top, r.width];",
            vec![],
        )
        .await
        .unwrap();
    let v: Vec<f64> = serde_json::from_value(r).unwrap();
    (v[0], v[1], v[2])
}

/// Strokes on the pad, each a list of points in the pad's 280 x 280 frame,
/// drawn with a mouse, or a pen when `pen`.
async fn draw(c: &Client, strokes: &[Vec<(f64, f64)>], pen: bool) {
    let (left, top, width) = pad_rect(c).await;
    let at = |(x, y): (f64, f64)| (left + x * width / 280.0, top + y * width / 280.0);
    let mut actions = Vec::new();
    for s in strokes {
        let (x, y) = at(s[0]);
        actions.push(PointerAction::MoveTo {
            duration: None,
            x,
            y,
        });
        actions.push(PointerAction::Down {
            button: MOUSE_BUTTON_LEFT,
        });
        for &p in &s[1..] {
            let (x, y) = at(p);
            let duration = Some(Duration::from_millis(10));
            actions.push(PointerAction::MoveTo { duration, x, y });
        }
        actions.push(PointerAction::Up {
            button: MOUSE_BUTTON_LEFT,
        });
    }
    let result = if pen {
        let mut p = PenActions::new("pen".into());
        for a in actions {
            p = p.then(a);
        }
        c.perform_actions(p).await
    } else {
        let mut m = MouseActions::new("mouse".into());
        for a in actions {
            m = m.then(a);
        }
        c.perform_actions(m).await
    };
    result.unwrap();
}

/// Clicks the element with id `id`.
async fn click(c: &Client, id: &str) {
    c.find(Locator::Id(id))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// The text of the element with id `id`.
async fn text_of(c: &Client, id: &str) -> String {
    c.find(Locator::Id(id)).await.unwrap().text().await.unwrap()
}

/// The digit the page shows once it stops changing (the prediction follows
/// the drawing, debounced).
async fn shown_digit(c: &Client) -> String {
    let t0 = Instant::now();
    let mut last = String::new();
    let mut stable = 0;
    loop {
        let d = text_of(c, "digit").await;
        stable = if d == last && d != "–" {
            stable + 1
        } else {
            0
        };
        if stable >= 4 {
            return d;
        }
        last = d;
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "no answer shown (last: {last:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Ten bars, drawn: their fills' rendered widths, as fractions of their
/// tracks, sum to about 1 (the probabilities).
async fn ten_bars(c: &Client) {
    // Past the bars' transition.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let widths = c
        .execute(
            "return [...document.querySelectorAll('#bars .bar')].map(b => \
               b.querySelector('.fill').getBoundingClientRect().width / \
               b.querySelector('.track').getBoundingClientRect().width);",
            vec![],
        )
        .await
        .unwrap();
    let widths: Vec<f64> = serde_json::from_value(widths).unwrap();
    assert_eq!(widths.len(), 10);
    let sum: f64 = widths.iter().sum();
    assert!(
        (sum - 1.0).abs() < 0.02,
        "the bars' drawn widths sum to {sum}"
    );
}

async fn clear(c: &Client) {
    click(c, "clear").await;
    let d = text_of(c, "digit").await;
    assert_eq!(d, "–", "Clear leaves no answer");
}

/// Test image `i` traced as strokes: each row's runs of ink, left to right.
fn traced(i: usize) -> Vec<Vec<(f64, f64)>> {
    let img = mnist().test.image(i);
    let mut strokes = Vec::new();
    for y in 0..28 {
        let mut x = 0;
        while x < 28 {
            if img[y * 28 + x] > 0.35 {
                let x0 = x;
                while x < 28 && img[y * 28 + x] > 0.35 {
                    x += 1;
                }
                let (cy, a, b) = (
                    y as f64 * 10.0 + 5.0,
                    x0 as f64 * 10.0 + 5.0,
                    (x - 1) as f64 * 10.0 + 5.0,
                );
                strokes.push(vec![(a, cy), ((a + b) / 2.0, cy), (b, cy)]);
            }
            x += 1;
        }
    }
    strokes
}

/// Whether Chromium or chromedriver is missing (the skip of `test` is
/// then recorded).
fn no_browser(test: &str) -> bool {
    let missing = !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists();
    if missing {
        common::skip(
            test,
            "no Chromium and chromedriver (apt-get install chromium chromium-driver)",
        );
    }
    missing
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reads_digits_drawn_in_a_real_browser() {
    if no_browser("the_page_reads_digits_drawn_in_a_real_browser") {
        return;
    }
    // SCRATCHNET_SERVE_URL points the test at a server already running
    // (to take the screenshots with another model).
    let (server, url) = match std::env::var("SCRATCHNET_SERVE_URL") {
        Ok(url) => (None, url),
        Err(_) => {
            let s = tokio::task::spawn_blocking(|| Server::start(&[]))
                .await
                .unwrap();
            let url = s.url.clone();
            (Some(s), url)
        }
    };
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    c.set_window_size(1280, 900).await.unwrap();
    c.goto(&format!("{url}/")).await.unwrap();
    // The model's facts are shown.
    let t0 = Instant::now();
    loop {
        let facts = text_of(&c, "facts").await;
        if facts.contains("160,474") {
            assert!(facts.contains("relu 128"), "{facts}");
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "no facts: {facts}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A 1: one stroke down, with a mouse.
    draw(
        &c,
        &[vec![(140.0, 45.0), (140.0, 140.0), (140.0, 235.0)]],
        false,
    )
    .await;
    assert_eq!(shown_digit(&c).await, "1");
    ten_bars(&c).await;
    clear(&c).await;

    // A 7, with a pen: the bar, then the stem.
    let seven = [
        vec![(70.0, 55.0), (140.0, 55.0), (210.0, 55.0)],
        vec![(210.0, 55.0), (175.0, 145.0), (135.0, 240.0)],
    ];
    draw(&c, &seven, true).await;
    assert_eq!(shown_digit(&c).await, "7");
    ten_bars(&c).await;
    c.screenshot()
        .await
        .map(|png| std::fs::write(screenshots().join("serve-desktop.png"), png).unwrap())
        .unwrap();
    clear(&c).await;

    // MNIST test digits traced as strokes: read as their labels.
    for i in [0, 1, 3] {
        draw(&c, &traced(i), false).await;
        let label = mnist().test.labels[i].to_string();
        assert_eq!(shown_digit(&c).await, label, "test image {i}");
        clear(&c).await;
    }

    // The random test digit: its label and an answer.
    click(&c, "random").await;
    let digit = shown_digit(&c).await;
    assert!(digit.parse::<u8>().is_ok(), "{digit}");
    let source = text_of(&c, "source").await;
    assert!(
        source.contains("MNIST test image") && source.contains("labelled"),
        "{source}"
    );
    ten_bars(&c).await;
    clear(&c).await;

    // An upload: a PGM of a 2.
    let file = common::root().join("assets/examples/digit-1-label-2.pgm");
    c.find(Locator::Id("file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();
    assert_eq!(shown_digit(&c).await, "2");
    ten_bars(&c).await;

    // A phone-sized window: the same page, one column.
    c.set_window_size(390, 844).await.unwrap();
    let (_, _, width) = pad_rect(&c).await;
    assert!(width <= 390.0, "the pad fits the window ({width} px)");
    // The answer in view with the pad, without scrolling.
    c.execute("window.scrollTo(0, 0)", vec![]).await.unwrap();
    let seen = c
        .execute(
            "const r = document.getElementById('digit').getBoundingClientRect(); \
             return [r.bottom, window.innerHeight];",
            vec![],
        )
        .await
        .unwrap();
    let [bottom, height]: [f64; 2] = serde_json::from_value(seen).unwrap();
    assert!(
        bottom <= height,
        "the answer ends at {bottom} px, below the window's {height}"
    );
    c.screenshot()
        .await
        .map(|png| std::fs::write(screenshots().join("serve-phone.png"), png).unwrap())
        .unwrap();
    c.close().await.unwrap();
    drop(server);
}

/// A value the page computes, polled until `ready` holds of it.
async fn until(c: &Client, script: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v = c.execute(script, vec![]).await.unwrap();
        if ready(&v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "{what}: last {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The step of the first branch's picture shown, a hash of it as the
/// browser decoded it, and its size (null until there is one).
const UNITS: &str = "const img = document.querySelector('#units img'); \
    if (!img || !img.complete || !img.naturalWidth) return null; \
    const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight; \
    const x = c.getContext('2d'); x.drawImage(img, 0, 0); \
    const d = x.getImageData(0, 0, c.width, c.height).data; let h = 0; \
    for (let i = 0; i < d.length; i++) h = (Math.imul(h, 31) + d[i]) >>> 0; \
    return [+new URL(img.src).searchParams.get('iter'), h, c.width, c.height];";

/// `train --watch` in Chromium: while the default preset trains, the
/// curves gain points, the first layer's picture changes between two
/// evaluations, the digits show their answers; a reload (a late browser)
/// gets the whole history; Stop leaves a checkpoint `eval` reads; the pad
/// then answers on the same server. Screenshots at desktop and phone
/// sizes go beside the page's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_shows_a_run_learning_in_a_real_browser() {
    if no_browser("the_watch_page_shows_a_run_learning_in_a_real_browser") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let (run, url) = common::watching(
        Command::new(common::bin())
            .args([
                "train",
                "-q",
                "--watch",
                "--epochs",
                "300",
                "--eval-every",
                "50",
            ])
            .args(["--threads", "2", "--checkpoint"])
            .arg(&ck)
            .arg("--data")
            .arg(common::root().join("data/mnist"))
            .current_dir(dir.path()),
    );
    let mut run = Running(run);
    let driver = Driver::start();
    let profile = tempfile::tempdir().unwrap();
    let c = browser(&driver, profile.path()).await;
    c.set_window_size(1280, 1000).await.unwrap();
    c.goto(&format!("{url}/")).await.unwrap();

    let points =
        "return [window.watch.evals.length, +document.getElementById('loss').dataset.points || 0, \
                  +document.getElementById('accuracy').dataset.points || 0];";
    let before = until(&c, points, "two evaluations drawn", |v| {
        v[0].as_u64() >= Some(2)
    })
    .await;
    let first = until(&c, UNITS, "the units' picture", |v| !v.is_null()).await;
    assert_eq!(
        (&first[2], &first[3]),
        (&json!(463), &json!(231)),
        "{first}"
    );
    let later = until(&c, UNITS, "a later picture", |v| {
        !v.is_null() && v[0].as_u64() >= Some(first[0].as_u64().unwrap() + 500)
    })
    .await;
    assert_ne!(
        first[1], later[1],
        "the picture changed: {first} then {later}"
    );
    let after = until(&c, points, "more points", |v| {
        v[0].as_u64() > before[0].as_u64()
    })
    .await;
    assert!(
        after[1].as_u64() > before[1].as_u64(),
        "the loss curve grew: {before} {after}"
    );
    assert!(
        after[2].as_u64() > before[2].as_u64(),
        "the accuracy curve grew: {before} {after}"
    );
    let answers = "return [...document.querySelectorAll('#digits .digit span')].filter(s => s.textContent !== '').length;";
    let shown = c.execute(answers, vec![]).await.unwrap();
    assert_eq!(shown, json!(100));
    let status = text_of(&c, "status").await;
    assert!(
        status.contains("images/s") && status.contains("to go"),
        "{status}"
    );
    // Five epochs in, strokes show in the units.
    until(&c, UNITS, "five epochs", |v| {
        !v.is_null() && v[0].as_u64() >= Some(5 * 391)
    })
    .await;
    c.screenshot()
        .await
        .map(|png| std::fs::write(screenshots().join("watch-desktop.png"), png).unwrap())
        .unwrap();

    // A late browser: the page reloaded gets every evaluation so far.
    let had = c.execute(points, vec![]).await.unwrap()[0]
        .as_u64()
        .unwrap();
    c.refresh().await.unwrap();
    let again = until(&c, points, "the history", |v| v[0].as_u64() >= Some(had)).await;
    let firsts = c
        .execute(
            "return window.watch.evals.slice(0, 2).map(r => r.iter);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        firsts,
        json!([50, 100]),
        "from the first evaluation: {again}"
    );

    // A phone: one column, the same page.
    c.set_window_size(390, 844).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wide = c
        .execute("return document.documentElement.scrollWidth;", vec![])
        .await
        .unwrap();
    assert!(
        wide.as_f64() <= Some(390.0),
        "no sideways scrolling: {wide}"
    );
    c.screenshot()
        .await
        .map(|png| std::fs::write(screenshots().join("watch-phone.png"), png).unwrap())
        .unwrap();
    c.set_window_size(1280, 1000).await.unwrap();

    // Stop: the run ends as Ctrl-C ends it; the pad appears.
    click(&c, "stop").await;
    let outcome = until(
        &c,
        "return document.getElementById('outcome').textContent;",
        "the stop",
        |v| {
            v.as_str()
                .is_some_and(|s| s.starts_with("Stopped after step"))
        },
    )
    .await;
    assert!(
        outcome.as_str().unwrap().contains("Resume with"),
        "{outcome}"
    );
    until(
        &c,
        "return !document.getElementById('pad-section').hidden && \
         document.getElementById('pad').getAttribute('src') === '/pad';",
        "the pad shown",
        |v| v == &json!(true),
    )
    .await;
    let out = Command::new(common::bin())
        .args(["eval", "--model"])
        .arg(&ck)
        .arg("--data")
        .arg(common::root().join("data/mnist"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The pad answers with the stopped run's model.
    c.goto(&format!("{url}/pad")).await.unwrap();
    click(&c, "random").await;
    let digit = shown_digit(&c).await;
    assert!(digit.parse::<u8>().is_ok(), "{digit}");
    c.close().await.unwrap();
    run.interrupt();
}

/// A watched run, interrupted (or killed) when dropped.
struct Running(Child);

impl Running {
    fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
