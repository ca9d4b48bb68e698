//! `scratchnet train`.

use super::{as_flags, watch, Common, DeviceArg, Verbosity};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use scratchnet::backend::{Device, Target};
use scratchnet::nn::{DropoutMode, InitScheme, Precision};
use scratchnet::optim::OptimizerKind;
use scratchnet::tensorboard::Board;
use scratchnet::train::config::{BatchSize, LrKind, Preset};
use scratchnet::train::outputs::shell_word;
use scratchnet::train::{
    EvalRecord, Launch, MetricsWriter, Observer, Observers, Outcome, Outputs, Request, RunControl,
    Summary, TrainConfig, Trainer,
};
use serde::Serialize;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::flag;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:
  scratchnet train --save model.safetensors            # the default preset: ~98.7% test in seconds
  scratchnet train --preset seed                       # the notebook's 10,000 full-batch iterations
  scratchnet train --preset seed --keep 0.8 --iters 401  # the notebook's shown cell
  scratchnet train --config run.toml --epochs 3 --metrics m.jsonl
  scratchnet train --preset seed --checkpoint-every 500 --save seed.safetensors
  scratchnet train --resume checkpoint.safetensors --save seed.safetensors   # after Ctrl-C",
    allow_negative_numbers = true
)]
pub struct TrainArgs {
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    device: DeviceArg,
    /// Read options from a TOML file (same names as the flags, with underscores)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Save the trained model (safetensors, written atomically)
    #[arg(long, value_name = "FILE")]
    save: Option<PathBuf>,
    /// Start from these weights (safetensors with W11, b11, ... in the notebook's shapes)
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Append one JSON object per evaluation to this file
    #[arg(long, value_name = "FILE")]
    metrics: Option<PathBuf>,
    /// Write a checkpoint (model, optimiser state, step) every N steps
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    checkpoint_every: Option<u64>,
    /// Checkpoint file, written atomically (also on Ctrl-C) [default: checkpoint.safetensors]
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Continue a run from a checkpoint, with its configuration
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "init"])]
    resume: Option<PathBuf>,
    /// Watch the run live in a browser: a page at ADDR [default: a free port
    /// of this machine], kept after the run with a drawing pad using its model
    #[arg(long, value_name = "ADDR", num_args = 0..=1, value_parser = watch::parse_addr,
          default_missing_value = watch::ANYWHERE_HERE)]
    watch: Option<SocketAddr>,
    /// Open the --watch page in the default browser
    #[arg(long, requires = "watch")]
    open: bool,
    #[command(flatten)]
    flags: ConfigFlags,
    /// Print more: the data's checksums, every option of the configuration
    /// (not only those that differ from the preset), the learning rate at
    /// each evaluation
    #[arg(short, long, conflicts_with = "quiet")]
    pub(super) verbose: bool,
}

/// Flags that override the configuration; each is serialised only when
/// given, and overlays the preset and the TOML file by the same mechanism.
#[derive(clap::Args, Debug, Serialize)]
struct ConfigFlags {
    /// Starting point; the options below override it
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<Preset>,
    /// Hidden layers: stages split by `,`, parallel branches by `|`, e.g. `relu:128|tanh:64,relu:48`
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// Weight initialisation
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    init_scheme: Option<InitScheme>,
    /// Seed of every random choice (initialisation, shuffling, dropout, shifts)
    #[arg(long, value_parser = whole::<u64>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Training steps (iterations)
    #[arg(long, conflicts_with = "epochs", value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    iters: Option<usize>,
    /// Passes over the training set
    #[arg(long, value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// `full` or samples per minibatch
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<BatchSize>,
    /// Update rule: the notebook's Adam without bias correction, Adam, or SGD with momentum
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<OptimizerKind>,
    /// Learning rate
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr: Option<f32>,
    /// Adam's first-moment decay (β₁)
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    beta1: Option<f32>,
    /// Adam's second-moment decay (β₂)
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    beta2: Option<f32>,
    /// Adam's ε, added to the denominator
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    eps: Option<f32>,
    /// SGD momentum
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    momentum: Option<f32>,
    /// Learning-rate schedule
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_schedule: Option<LrKind>,
    /// Cosine schedule: final rate as a fraction of --lr
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_floor: Option<f32>,
    /// Step schedule: period in steps
    #[arg(long, value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_step_every: Option<usize>,
    /// Step schedule: factor applied each period
    #[arg(long, value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_step_factor: Option<f32>,
    /// L2 factors: one, or one per weight matrix (W11,W12,W2,W3)
    #[arg(long, value_delimiter = ',', num_args = 1.., value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    l2: Option<Vec<f32>>,
    /// The notebook's L2 schedule period in steps (0: off)
    #[arg(long, value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    reg_every: Option<usize>,
    /// Dropout keep probabilities: one, or one per hidden branch (11,12,2)
    #[arg(long, value_delimiter = ',', num_args = 1.., value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    keep: Option<Vec<f32>>,
    /// Dropout masks per unit (the notebook's) or per unit and sample
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    dropout: Option<DropoutMode>,
    /// Largest random shift of training images, in pixels (0: off)
    #[arg(long, value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shift: Option<usize>,
    /// Largest random rotation of training images, in degrees (0: off)
    #[arg(long, value_name = "DEGREES", value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    rotate: Option<f32>,
    /// Largest random change of size of training images, as a fraction, per axis (0: off)
    #[arg(long, value_name = "FRACTION", value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<f32>,
    /// Largest random shear of training images, as a fraction (0: off)
    #[arg(long, value_name = "FRACTION", value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shear: Option<f32>,
    /// Largest elastic displacement of training images, in pixels (0: off)
    #[arg(long, value_name = "PIXELS", value_parser = finite)]
    #[serde(skip_serializing_if = "Option::is_none")]
    elastic: Option<f32>,
    /// Save the weights of the best validation accuracy seen, not the last ones
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_best: Option<bool>,
    /// Stop after N evaluations without a better validation accuracy
    #[arg(long, value_name = "N", value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    patience: Option<usize>,
    /// Evaluate every N steps
    #[arg(long, value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_every: Option<usize>,
    /// Validation images taken from the end of the IDX training set
    #[arg(long, value_parser = whole::<usize>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    val_size: Option<usize>,
    /// The first layer's arithmetic: `f32`, or `bf16` (bfloat16 products with float32 sums
    /// on the CPU's AMX tiles, where it has them; faster, a little less accurate)
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    precision: Option<Precision>,
    /// Write TensorBoard's event files in DIR: the scalars of --metrics, the
    /// first layer's units as pictures at each evaluation, the settings
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tensorboard: Option<String>,
}

/// A flag's whole number (a count, a length, a seed): errors say what is
/// expected, in words, rather than the parser's.
fn whole<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    let t = s.trim();
    t.parse::<T>().map_err(|_| {
        let digits = |d: &str| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit());
        if t.strip_prefix('-').is_some_and(digits) {
            "cannot be negative: expected a whole number, 0 or more".into()
        } else if digits(t) {
            "too large".into()
        } else if t.parse::<f64>().is_ok() {
            "expected a whole number, without a fraction".into()
        } else {
            "expected a whole number, such as 12".into()
        }
    })
}

/// A flag's number, which must be finite: `inf` and `nan` parse as floats
/// but are no setting.
fn finite(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err("expected a finite number".into()),
        Err(e) => Err(format!("expected a number ({e})")),
    }
}

impl ConfigFlags {
    /// The flags given, by configuration name, as a JSON object.
    fn overrides(&self) -> Result<serde_json::Value> {
        Ok(serde_json::to_value(self)?)
    }
}

/// Prints evaluations as the notebook did, with a progress bar on a terminal.
struct Console {
    bar: Option<ProgressBar>,
    metrics: Option<MetricsWriter>,
    verbosity: Verbosity,
}

impl Observer for Console {
    fn step(&mut self, done: usize, _total: usize, loss: f64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
            if done.is_multiple_of(10) {
                bar.set_message(format!("loss {loss:.4}"));
            }
        }
    }

    fn eval(&mut self, r: &EvalRecord) -> anyhow::Result<()> {
        // A metrics file that cannot be written (a full disk) costs the
        // metrics, not the run.
        if let Some(Err(e)) = self.metrics.as_mut().map(|m| m.write(r)) {
            self.metrics = None;
            self.say(format!("warning: {e:#}; metrics are no longer written"));
        }
        if self.verbosity > Verbosity::Quiet {
            let shown = |v: Option<f64>, digits: usize| match v {
                Some(v) => format!("{v:.digits$}"),
                None => "-".into(),
            };
            let mut line = format!(
                "iter {:>6}  epoch {:>6.2}  J {:.6} (L2 {})  val loss {}  accuracy train {:.4}  val {}  test {:.4}  ({:.1} s)",
                r.iter,
                r.epoch,
                r.j,
                shown(r.l2, 4),
                shown(r.val_loss, 4),
                r.train_acc,
                shown(r.val_acc, 4),
                r.test_acc,
                r.elapsed_s
            );
            if self.verbosity == Verbosity::Verbose {
                line += &format!("  lr {:.3e}", r.lr);
            }
            match &self.bar {
                Some(bar) => bar.println(line),
                None => println!("{line}"),
            }
        }
        Ok(())
    }
}

impl Console {
    /// A progress bar on a terminal (unless quiet), and the metrics file
    /// (appended to by a resumed run).
    fn new(
        trainer: &Trainer<'_>,
        outputs: &Outputs,
        resumed: bool,
        v: Verbosity,
    ) -> Result<Console> {
        let bar = (v > Verbosity::Quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(trainer.total_steps as u64);
            b.set_style(
                ProgressStyle::with_template(
                    "{bar:40} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta}]",
                )
                .unwrap(),
            );
            b.set_position(trainer.step as u64);
            b
        });
        let metrics = outputs
            .metrics
            .as_deref()
            .map(|p| MetricsWriter::open(p, resumed))
            .transpose()?;
        Ok(Console {
            bar,
            metrics,
            verbosity: v,
        })
    }

    /// A line on stderr, above the progress bar if there is one.
    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// SIGINT (Ctrl-C) and SIGTERM (what batch schedulers send): the first
/// stops the run after the step under way (a checkpoint, the resume
/// command, exit status 128 + the signal); a second one ends the process
/// at once.
struct Stop {
    flag: Arc<AtomicBool>,
    signal: Arc<AtomicUsize>,
}

impl Stop {
    fn install() -> Result<Stop> {
        let stop = Stop {
            flag: Arc::new(AtomicBool::new(false)),
            signal: Arc::new(AtomicUsize::new(0)),
        };
        for sig in [SIGINT, SIGTERM] {
            // The shutdown goes first: armed by the flag the first signal sets.
            flag::register_conditional_shutdown(sig, 128 + sig, stop.flag.clone())
                .and_then(|_| flag::register(sig, stop.flag.clone()))
                .and_then(|_| flag::register_usize(sig, stop.signal.clone(), sig as usize))
                .context("cannot install the handler of Ctrl-C and SIGTERM")?;
        }
        Ok(stop)
    }

    /// The exit status of a process stopped by the signal that came.
    fn status(&self) -> i32 {
        128 + self.signal.load(Ordering::SeqCst) as i32
    }
}

pub fn run(args: TrainArgs, v: Verbosity) -> Result<()> {
    let target = args.device.target();
    // The page's address is checked before any work.
    let listener = args.watch.map(watch::bind).transpose()?;
    let req = Request {
        config: args.config.clone(),
        overrides: args.flags.overrides()?,
        init: args.init.clone(),
        resume: args.resume.clone(),
        data: args.common.data_path()?,
        outputs: Outputs {
            save: args.save.clone(),
            metrics: args.metrics.clone(),
            checkpoint: args.checkpoint.clone(),
            checkpoint_every: args.checkpoint_every.map(|n| n as usize),
        },
    };
    let launch = Launch::new(&req).map_err(as_flags)?;
    let mut trainer = launch.trainer(target).map_err(as_flags)?;
    if v > Verbosity::Quiet {
        print_start(&req, &launch, &trainer, target, v);
    }
    let stop = Stop::install()?;
    let mut console = Console::new(&trainer, &req.outputs, launch.resumed.is_some(), v)?;
    let mut board = match &trainer.cfg.tensorboard {
        Some(dir) => Some(
            Board::create(Path::new(dir), &trainer.cfg)
                .with_context(|| format!("--tensorboard {dir}"))?,
        ),
        None => None,
    };
    let mut page = listener
        .map(|l| watch::start(l, &launch, &trainer, stop.flag.clone(), args.open))
        .transpose()?;
    let ctl = RunControl {
        checkpoint_every: req.outputs.checkpoint_every,
        checkpoint_path: Some(req.outputs.checkpoint_path()),
        interrupt: Some(&stop.flag),
    };
    let outcome = {
        let mut all: Vec<&mut dyn Observer> = vec![&mut console];
        all.extend(board.as_mut().map(|b| b as &mut dyn Observer));
        all.extend(page.as_mut().map(|(w, _)| w as &mut dyn Observer));
        trainer.run(&mut Observers(all), &ctl)
    };
    if let Some(b) = &console.bar {
        b.finish_and_clear();
    }
    if let Some(e) = board.as_ref().and_then(|b| b.failure()) {
        eprintln!("warning: {e:#}; TensorBoard events stopped being written");
    }
    let test = || Some(launch.data.test.clone());
    match outcome {
        Err(e) => {
            let e = req.outputs.after_failure(e, &trainer);
            if let Some((w, _)) = page {
                w.ended("failed", &format!("The run failed: {e:#}"), None, None);
                w.close();
            }
            Err(e)
        }
        Ok(Outcome::Interrupted { step }) => {
            let checkpoint = req.outputs.checkpoint_path();
            let resume = resume_command(&args, &req, trainer.cfg.tensorboard.as_deref());
            eprintln!(
                "interrupted after step {step} of {}: checkpoint written to {}",
                trainer.total_steps,
                checkpoint.display()
            );
            eprintln!("resume with: {resume}");
            if let Some((w, url)) = page {
                let said = format!(
                    "Stopped after step {step} of {}: checkpoint written to {} (a model eval and serve read). Resume with: {resume}",
                    trainer.total_steps,
                    checkpoint.display()
                );
                w.ended("stopped", &said, Some(&trainer.trained_model()?), test());
                watch::keep_until_signal(w, &url, &stop.signal, v);
            }
            std::process::exit(stop.status());
        }
        Ok(Outcome::Finished(summary)) => {
            print_end(&trainer, &summary, &launch.cfg);
            let classes = trainer.layout.arch.classes;
            if let Some(w) = summary.near_chance(classes, launch.cfg.lr) {
                eprintln!("warning: {w}");
            }
            let model = trainer.trained_model()?;
            let saved = req.outputs.save(&model)?;
            if let Some(path) = &saved {
                println!("saved model to {}", path.display());
            }
            if let Some((w, url)) = page {
                let r = &summary.last;
                let said = format!(
                    "Finished: {} steps in {:.1} s, test accuracy {:.2}%{}",
                    trainer.step,
                    summary.total_s,
                    100.0 * r.test_acc,
                    saved.map_or(String::new(), |p| format!(
                        ", model saved to {}",
                        p.display()
                    ))
                );
                w.ended("finished", &said, Some(&model), test());
                watch::keep_until_signal(w, &url, &stop.signal, v);
            }
            Ok(())
        }
    }
}

/// What is printed before the first step: the data, the network, the run
/// and its configuration.
fn print_start(
    req: &Request,
    launch: &Launch,
    trainer: &Trainer<'_>,
    target: Target,
    v: Verbosity,
) {
    let (data, cfg, threads) = (&launch.data, &launch.cfg, target.threads);
    println!(
        "scratchnet {}: data {} (train {}, val {}, test {}), {threads} thread{}",
        env!("CARGO_PKG_VERSION"),
        req.data.display(),
        data.train.len(),
        data.val.len(),
        data.test.len(),
        if threads == 1 { "" } else { "s" }
    );
    println!(
        "network {} ({} parameters)",
        trainer.layout.arch, trainer.layout.len
    );
    if target.device == Device::Cpu {
        println!("precision {}", super::info::arithmetic_line(cfg.precision));
    }
    println!(
        "{} steps of {} samples ({} per epoch); dropout masks {}",
        trainer.total_steps,
        cfg.minibatch().map_or("all".to_string(), |b| b.to_string()),
        trainer.steps_per_epoch(),
        if cfg.keep.iter().all(|&k| k >= 1.0) {
            "off".to_string()
        } else {
            format!("per {:?}", cfg.dropout).to_lowercase()
        }
    );
    if v == Verbosity::Verbose {
        for (name, sum) in &data.checksums {
            println!("data {name}  sha256 {sum}");
        }
    }
    if let Some(p) = &req.resume {
        println!("resuming {} at step {}", p.display(), trainer.step);
    }
    if let Some(was) = launch.extended_from {
        println!(
            "extended from {was} to {} steps: the learning-rate schedule is recomputed for the new length",
            trainer.total_steps
        );
    }
    match v {
        Verbosity::Verbose => println!(
            "--- configuration (usable with --config) ---\n{}---",
            cfg.to_toml()
        ),
        _ => println!(
            "--- configuration: the preset and what differs from it (usable with --config; -v shows every option) ---\n{}---",
            cfg.changes_toml()
        ),
    }
}

/// What is printed after the last step: time, speed, accuracies, and the
/// model selection where it was on.
fn print_end(trainer: &Trainer<'_>, summary: &Summary, cfg: &TrainConfig) {
    let r = &summary.last;
    let val = r
        .val_acc
        .map(|v| format!("{v:.4}"))
        .unwrap_or_else(|| "-".into());
    println!(
        "done: {} steps in {:.2} s ({:.2} s training, {:.0} samples/s); accuracy train {:.4}  val {val}  test {:.4}",
        trainer.step, summary.total_s, summary.train_s, summary.samples_per_s, r.train_acc, r.test_acc
    );
    if let Some(step) = summary.stopped_early {
        println!(
            "stopped early after {step} steps: no better validation accuracy in {} evaluations (--patience)",
            cfg.patience.unwrap_or(0)
        );
    }
    if let (Some(b), true) = (&summary.best, cfg.keep_best) {
        println!(
            "kept the weights of iteration {} (epoch {:.2}): accuracy val {}  test {:.4}",
            b.iter,
            b.epoch,
            b.val_acc.map_or("-".into(), |v| format!("{v:.4}")),
            b.test_acc
        );
    }
}

/// The command that continues an interrupted run: its checkpoint, every
/// output (the metrics file is appended to, TensorBoard's folder gains a
/// file), and the data, device and page it was given.
fn resume_command(args: &TrainArgs, req: &Request, tensorboard: Option<&str>) -> String {
    let mut words = vec!["scratchnet".to_string(), "train".to_string()];
    words.extend(req.outputs.resume_options());
    if let Some(dir) = tensorboard {
        words.extend(["--tensorboard".to_string(), shell_word(Path::new(dir))]);
    }
    if let Some(d) = &args.common.data {
        words.extend(["--data".to_string(), shell_word(d)]);
    }
    if args.device.device != Device::Cpu {
        words.extend(["--device".to_string(), "cuda".to_string()]);
    }
    if let Some(addr) = args.watch {
        words.extend(["--watch".to_string(), addr.to_string()]);
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        flags: ConfigFlags,
    }

    #[test]
    fn only_given_flags_become_overrides() {
        let t = T::parse_from([
            "t",
            "--lr",
            "0.5",
            "--keep",
            "0.9,0.8,0.7",
            "--batch-size",
            "full",
        ]);
        let v = serde_json::to_value(&t.flags).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"lr": 0.5, "keep": [0.9f32, 0.8f32, 0.7f32], "batch_size": "full"})
        );
    }
}
