//! `train --watch`: the address checked and bound before any work, the
//! page started, and after the run the page kept until Ctrl-C.

use super::Verbosity;
use anyhow::{Context, Result};
use scratchnet::serve::{Limits, Plan, Watch};
use scratchnet::train::{Launch, Trainer};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where `--watch` serves without an address: a free port of this machine.
pub const ANYWHERE_HERE: &str = "127.0.0.1:0";

/// `--watch`'s address, with an error that says what is expected.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.trim().parse().map_err(|_| {
        format!("expected an address and port, such as 127.0.0.1:8080 or 0.0.0.0:8080 (port 0: any free one), not {s:?}")
    })
}

/// Listens on `addr`, warning where others on the network may reach it.
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("--watch {addr}: cannot listen there"))?;
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: --watch {addr}: anyone who can reach this machine on the network can watch this run and stop it"
        );
    }
    Ok(listener)
}

/// Starts the page of `trainer`'s run on `listener` and prints its
/// address (opening it in a browser with `open`); its Stop raises `stop`.
pub fn start(
    listener: TcpListener,
    launch: &Launch,
    trainer: &Trainer<'_>,
    stop: Arc<AtomicBool>,
    open: bool,
) -> Result<(Watch, String)> {
    let addr = listener.local_addr()?;
    let plan = Plan {
        network: trainer.layout.arch.to_string(),
        total_steps: trainer.total_steps,
        steps_per_epoch: trainer.steps_per_epoch(),
        done: trainer.step,
        batch: launch.cfg.minibatch().unwrap_or(launch.data.train.len()),
        minibatch: launch.cfg.minibatch().is_some(),
        config: launch.cfg.to_toml(),
    };
    let mut watch = Watch::new(plan, stop, Limits::default());
    watch.start(listener)?;
    let url = format!("http://{addr}/");
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "watch the run at {url} (its Stop does what Ctrl-C does)"
    );
    let _ = out.flush();
    if open {
        open_in_browser(&url);
    }
    Ok((watch, url))
}

/// Opens `url` with the system's handler, or says why it could not.
fn open_in_browser(url: &str) {
    let opener = match std::env::consts::OS {
        "macos" => "open",
        "windows" => "explorer",
        _ => "xdg-open",
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        eprintln!("warning: --open: cannot run {opener} ({e}); open {url} yourself");
    }
}

/// After the run: keeps the page served until a signal comes (Ctrl-C),
/// unless one already has.
pub fn keep_until_signal(watch: Watch, url: &str, signal: &AtomicUsize, v: Verbosity) {
    if signal.load(Ordering::SeqCst) == 0 {
        if v > Verbosity::Quiet {
            eprintln!("the page stays at {url}, its pad answering with this model; Ctrl-C to end");
        }
        while signal.load(Ordering::SeqCst) == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    watch.close();
}
