//! `scratchnet train`.

use super::{Common, DeviceArg, Verbosity};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use scratchnet::data::Dataset;
use scratchnet::fsutil::check_output_file;
use scratchnet::model_io::{load_init, Model};
use scratchnet::nn::Layout;
use scratchnet::train::config::{BatchSize, PRESETS};
use scratchnet::train::{
    Checkpoint, Diverged, EvalRecord, MetricsWriter, Observer, Outcome, RunControl, TrainConfig,
    Trainer,
};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  scratchnet train --save model.safetensors            # default preset: minibatch, ≥98.5% in seconds
  scratchnet train --preset seed                       # the notebook's 10,000 full-batch iterations
  scratchnet train --preset seed --keep 0.8 --iters 401  # the notebook's shown cell
  scratchnet train --config run.toml --epochs 3 --metrics m.jsonl
  scratchnet train --preset seed --checkpoint-every 500 --save seed.safetensors
  scratchnet train --resume checkpoint.safetensors --save seed.safetensors   # after Ctrl-C")]
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
    #[command(flatten)]
    flags: ConfigFlags,
}

/// Flags that override the configuration; each is serialised only when
/// given, and overlays the preset and the TOML file by the same mechanism.
#[derive(clap::Args, Debug, Serialize)]
struct ConfigFlags {
    /// Starting point: `fast` (default: 98.5% in seconds), `best` (99% in minutes:
    /// longer, on distorted images) or `seed` (the notebook's final run)
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    #[serde(skip_serializing_if = "Option::is_none")]
    preset: Option<String>,
    /// Hidden layers: stages split by `,`, parallel branches by `|`, e.g. `relu:128|tanh:64,relu:48`
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<String>,
    /// Weight initialisation
    #[arg(long, value_parser = ["notebook", "he", "xavier"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    init_scheme: Option<String>,
    /// Seed of every random choice (initialisation, shuffling, dropout, shifts)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    /// Training steps (iterations)
    #[arg(long, conflicts_with = "epochs")]
    #[serde(skip_serializing_if = "Option::is_none")]
    iters: Option<usize>,
    /// Passes over the training set
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    epochs: Option<usize>,
    /// `full` or samples per minibatch
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    batch_size: Option<BatchSize>,
    /// Update rule: the notebook's Adam without bias correction, Adam, or SGD with momentum
    #[arg(long, value_parser = ["adam-nb", "adam", "sgd"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    optimizer: Option<String>,
    /// Learning rate
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr: Option<f32>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    beta1: Option<f32>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    beta2: Option<f32>,
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    eps: Option<f32>,
    /// SGD momentum
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    momentum: Option<f32>,
    /// Learning-rate schedule
    #[arg(long, value_parser = ["constant", "cosine", "step"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_schedule: Option<String>,
    /// Cosine schedule: final rate as a fraction of --lr
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_floor: Option<f32>,
    /// Step schedule: period in steps
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_step_every: Option<usize>,
    /// Step schedule: factor applied each period
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    lr_step_factor: Option<f32>,
    /// L2 factors: one, or one per weight matrix (W11,W12,W2,W3)
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    #[serde(skip_serializing_if = "Option::is_none")]
    l2: Option<Vec<f32>>,
    /// The notebook's L2 schedule period in steps (0: off)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    reg_every: Option<usize>,
    /// Dropout keep probabilities: one, or one per hidden branch (11,12,2)
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    #[serde(skip_serializing_if = "Option::is_none")]
    keep: Option<Vec<f32>>,
    /// Dropout masks per unit (the notebook's) or per unit and sample
    #[arg(long, value_parser = ["unit", "sample"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    dropout: Option<String>,
    /// Largest random shift of training images, in pixels (0: off)
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shift: Option<usize>,
    /// Largest random rotation of training images, in degrees (0: off)
    #[arg(long, value_name = "DEGREES")]
    #[serde(skip_serializing_if = "Option::is_none")]
    rotate: Option<f32>,
    /// Largest random change of size of training images, as a fraction, per axis (0: off)
    #[arg(long, value_name = "FRACTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    scale: Option<f32>,
    /// Largest random shear of training images, as a fraction (0: off)
    #[arg(long, value_name = "FRACTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    shear: Option<f32>,
    /// Largest elastic displacement of training images, in pixels (0: off)
    #[arg(long, value_name = "PIXELS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    elastic: Option<f32>,
    /// Save the weights of the best validation accuracy seen, not the last ones
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_best: Option<bool>,
    /// Stop after N evaluations without a better validation accuracy
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    patience: Option<usize>,
    /// Evaluate every N steps
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_every: Option<usize>,
    /// Validation images taken from the end of the IDX training set
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    val_size: Option<usize>,
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
            let val = r
                .val_acc
                .map(|v| format!("{v:.4}"))
                .unwrap_or_else(|| "-".into());
            let mut line = format!(
                "iter {:>6}  epoch {:>6.2}  J {:.6}  accuracy train {:.4}  val {val}  test {:.4}  ({:.1} s)",
                r.iter, r.epoch, r.j, r.train_acc, r.test_acc, r.elapsed_s
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
    /// A line on stderr, above the progress bar if there is one.
    fn say(&self, line: String) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}

/// Raised by Ctrl-C; the training loop checks it after every step.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn run(args: TrainArgs, v: Verbosity) -> Result<()> {
    let quiet = v == Verbosity::Quiet;
    let target = args.device.target();
    let threads = target.threads;
    // Every output is checked before any work: a model must not be lost to
    // a path that could never be written.
    let checkpoint = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| PathBuf::from("checkpoint.safetensors"));
    for (option, path) in [("--save", &args.save), ("--metrics", &args.metrics)] {
        if let Some(p) = path {
            check_output_file(option, p)?;
        }
    }
    if args.checkpoint.is_some() || args.checkpoint_every.is_some() {
        check_output_file("--checkpoint", &checkpoint)?;
    }
    let mut overrides = serde_json::to_value(&args.flags)?;
    // `--init` names a file; the scheme flag maps onto the config's `init` key.
    if let Some(s) = overrides
        .as_object_mut()
        .and_then(|o| o.remove("init_scheme"))
    {
        overrides["init"] = s;
    }
    let resumed = args.resume.as_deref().map(Checkpoint::load).transpose()?;
    let cfg = match &resumed {
        Some(ckpt) => {
            let given = overrides.as_object().map_or(0, |o| o.len())
                + args.config.iter().len()
                + args.init.iter().len();
            if given > 0 {
                bail!("--resume continues the checkpoint's own configuration; drop the options that would change it ({})", overrides.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>().join(", ")).unwrap_or_default());
            }
            ckpt.cfg.clone()
        }
        None => {
            let toml_text = match &args.config {
                Some(p) => Some(
                    std::fs::read_to_string(p)
                        .with_context(|| format!("--config {}: cannot read", p.display()))?,
                ),
                None => None,
            };
            TrainConfig::resolve(toml_text.as_deref(), overrides).with_context(|| {
                match &args.config {
                    Some(p) => format!("resolving the configuration (--config {})", p.display()),
                    None => "resolving the configuration".into(),
                }
            })?
        }
    };
    let data_path = args.common.data_path()?;
    let val_size = (!data_path.is_file() || args.flags.val_size.is_some() || resumed.is_some())
        .then_some(cfg.val_size);
    let data = Dataset::load(&data_path, val_size)?;
    let mut trainer = match &resumed {
        Some(ckpt) => Trainer::resume(ckpt, &data, target)?,
        None => {
            let init = match &args.init {
                Some(p) => {
                    let arch = cfg.arch(data.features(), scratchnet::data::CLASSES)?;
                    Some(load_init(p, &Layout::new(&arch))?)
                }
                None => None,
            };
            Trainer::new(cfg.clone(), &data, target, init)?
        }
    };
    let arch = &trainer.layout.arch;
    if !quiet {
        println!(
            "scratchnet {}: data {} (train {}, val {}, test {}), {threads} thread{}",
            env!("CARGO_PKG_VERSION"),
            data_path.display(),
            data.train.len(),
            data.val.len(),
            data.test.len(),
            if threads == 1 { "" } else { "s" }
        );
        println!("network {arch} ({} parameters)", trainer.layout.len);
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
        if let Some(p) = &args.resume {
            println!("resuming {} at step {}", p.display(), trainer.step);
        }
        println!(
            "--- configuration (usable with --config) ---\n{}---",
            cfg.to_toml()
        );
    }
    let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
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
    let metrics = args
        .metrics
        .as_deref()
        .map(|p| MetricsWriter::open(p, resumed.is_some()))
        .transpose()?;
    let mut console = Console {
        bar,
        metrics,
        verbosity: v,
    };
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
        .context("cannot install the Ctrl-C handler")?;
    let ctl = RunControl {
        checkpoint_every: args.checkpoint_every.map(|n| n as usize),
        checkpoint_path: Some(checkpoint.clone()),
        interrupt: Some(&INTERRUPTED),
    };
    let outcome = trainer.run(&mut console, &ctl);
    if let Some(b) = &console.bar {
        b.finish_and_clear();
    }
    let summary = match outcome {
        Err(e) => {
            return Err(after_failure(
                e,
                &trainer,
                &checkpoint,
                args.checkpoint_every,
            ))
        }
        Ok(Outcome::Finished(s)) => s,
        Ok(Outcome::Interrupted { step }) => {
            let ckpt = checkpoint.display();
            let save = args
                .save
                .as_ref()
                .map(|p| format!(" --save {}", p.display()))
                .unwrap_or_default();
            eprintln!(
                "interrupted after step {step} of {}: checkpoint written to {ckpt}",
                trainer.total_steps
            );
            eprintln!("resume with: scratchnet train --resume {ckpt}{save}");
            std::process::exit(130);
        }
    };
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
    // The record of the weights kept: the best evaluation's with --keep-best.
    let kept = match (&summary.best, cfg.keep_best) {
        (Some(b), true) => {
            println!(
                "kept the weights of iteration {} (epoch {:.2}): accuracy val {}  test {:.4}",
                b.iter,
                b.epoch,
                b.val_acc.map_or("-".into(), |v| format!("{v:.4}")),
                b.test_acc
            );
            b
        }
        _ => r,
    };
    if let Some(path) = &args.save {
        let mut meta = BTreeMap::new();
        meta.insert(
            "scratchnet.metrics".to_string(),
            serde_json::to_string(kept)?,
        );
        if cfg.keep_best || cfg.patience.is_some() {
            let selection = serde_json::json!({
                "keep_best": cfg.keep_best,
                "patience": cfg.patience,
                "best_iter": summary.best.as_ref().map(|b| b.iter),
                "best_val_acc": summary.best.as_ref().and_then(|b| b.val_acc),
                "stopped_early": summary.stopped_early,
                "last": r,
            });
            meta.insert("scratchnet.selection".to_string(), selection.to_string());
        }
        let model = trainer.model(meta)?;
        if let Err(e) = model.save(path) {
            let note = match rescue(&model, path, &checkpoint) {
                Some(p) => format!("the trained model was saved to {} instead", p.display()),
                None => format!(
                    "the trained model could not be written anywhere (tried beside the checkpoint, here and in {}){}",
                    std::env::temp_dir().display(),
                    checkpoint_note(&checkpoint, args.checkpoint_every)
                ),
            };
            bail!("{e:#}\n{note}");
        }
        println!("saved model to {}", path.display());
    }
    Ok(())
}

/// The error of a run that stopped, with where its work is: a run stopped
/// by anything but divergence (a checkpoint that could not be written, a
/// device error) still holds good weights, kept as a checkpoint where one
/// can be written; after divergence, the last checkpoint written, if any.
fn after_failure(
    e: anyhow::Error,
    trainer: &Trainer<'_>,
    checkpoint: &Path,
    every: Option<u64>,
) -> anyhow::Error {
    let good = e.downcast_ref::<Diverged>().is_none()
        && trainer.step > 0
        && trainer
            .params()
            .is_ok_and(|p| p.iter().all(|v| v.is_finite()));
    let saved = good
        .then(|| trainer.checkpoint().ok())
        .flatten()
        .and_then(|ckpt| rescue(&ckpt, checkpoint, checkpoint));
    let note = match saved {
        Some(p) => format!(
            "\nthe run as of step {} was saved to {p} (scratchnet train --resume {p})",
            trainer.step,
            p = p.display()
        ),
        None => checkpoint_note(checkpoint, every),
    };
    anyhow::anyhow!("{e:#}{note}")
}

/// Where a model goes when it cannot go to `wanted`: `NAME.rescued.safetensors`
/// beside the checkpoint, in the working directory, or in the system's
/// temporary folder, the first that takes it (never over an existing file).
fn rescue(model: &Model, wanted: &Path, checkpoint: &Path) -> Option<PathBuf> {
    let stem = wanted
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let name = format!("{stem}.rescued.safetensors");
    let beside = checkpoint.parent().filter(|d| !d.as_os_str().is_empty());
    let folders = beside
        .map(Path::to_path_buf)
        .into_iter()
        .chain([PathBuf::from("."), std::env::temp_dir()]);
    folders
        .map(|d| {
            let p = d.join(&name);
            match p.exists() {
                true => d.join(format!("{stem}.rescued-{}.safetensors", std::process::id())),
                false => p,
            }
        })
        .find(|p| !p.exists() && model.save(p).is_ok())
}

/// A line naming the last good checkpoint, where this run wrote one.
fn checkpoint_note(checkpoint: &Path, every: Option<u64>) -> String {
    match every.is_some() && checkpoint.is_file() {
        true => format!(
            "\nthe last good checkpoint, {0}, is intact (scratchnet train --resume {0})",
            checkpoint.display()
        ),
        false => String::new(),
    }
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
