//! `scratchnet info`: what a model or checkpoint file holds.

use super::{ModelArg, Verbosity};
use anyhow::{Context, Result};
use scratchnet::data::locate::{cache_dir, has_mnist, locate, Origin, DATA_ENV};
use scratchnet::model_io::{Model, VERSION_KEY};
use scratchnet::nn::{Arithmetic, Precision};
use scratchnet::tensor::kernels::{Kernels, KERNELS_ENV};
use scratchnet::train::{EvalRecord, TrainConfig, CHECKPOINT_KEY, CONFIG_KEY, METRICS_KEY};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  scratchnet info model.safetensors\n  scratchnet info --data\n  scratchnet info --data ~/mnist\n  scratchnet info            (this machine: cores, and which kernels compute)"
)]
pub struct InfoArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Say where the commands would read MNIST from, and why (nothing is
    /// downloaded); with DIR, what they would make of `--data DIR`
    #[arg(long, value_name = "DIR", num_args = 0..=1)]
    data: Option<Option<PathBuf>>,
}

pub fn run(args: InfoArgs, _v: Verbosity) -> Result<()> {
    if let Some(dir) = &args.data {
        data(dir.as_deref())?;
    }
    match (args.model.path(), &args.data) {
        (Some(f), _) => model(f),
        (None, Some(_)) => Ok(()),
        (None, None) => {
            machine();
            Ok(())
        }
    }
}

/// The cores, and which kernels compute here (and which the machine has).
fn machine() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("cpu         {}", cpu_model());
    println!("cores       {cores}");
    println!("kernels     {}", kernels_line());
}

/// The CPU's model name, as Linux reports it ("unknown" where it does not).
pub(super) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Which kernel family computes, why, and what else the machine can run:
/// the line `info` and `bench` print.
pub(super) fn kernels_line() -> String {
    let chosen = Kernels::current();
    let why = match std::env::var(KERNELS_ENV) {
        Ok(name) if !name.is_empty() => format!("forced by {KERNELS_ENV}"),
        _ => "the fastest here".into(),
    };
    format!(
        "{} ({why}; this machine runs: {})",
        chosen.name(),
        Kernels::usable()
    )
}

/// What the first layer's products compute for `precision` on this
/// process's kernels: the line `train` prints.
pub(super) fn arithmetic_line(precision: Precision) -> String {
    let kernels = Kernels::current().name();
    match (precision, Arithmetic::current(precision)) {
        (_, Arithmetic::AmxBf16) => "bf16 (the first layer on AMX tiles)".to_string(),
        (Precision::F32, Arithmetic::F32) => format!("f32 (on the {kernels} kernels)"),
        (Precision::Bf16, Arithmetic::F32) => {
            format!("f32: bf16 needs AMX tiles, which the {kernels} kernels lack")
        }
    }
}

/// Where the data comes from (`flag`: the `--data` given): the rule that
/// chose it, then the places in the order they are tried.
fn data(flag: Option<&Path>) -> Result<()> {
    let found = locate(flag)?;
    let state = match has_mnist(&found.path) || found.path.is_file() {
        true => "present",
        false if found.origin == Origin::Cache => "empty: downloaded there on first use",
        false => "missing",
    };
    println!(
        "data        {} ({}; {state})",
        found.path.display(),
        found.origin
    );
    let env = std::env::var(DATA_ENV).unwrap_or_default();
    let cache = cache_dir().map_or("none on this system".into(), |c| c.display().to_string());
    println!("looked in   --data, ${DATA_ENV} ({}), ./data/mnist, the source's bundled copy, the user cache ({cache})",
        if env.is_empty() { "unset" } else { &env });
    Ok(())
}

fn model(file: &Path) -> Result<()> {
    let m = Model::load(file)?;
    let meta = |k: &str| m.metadata.get(k).map(String::as_str);
    let kind = if meta(CHECKPOINT_KEY).is_some() {
        "checkpoint"
    } else {
        "model"
    };
    println!(
        "{}: scratchnet {kind}, written by scratchnet {}",
        file.display(),
        meta(VERSION_KEY).unwrap_or("?")
    );
    println!("network     {}", m.layout.arch);
    println!("arch        {}", m.layout.arch.spec());
    println!("parameters  {}", m.layout.len);
    let tensors: Vec<String> = m
        .layout
        .tensors()
        .map(|t| format!("{} {:?}", t.name, t.shape))
        .collect();
    println!("tensors     {}", tensors.join(", "));
    if let Some(steps) = meta("scratchnet.steps") {
        println!("steps       {steps}");
    }
    if let Some(r) = meta(METRICS_KEY) {
        let r: EvalRecord = serde_json::from_str(r).context("unreadable final metrics")?;
        let val = r
            .val_acc
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into());
        println!("final       accuracy train {:.4}  val {val}  test {:.4}  (J {:.6}, epoch {:.2}, {:.1} s)", r.train_acc, r.test_acc, r.j, r.epoch, r.elapsed_s);
    }
    if let Some(d) = meta("scratchnet.data_sha256") {
        let files: Vec<(String, String)> =
            serde_json::from_str(d).context("unreadable data checksums")?;
        for (name, sum) in files {
            println!("data        {name}  sha256 {sum}");
        }
    }
    if let Some(c) = meta(CONFIG_KEY) {
        let cfg: TrainConfig =
            serde_json::from_str(c).context("unreadable training configuration")?;
        println!("--- training configuration ---\n{}---", cfg.to_toml());
    }
    Ok(())
}
