//! The README's commands, run as a user runs them, so that they cannot go
//! stale: every `scratchnet` line of its shell blocks (and the first
//! command's `cargo run --release -- ...`) in order, in one folder, and the
//! `curl` line against the server its `serve` line starts. Long runs are
//! shortened (the seed preset to 3 iterations, a sweep to 2 trials of 1
//! epoch); nothing else is changed. The Python blocks and the
//! `scratchnet-tune` line run in `python/tests/test_readme.py`; the `cargo`
//! and `pip` lines are CI's own steps.

use crate::common;
use std::path::Path;
use std::process::Command;

/// The lines of the README's ```sh blocks, comments stripped.
fn shell_lines() -> Vec<String> {
    let text = std::fs::read_to_string(common::root().join("README.md")).unwrap();
    let mut inside = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        match (inside, line.trim_start().starts_with("```")) {
            (false, true) => inside = line.trim() == "```sh",
            (true, true) => inside = false,
            (true, false) => {
                let command = line.split(" # ").next().unwrap().trim();
                if !command.is_empty() && !command.starts_with('#') {
                    lines.push(command.to_string());
                }
            }
            (false, false) => {}
        }
    }
    lines
}

/// A README line's arguments to `scratchnet`, shortened where it runs long;
/// `None` for lines of other programs.
fn scratchnet_args(line: &str) -> Option<Vec<String>> {
    let rest = line
        .strip_prefix("scratchnet ")
        .or_else(|| line.strip_prefix("cargo run --release -- "))?;
    let mut args: Vec<String> = rest.split_whitespace().map(String::from).collect();
    let shorter =
        |args: &mut Vec<String>, flag: &str, value: &str| match args.iter().position(|a| a == flag)
        {
            Some(i) => args[i + 1] = value.into(),
            None => args.extend([flag.into(), value.into()]),
        };
    if args.windows(2).any(|w| w == ["--preset", "seed"]) {
        shorter(&mut args, "--iters", "3");
    }
    if args[0] == "sweep" {
        shorter(&mut args, "--trials", "2");
        shorter(&mut args, "--epochs", "1");
    }
    Some(args)
}

#[test]
fn every_command_of_the_readme_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The README's paths are the repository's.
    for name in ["assets", "examples"] {
        std::os::unix::fs::symlink(common::root().join(name), d.join(name)).unwrap();
    }
    let lines = shell_lines();
    assert!(lines.len() >= 10, "the README's shell lines: {lines:?}");
    let mut server = None;
    let mut ran = 0;
    for line in &lines {
        if line.starts_with("curl ") {
            let url = server
                .as_ref()
                .map(|(_, url): &(Server, String)| url.clone());
            let url = url.unwrap_or_else(|| panic!("`{line}` before any `scratchnet serve`"));
            curl(line, &url, d);
            ran += 1;
            continue;
        }
        let Some(args) = scratchnet_args(line) else {
            continue;
        };
        if args[0] == "serve" {
            server = Some(Server::start(&args, d));
            ran += 1;
            continue;
        }
        if args.iter().any(|a| a == "--watch") {
            watched(line, &args, d);
            ran += 1;
            continue;
        }
        let out = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
            .args(&args)
            .current_dir(d)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "`{line}` failed:\n{text}{err}");
        if args == ["train", "--save", "model.safetensors"] {
            // The README promises about 98.7% for its first command.
            let test = test_accuracy(&text).unwrap_or_else(|| panic!("no accuracy in {text}"));
            assert!(test >= 0.985, "`{line}`: test accuracy {test}");
        }
        ran += 1;
    }
    assert!(server.is_some(), "the README serves a model");
    println!("ran {ran} of the README's {} shell lines", lines.len());
}

/// The test accuracy of `train`'s summary line (`... test 0.9878`).
fn test_accuracy(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with("done:"))?;
    line.rsplit("test ").next()?.trim().parse().ok()
}

/// A `train --watch` line: its page's event stream is followed to the
/// run's end (the page stays up until Ctrl-C, which then ends it cleanly).
fn watched(line: &str, args: &[String], dir: &Path) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let url = loop {
        let mut text = String::new();
        assert!(
            out.read_line(&mut text).unwrap() > 0,
            "`{line}`: no page named"
        );
        if let Some(url) = text.split_whitespace().find(|w| w.starts_with("http://")) {
            break url.to_string();
        }
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    // A run that never ends its page fails the test, not hangs it.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(300)))
        .build()
        .into();
    let events = agent.get(&format!("{url}events")).call().unwrap();
    let ended = BufReader::new(events.into_body().into_reader())
        .lines()
        .map_while(Result::ok)
        .any(|l| l == "event: end");
    assert!(
        ended,
        "`{line}`: the page's events stopped before the run's end"
    );
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    assert!(
        child.wait().unwrap().success(),
        "`{line}`: Ctrl-C after the run"
    );
}

/// A `serve` line, on a free port instead of the default one.
struct Server(std::process::Child);

impl Server {
    fn start(args: &[String], dir: &Path) -> (Server, String) {
        let (child, url) = common::serving(
            Command::new(env!("CARGO_BIN_EXE_scratchnet"))
                .args(args)
                .args(["--addr", "127.0.0.1:0"])
                .current_dir(dir),
        );
        (Server(child), url)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a README `curl` line against the server at `url`: it must answer
/// with JSON that names a digit.
fn curl(line: &str, url: &str, dir: &Path) {
    let line = line.replace("http://127.0.0.1:8080", url);
    let out = match Command::new("sh")
        .args(["-c", &format!("{line} --fail-with-body")])
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) => return common::skip("every_command_of_the_readme_runs", &format!("{e}")),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.code() == Some(127) {
        return common::skip("every_command_of_the_readme_runs", "curl is not installed");
    }
    assert!(out.status.success(), "`{line}`: {text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["digit"], 7, "`{line}`: {answer}");
}
