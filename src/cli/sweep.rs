//! `scratchnet sweep`: the notebook's search loop as a command. Random
//! search over learning rate (log-uniform), each L2 factor and each keep
//! probability; results appended to `results.jsonl` as trials finish (a
//! rerun skips those), a CSV table sorted by validation accuracy, and the
//! best model saved.

use super::{Common, Verbosity};
use anyhow::{bail, Context, Result};
use rand::{RngExt, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use scratchnet::backend::Target;
use scratchnet::data::{Dataset, CLASSES};
use scratchnet::fsutil::{check_output_dir, write_atomic};
use scratchnet::nn::dropout::stream_key;
use scratchnet::train::{Observer, Outcome, Preset, RunControl, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  scratchnet sweep --trials 20 --epochs 3 --out sweep1
  scratchnet sweep --preset seed --iters 1000 --trials 8 --lr 1e-4:1e-2 --l2 0.5:2.5 --keep 0.8:1
Rerunning the same command continues: finished trials are skipped.")]
pub struct SweepArgs {
    /// Number of trials
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    trials: u32,
    /// Starting configuration of every trial
    #[arg(long, default_value = "fast", value_parser = searched_presets())]
    preset: Preset,
    /// Passes over the training set per trial
    #[arg(long, conflicts_with = "iters", value_parser = clap::value_parser!(u64).range(1..))]
    epochs: Option<u64>,
    /// Steps per trial
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    iters: Option<u64>,
    /// Learning-rate range, drawn log-uniformly
    #[arg(long, default_value = "1e-4:1e-2", value_name = "LO:HI")]
    lr: Range,
    /// Range of every L2 factor, each drawn uniformly
    #[arg(long, default_value = "0:3", value_name = "LO:HI")]
    l2: Range,
    /// Range of every keep probability, each drawn uniformly
    #[arg(long, default_value = "0.8:1", value_name = "LO:HI")]
    keep: Range,
    /// Seed of the search (the trials' own seed stays the preset's)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory for results.jsonl, results.csv and best.safetensors
    #[arg(long, default_value = "sweep", value_name = "DIR")]
    out: PathBuf,
    #[command(flatten)]
    pub(super) common: Common,
}

/// The presets whose trials a search runs: `best`'s 400 epochs a trial
/// would be no search.
fn searched_presets() -> impl clap::builder::TypedValueParser<Value = Preset> {
    use clap::builder::TypedValueParser;
    use clap::ValueEnum;
    clap::builder::PossibleValuesParser::new([Preset::Fast.name(), Preset::Seed.name()])
        .map(|name| Preset::from_str(&name, false).expect("a preset"))
}

/// An inclusive range `lo:hi`.
#[derive(Clone, Copy, Debug)]
struct Range(f32, f32);

impl FromStr for Range {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not LO:HI"))?;
        let (a, b) = (
            a.trim().parse::<f32>().map_err(|e| format!("`{a}`: {e}"))?,
            b.trim().parse::<f32>().map_err(|e| format!("`{b}`: {e}"))?,
        );
        if !(a.is_finite() && b.is_finite() && a <= b) {
            return Err(format!("`{s}`: need finite LO <= HI"));
        }
        Ok(Range(a, b))
    }
}

/// One finished trial, as stored in results.jsonl.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct TrialResult {
    trial: u32,
    lr: f32,
    l2: Vec<f32>,
    keep: Vec<f32>,
    val_acc: f64,
    test_acc: f64,
    train_acc: f64,
    #[serde(rename = "J")]
    j: f64,
    seconds: f64,
}

/// The settings of trial `i`: a pure function of (search seed, i).
fn draw(args: &SweepArgs, i: u32, weights: usize, branches: usize) -> (f32, Vec<f32>, Vec<f32>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(stream_key(args.seed, i as u64, 0x5eed));
    let (lo, hi) = (
        args.lr.0.max(f32::MIN_POSITIVE).ln(),
        args.lr.1.max(f32::MIN_POSITIVE).ln(),
    );
    let lr = (lo + (hi - lo) * rng.random::<f32>()).exp();
    let mut uniform = |r: Range| r.0 + (r.1 - r.0) * rng.random::<f32>();
    let l2 = (0..weights).map(|_| uniform(args.l2)).collect();
    let keep = (0..branches).map(|_| uniform(args.keep)).collect();
    (lr, l2, keep)
}

struct Quiet;
impl Observer for Quiet {}

pub fn run(args: SweepArgs, v: Verbosity) -> Result<()> {
    if args.lr.0 <= 0.0 {
        bail!(
            "--lr {}:{}: learning rates must be > 0",
            args.lr.0,
            args.lr.1
        );
    }
    if args.l2.0 < 0.0 {
        bail!("--l2 {}:{}: factors must be >= 0", args.l2.0, args.l2.1);
    }
    if args.keep.0 <= 0.0 || args.keep.1 > 1.0 {
        bail!(
            "--keep {}:{}: probabilities must be in (0, 1]",
            args.keep.0,
            args.keep.1
        );
    }
    check_output_dir("--out", &args.out)?;
    let threads = rayon::current_num_threads();
    let mut base = json!({"preset": args.preset});
    match (args.epochs, args.iters) {
        (Some(e), _) => base["epochs"] = json!(e),
        (_, Some(i)) => base["iters"] = json!(i),
        _ => {}
    }
    let base = TrainConfig::resolve(None, base).map_err(super::as_flags)?;
    let path = args.common.data_path()?;
    let data = Dataset::load(&path, (!path.is_file()).then_some(base.val_size))?;
    if data.val.is_empty() {
        bail!(
            "a sweep ranks trials by validation accuracy, but {} has no validation split",
            path.display()
        );
    }
    let arch = base.arch(data.features(), CLASSES)?;
    let jsonl = args.out.join("results.jsonl");
    same_settings(&args, &base, &data, jsonl.exists(), v)?;

    let mut done: BTreeMap<u32, TrialResult> = BTreeMap::new();
    if jsonl.exists() {
        for (n, line) in std::fs::read_to_string(&jsonl)?.lines().enumerate() {
            match serde_json::from_str::<TrialResult>(line) {
                Ok(r) => {
                    done.insert(r.trial, r);
                }
                Err(e) => eprintln!(
                    "{}:{}: ignoring an unreadable line ({e})",
                    jsonl.display(),
                    n + 1
                ),
            }
        }
        if v > Verbosity::Quiet {
            println!(
                "{}: {} finished trials found; they are skipped",
                jsonl.display(),
                done.len()
            );
        }
    }
    let mut best = done
        .values()
        .map(|r| r.val_acc)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&jsonl)
        .with_context(|| format!("{}: cannot open", jsonl.display()))?;
    let ctl = RunControl {
        checkpoint_path: Some(args.out.join("checkpoint.safetensors")),
        ..RunControl::default()
    };
    for i in 0..args.trials {
        if done.contains_key(&i) {
            continue;
        }
        let (lr, l2, keep) = draw(&args, i, arch.weight_matrices(), arch.hidden_branches());
        let cfg = TrainConfig {
            lr,
            l2: l2.clone(),
            keep: keep.clone(),
            ..base.clone()
        };
        let mut t = Trainer::new(cfg, &data, Target::cpu(threads), None)
            .with_context(|| format!("trial {i}"))?;
        let s = match t.run(&mut Quiet, &ctl) {
            Ok(Outcome::Finished(s)) => s,
            Ok(Outcome::Interrupted { .. }) => unreachable!("no interrupt flag"),
            Err(e) => {
                eprintln!("trial {i} (lr {lr:.2e}): {e:#}");
                continue;
            }
        };
        let r = TrialResult {
            trial: i,
            lr,
            l2,
            keep,
            val_acc: s.last.val_acc.unwrap_or(f64::NAN),
            test_acc: s.last.test_acc,
            train_acc: s.last.train_acc,
            j: s.last.j,
            seconds: s.total_s,
        };
        if v > Verbosity::Quiet {
            println!(
                "trial {i:>3}: lr {:.2e}  l2 {}  keep {}  ->  val {:.4}  test {:.4}  ({:.1} s)",
                r.lr,
                fmt_list(&r.l2),
                fmt_list(&r.keep),
                r.val_acc,
                r.test_acc,
                r.seconds
            );
        }
        if r.val_acc > best {
            best = r.val_acc;
            let mut model = t.trained_model()?;
            let trial = ("scratchnet.sweep_trial".to_string(), i.to_string());
            model.metadata.extend([trial]);
            model.save(&args.out.join("best.safetensors"))?;
        }
        writeln!(log, "{}", serde_json::to_string(&r)?)?;
        log.flush()?;
        done.insert(i, r);
    }

    let mut table: Vec<&TrialResult> = done.values().collect();
    table.sort_by(|a, b| b.val_acc.total_cmp(&a.val_acc));
    let mut csv = String::from("trial,lr,l2,keep,val_acc,test_acc,train_acc,J,seconds\n");
    println!(
        "\n{:>5}  {:>9}  {:<28}  {:<20}  {:>7}  {:>7}",
        "trial", "lr", "l2", "keep", "val", "test"
    );
    for r in &table {
        println!(
            "{:>5}  {:>9.2e}  {:<28}  {:<20}  {:>7.4}  {:>7.4}",
            r.trial,
            r.lr,
            fmt_list(&r.l2),
            fmt_list(&r.keep),
            r.val_acc,
            r.test_acc
        );
        csv += &format!(
            "{},{},\"{}\",\"{}\",{},{},{},{},{:.2}\n",
            r.trial,
            r.lr,
            fmt_list(&r.l2),
            fmt_list(&r.keep),
            r.val_acc,
            r.test_acc,
            r.train_acc,
            r.j,
            r.seconds
        );
    }
    write_atomic(&args.out.join("results.csv"), csv.as_bytes())?;
    if let Some(b) = table.first() {
        println!(
            "\nbest: trial {} (val {:.4}); model in {}",
            b.trial,
            b.val_acc,
            args.out.join("best.safetensors").display()
        );
    }
    Ok(())
}

/// What makes two sweeps the same search: their trials drawn alike and
/// trained alike, on the same data (the number of trials may grow).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Settings {
    preset: Preset,
    epochs: Option<usize>,
    iters: Option<usize>,
    lr: [f32; 2],
    l2: [f32; 2],
    keep: [f32; 2],
    seed: u64,
    data_sha256: BTreeMap<String, String>,
}

/// Records this sweep's settings in `OUT/settings.json`, or checks them
/// against those recorded: a sweep continues only the same search.
fn same_settings(
    args: &SweepArgs,
    base: &TrainConfig,
    data: &Dataset,
    has_results: bool,
    v: Verbosity,
) -> Result<()> {
    let now = Settings {
        preset: args.preset,
        epochs: base.epochs,
        iters: base.iters,
        lr: [args.lr.0, args.lr.1],
        l2: [args.l2.0, args.l2.1],
        keep: [args.keep.0, args.keep.1],
        seed: args.seed,
        data_sha256: data.checksums.iter().cloned().collect(),
    };
    let path = args.out.join("settings.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let before: Settings = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a sweep's settings", path.display()))?;
            if before != now {
                let was = serde_json::to_value(&before)?;
                let is = serde_json::to_value(&now)?;
                let differ: Vec<String> = is
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, v)| was.get(k.as_str()) != Some(v))
                    .map(|(k, v)| format!("{k} {} (was {})", short(v), short(&was[k.as_str()])))
                    .collect();
                bail!(
                    "{} holds a sweep with other settings: {}; give another --out, or the same settings to continue it",
                    args.out.display(),
                    differ.join(", ")
                );
            }
            Ok(())
        }
        Err(_) => {
            if has_results && v > Verbosity::Quiet {
                eprintln!(
                    "warning: {} holds results with no record of their settings; they are taken to be these",
                    args.out.display()
                );
            }
            write_atomic(&path, serde_json::to_string_pretty(&now)?.as_bytes())
        }
    }
}

/// A setting's value as the error shows it: numbers as the options take
/// them, ranges as `LO:HI`, checksums not at all.
fn short(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(_) => "of other data".into(),
        Value::Number(n) if n.is_f64() => (n.as_f64().unwrap_or(f64::NAN) as f32).to_string(),
        Value::Array(a) => a.iter().map(short).collect::<Vec<_>>().join(":"),
        v => v.to_string(),
    }
}

fn fmt_list(v: &[f32]) -> String {
    v.iter()
        .map(|x| format!("{x:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}
