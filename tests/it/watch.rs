//! `train --watch` over real HTTP on 127.0.0.1: the page's event stream
//! carries the run as it goes and its whole history to a late browser, the
//! answers shown are the network's on each digit in order, Stop works only
//! with the page's token and leaves a checkpoint `eval` reads and a pad
//! that answers, a resumed run is watched as well, and bad addresses are
//! refused before any work.

use crate::common::{self, bin, mnist, root, watching};
use scratchnet::backend::{logits, Target};
use scratchnet::data::CLASSES;
use scratchnet::nn::network::argmax;
use scratchnet::train::{EvalRecord, Look, Observer, RunControl, TrainConfig, Trainer};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The events of one connection to `/events`, read on a thread of their own.
struct Events {
    rx: Receiver<(String, Value)>,
    seen: Vec<(String, Value)>,
}

impl Events {
    fn open(url: &str) -> Events {
        let resp = ureq::get(&format!("{url}/events"))
            .call()
            .unwrap_or_else(|e| panic!("GET /events: {e}"));
        let kind = resp
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(kind, "text/event-stream");
        let (tx, rx) = channel();
        let reader = BufReader::new(resp.into_body().into_reader());
        std::thread::spawn(move || {
            let mut kind = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { return };
                if let Some(k) = line.strip_prefix("event: ") {
                    kind = k.to_string();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    let value = serde_json::from_str(data).unwrap();
                    if tx.send((kind.clone(), value)).is_err() {
                        return;
                    }
                }
            }
        });
        Events {
            rx,
            seen: Vec::new(),
        }
    }

    /// Reads events until `done` holds of those seen; panics after `limit`.
    fn until(&mut self, limit: Duration, done: impl Fn(&[(String, Value)]) -> bool) {
        let end = Instant::now() + limit;
        while !done(&self.seen) {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => self.seen.push(e),
                Err(e) => panic!(
                    "not seen within {limit:?} ({e}); seen: {:?}",
                    kinds(&self.seen)
                ),
            }
        }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.seen
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, v)| v)
            .collect()
    }
}

fn kinds(seen: &[(String, Value)]) -> Vec<&str> {
    seen.iter().map(|(k, _)| k.as_str()).collect()
}

fn count(seen: &[(String, Value)], kind: &str) -> usize {
    seen.iter().filter(|(k, _)| k == kind).count()
}

/// A request to the page's server: its status and body.
fn call(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = match method {
        "GET" => {
            let mut r = agent.get(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.call()
        }
        _ => {
            let mut r = agent.post(url);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.send(body)
        }
    }
    .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_vec().unwrap())
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(body)
                .chars()
                .take(300)
                .collect::<String>()
        )
    })
}

/// The page's token, as its HTML carries it.
fn token(url: &str) -> String {
    let (status, page) = call("GET", &format!("{url}/"), &[], b"");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    let at = page.find(r#"name="watch-token" content=""#).unwrap() + 28;
    page[at..at + 32].to_string()
}

/// `POST /stop` with `host` in its `Host` header, as a page of another
/// site whose name points here sends it; the answer, as it came.
fn stop_as(url: &str, host: &str, token: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /stop HTTP/1.1\r\nHost: {host}\r\nX-Watch-Token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
}

fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{sig}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// Waits for `child` to end, within `limit`; its exit status.
fn ended(child: &mut Child, limit: Duration) -> Option<i32> {
    let end = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < end, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A watched run of the seed preset (full batch, 200 steps, evaluated
/// every 4): the stream gives the plan, progress, evaluations, the digits
/// and the first layer's pictures; Stop is refused without the page's
/// token and with a wrong one, and with it stops the run as Ctrl-C does (a
/// checkpoint `eval` reads, the resume command, the `end` event), after
/// which the pad answers with the model; a browser that connects late gets
/// the same history. The resume command, watched too, finishes the run;
/// Ctrl-C then ends the process cleanly.
#[test]
fn a_watched_run_streams_its_history_and_stops_only_with_its_token() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let data = root().join("data/mnist");
    let run = |extra: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["train", "-q", "--watch", "--threads", "2"])
            .args(extra)
            .arg("--checkpoint")
            .arg(&ck)
            .arg("--data")
            .arg(&data)
            .current_dir(dir.path());
        cmd
    };
    let seed = ["--preset", "seed", "--iters", "200", "--eval-every", "4"];
    let (mut child, url) = watching(&mut run(&seed));
    let mut first = Events::open(&url);
    first.until(Duration::from_secs(120), |s| {
        count(s, "eval") >= 3 && count(s, "look") >= 3 && count(s, "progress") >= 1
    });
    let token = token(&url);

    // Stop: refused without the token and with another; then taken.
    let stop = format!("{url}/stop");
    for headers in [
        vec![],
        vec![("X-Watch-Token", "0123456789abcdef0123456789abcdef")],
    ] {
        let (status, body) = call("POST", &stop, &headers, b"");
        assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
        assert!(json_of(&body)["error"].as_str().unwrap().contains("token"));
    }
    // Nor with the token, addressed by a name other than the machine's
    // (a page of another site whose name was made to point here).
    let answer = stop_as(&url, "evil.example:80", &token);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(child.try_wait().unwrap().is_none(), "the run went on");
    let (status, body) = call("POST", &stop, &[("X-Watch-Token", token.as_str())], b"");
    assert_eq!((status, json_of(&body)), (200, json!({"stopping": true})));
    first.until(Duration::from_secs(60), |s| count(s, "end") == 1);
    let end = first.all("end")[0].clone();
    assert_eq!(end["outcome"], "stopped", "{end}");
    assert_eq!(end["pad"], true);
    let said = end["message"].as_str().unwrap();
    assert!(said.starts_with("Stopped after step "), "{said}");
    let resume = said.split("Resume with: ").nth(1).unwrap().to_string();
    // Nothing is left to stop.
    let (status, body) = call("POST", &stop, &[("X-Watch-Token", token.as_str())], b"");
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&body));
    assert!(
        resume.contains("--resume") && resume.contains("--watch 127.0.0.1:0"),
        "{said}"
    );

    let start = first.all("start")[0].clone();
    assert_eq!(first.seen[0].0, "start");
    assert_eq!(start["total_steps"], 200);
    assert_eq!(start["batch"], 50_000);
    assert_eq!(start["minibatch"], false);
    assert!(
        start["network"]
            .as_str()
            .unwrap()
            .contains("[relu 128 | tanh 64]"),
        "{start}"
    );
    let evals: Vec<EvalRecord> = first
        .all("eval")
        .iter()
        .map(|v| serde_json::from_value((*v).clone()).unwrap())
        .collect();
    let iters: Vec<usize> = evals.iter().map(|r| r.iter).collect();
    assert_eq!(
        &iters[..3],
        &[1, 5, 9],
        "the notebook's moments: i % 4 == 0"
    );
    let digits = first.all("digits")[0].clone();
    assert_eq!(digits["split"], "validation");
    assert_eq!(digits["digits"].as_array().unwrap().len(), 100);
    let val = &mnist().val;
    for (i, d) in digits["digits"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .take(5)
    {
        assert_eq!(d["label"], val.labels[i]);
        assert_eq!(d["pixels"].as_str().unwrap().len(), 2 * 784);
    }
    let look = first.all("look").last().unwrap().to_owned().clone();
    let confusion: Vec<Vec<u64>> = serde_json::from_value(look["confusion"].clone()).unwrap();
    let total: u64 = confusion.iter().flatten().sum();
    let right: u64 = (0..CLASSES).map(|i| confusion[i][i]).sum();
    assert_eq!(total, val.len() as u64);
    let r = evals.iter().find(|r| r.iter == look["iter"]).unwrap();
    assert_eq!(right as f64 / total as f64, r.val_acc.unwrap(), "{look}");
    assert_eq!(look["units"], json!(["relu 128", "tanh 64"]));
    // The pictures: 16 tiles a row of 28 pixels with 1 between.
    for (branch, size) in [(0, (463, 231)), (1, (463, 115))] {
        let (status, png) = call("GET", &format!("{url}/units?branch={branch}"), &[], b"");
        assert_eq!(status, 200);
        let img = image::load_from_memory(&png).unwrap();
        assert_eq!((img.width(), img.height()), size);
    }
    let (status, _) = call("GET", &format!("{url}/units?branch=2"), &[], b"");
    assert_eq!(status, 404);

    // A late browser gets the history: the same events, in the same order
    // (of the first layer's pictures, the last).
    let mut late = Events::open(&url);
    late.until(Duration::from_secs(60), |s| count(s, "end") == 1);
    let kept = |s: &[(String, Value)]| -> Vec<(String, Value)> {
        s.iter().filter(|(k, _)| k != "look").cloned().collect()
    };
    assert_eq!(kept(&late.seen), kept(&first.seen));
    assert_eq!(late.all("look"), vec![&look]);

    // The pad answers with the stopped run's model; eval reads the checkpoint.
    let pixels = serde_json::to_vec(&json!({"pixels": mnist().test.image(0)})).unwrap();
    let (status, body) = call(
        "POST",
        &format!("{url}/api/predict"),
        &[("Content-Type", "application/json")],
        &pixels,
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(json_of(&body)["digit"].is_u64());
    let (status, page) = call("GET", &format!("{url}/pad"), &[], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("Draw a digit"));
    let out = common::run_in(
        dir.path(),
        &[
            "eval",
            "--model",
            ck.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Ctrl-C ends the stopped run's process, as a second Ctrl-C would.
    signal(&child, "INT");
    assert_eq!(ended(&mut child, Duration::from_secs(20)), Some(130));

    // The printed command resumes the run, watched alike; before its end
    // the pad is not there, and says why.
    let (mut child, url) = watching(&mut run(&["--resume", ck.to_str().unwrap()]));
    let (status, body) = call("GET", &format!("{url}/api/model"), &[], b"");
    assert_eq!(status, 503);
    assert!(json_of(&body)["error"]
        .as_str()
        .unwrap()
        .contains("still training"));
    let mut again = Events::open(&url);
    again.until(Duration::from_secs(120), |s| count(s, "end") == 1);
    let start = again.all("start")[0].clone();
    assert!(start["done"].as_u64().unwrap() >= 9, "{start}");
    assert_eq!(start["total_steps"], 200);
    let end = again.all("end")[0].clone();
    assert_eq!(end["outcome"], "finished", "{end}");
    assert!(
        end["message"].as_str().unwrap().contains("200 steps"),
        "{end}"
    );
    let last = again.all("eval").last().unwrap().to_owned().clone();
    assert_eq!(last["iter"], 200);
    let (status, _) = call("GET", &format!("{url}/api/model"), &[], b"");
    assert_eq!(status, 200);
    signal(&child, "INT");
    assert_eq!(ended(&mut child, Duration::from_secs(20)), Some(0));
}

/// `--watch` is checked before any work: an address that is not one, or
/// one in use, is refused with what was expected; one open to the network
/// gets a warning that anyone there can watch and stop the run.
#[test]
fn watch_addresses_are_checked_before_training() {
    let dir = tempfile::tempdir().unwrap();
    common::fails_in(
        dir.path(),
        &["train", "--watch", "here"],
        &[
            "--watch",
            "expected an address and port, such as 127.0.0.1:8080",
        ],
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    common::fails_in(
        dir.path(),
        &["train", "--watch", &addr, "--data", "/no/data"],
        &[&format!("--watch {addr}: cannot listen there")],
    );
    let mut child = Command::new(bin())
        .args([
            "train",
            "-q",
            "--epochs",
            "1",
            "--watch",
            "0.0.0.0:0",
            "--data",
        ])
        .arg(root().join("data/mnist"))
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("warning: --watch 0.0.0.0:")
            && line.contains(
                "anyone who can reach this machine on the network can watch this run and stop it"
            ),
        "{line}"
    );
}

/// Keeps what each evaluation's look shows.
#[derive(Default)]
struct Looks(Vec<(usize, Vec<f32>, Vec<u8>, &'static str)>);

impl Observer for Looks {
    fn looks(&self) -> bool {
        true
    }
    fn look(&mut self, l: &Look<'_>) -> anyhow::Result<()> {
        let r: &EvalRecord = l.record;
        self.0.push((
            r.iter,
            l.params.to_vec(),
            l.predicted.to_vec(),
            l.split_name,
        ));
        Ok(())
    }
}

/// The answers an observer is shown are the network's own on each image
/// of the split, in the split's order (the evaluation reorders images for
/// speed and must put its answers back), with and without a validation
/// split.
#[test]
fn the_answers_shown_are_the_networks_on_each_digit_in_order() {
    for (val_size, split) in [(10_000, "validation"), (0, "test")] {
        let cfg = TrainConfig::resolve(
            None,
            json!({"epochs": 1, "eval_every": 200, "val_size": val_size}),
        )
        .unwrap();
        let data =
            scratchnet::data::Dataset::load(&root().join("data/mnist"), Some(val_size)).unwrap();
        let target = Target::cpu(2);
        let mut t = Trainer::new(cfg, &data, target, None).unwrap();
        let mut looks = Looks::default();
        t.run(&mut looks, &RunControl::default()).unwrap();
        assert!(looks.0.len() >= 2);
        let images = match split {
            "validation" => &data.val,
            _ => &data.test,
        };
        for (iter, params, predicted, name) in &looks.0 {
            assert_eq!(*name, split);
            let z = logits(target, &t.layout, params, &images.images.floats()).unwrap();
            let want: Vec<u8> = z.chunks_exact(CLASSES).map(argmax).collect();
            assert_eq!(predicted, &want, "iteration {iter}");
        }
    }
}
