//! `scratchnet serve`: a page to draw digits on and a JSON API, over HTTP.

use super::{ModelArg, Verbosity};
use anyhow::{Context, Result};
use scratchnet::backend::Target;
use scratchnet::data::Dataset;
use scratchnet::model_io::Model;
use scratchnet::serve::{Limits, Service, MOST_CONNECTIONS};
use scratchnet::train::{EvalRecord, Observer, Outcome, Preset, RunControl, TrainConfig, Trainer};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "With no --model it first trains the default preset (a few seconds).
The page (drawing pad, probabilities, the 28x28 image the network sees) is at the
printed address; the API:
  curl -s localhost:8080/api/model
  curl -s --data-binary @assets/examples/digit-0-label-7.pgm localhost:8080/api/predict
  curl -s -H 'Content-Type: application/json' -d '{\"pixels\": [0, ...784 values in 0..1]}' localhost:8080/api/predict
  curl -s 'localhost:8080/api/random?index=3'
Ctrl-C or SIGTERM stops it once the requests in flight are answered.

Examples:
  scratchnet serve model.safetensors
  scratchnet serve --addr 0.0.0.0:8080     # reachable from other machines"
)]
pub struct ServeArgs {
    /// [default: train the default preset first]
    #[command(flatten)]
    model: ModelArg,
    /// Address to listen on; 127.0.0.1 keeps it on this machine, port 0 picks a free port
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request body accepted, in bytes
    #[arg(long, value_name = "BYTES", default_value_t = Limits::default().max_body as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    max_body: u64,
    /// Seconds a client has to send a request's head, counted from when it connects or was last answered
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().head.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    head_timeout: u64,
    /// Seconds a client has to send a request's body once its head is in (else 408)
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().body.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout: u64,
    /// Seconds a connection may wait on the client with nothing owed to it: on opening, between requests, or while it reads no more of an answer
    #[arg(long, value_name = "SECONDS", default_value_t = Limits::default().idle.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout: u64,
    /// Connections open at once; a client beyond them gets a 503
    #[arg(long, value_name = "N", default_value_t = Limits::default().connections as u32, value_parser = clap::value_parser!(u32).range(1..=MOST_CONNECTIONS as i64))]
    max_connections: u32,
    /// MNIST-format data: the test images for the random digit (and for training without --model)
    /// [default: as for train; `scratchnet info --data` says which]
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// Threads serving connections, and at most as many computing answers [default: all cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(super) threads: Option<u16>,
}

/// Prints each evaluation of the training that precedes serving.
struct Progress;
impl Observer for Progress {
    fn eval(&mut self, r: &EvalRecord) -> Result<()> {
        eprintln!(
            "  epoch {:>5.2}: accuracy val {}  test {:.4}",
            r.epoch,
            r.val_acc.map_or("-".into(), |v| format!("{v:.4}")),
            r.test_acc
        );
        Ok(())
    }
}

pub fn run(args: ServeArgs, v: Verbosity) -> Result<()> {
    // The command line ends quietly on a closed stdout (SIGPIPE's default
    // action, see main.rs); a server must instead outlive a reader or a
    // client that went away, so its writes fail with EPIPE.
    #[cfg(unix)]
    // SAFETY: only the disposition of SIGPIPE changes.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let threads = rayon::current_num_threads();
    let data = match super::data_path(args.data.as_deref()).and_then(|p| Dataset::load(&p, None)) {
        Ok(d) => Some(d),
        Err(e) if args.model.path().is_some() => {
            eprintln!("warning: {e:#}; serving without the random test digit");
            None
        }
        Err(e) => return Err(e.context("serve without a model trains on MNIST first")),
    };
    let model = match args.model.path() {
        Some(p) => Model::load(p)?,
        None => {
            let data = data.as_ref().expect("loaded above");
            eprintln!("no model given: training the default preset first");
            let cfg = TrainConfig::preset(Preset::Fast);
            let mut t = Trainer::new(cfg, data, Target::cpu(threads), None)?;
            let ctl = RunControl::default();
            let Outcome::Finished(s) = t.run(&mut Progress, &ctl)? else {
                anyhow::bail!("training stopped early");
            };
            eprintln!("trained in {:.1} s", s.total_s);
            t.trained_model()?
        }
    };
    let test = data.map(|d| d.test);
    let mut limits = Limits {
        max_body: args.max_body as usize,
        head: Duration::from_secs(args.head_timeout),
        body: Duration::from_secs(args.body_timeout),
        idle: Duration::from_secs(args.idle_timeout),
        connections: args.max_connections as usize,
    };
    if let Some(fewer) = limits.fit_open_files() {
        eprintln!("warning: {fewer}");
    }
    let service = Service::new(&model, test, limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .max_blocking_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the server's threads")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("--addr {}: cannot listen there", args.addr))?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout();
        let _ = writeln!(out, "serving {} on http://{addr}/", model.layout.arch);
        if v > Verbosity::Quiet && addr.ip().is_loopback() {
            let port = addr.port();
            let _ = writeln!(
                out,
                "(this machine only; --addr 0.0.0.0:{port} to be reached from others)"
            );
        }
        let _ = out.flush();
        service.serve(listener, stopped()).await;
        anyhow::Ok(())
    })?;
    eprintln!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stopped() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    eprintln!("stopping: answering the requests in flight");
}
