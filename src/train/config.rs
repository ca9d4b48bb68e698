//! A training run's configuration: presets, overlaid by a TOML file, overlaid
//! by command-line flags, then validated. The resolved configuration is
//! printed at start and stored in the model file.

use crate::data::distort::Distortion;
use crate::nn::arch::NOTEBOOK_ARCH;
use crate::nn::dropout::DropoutMode;
use crate::nn::{Arch, InitScheme, Precision};
use crate::optim::{LrSchedule, OptimizerKind, RegSchedule};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::str::FromStr;

/// Samples per step: the whole training set, or a minibatch size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchSize {
    Full,
    Mini(usize),
}

impl FromStr for BatchSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(BatchSize::Full),
            n => n
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .map(BatchSize::Mini)
                .ok_or_else(|| format!("`{s}` is not `full` or a positive integer")),
        }
    }
}

impl fmt::Display for BatchSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchSize::Full => write!(f, "full"),
            BatchSize::Mini(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for BatchSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BatchSize::Full => s.serialize_str("full"),
            BatchSize::Mini(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            N(u64),
            S(String),
        }
        match Repr::deserialize(d)? {
            Repr::N(n) => Ok(BatchSize::Mini(n as usize)),
            Repr::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Learning-rate schedule kinds, flat so flags and TOML keys stay simple.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LrKind {
    Constant,
    Cosine,
    Step,
}

/// Everything that determines a training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// The preset this configuration started from.
    pub preset: String,
    /// Hidden layers, e.g. `relu:128|tanh:64,relu:48`.
    pub arch: String,
    /// How the weights are drawn (`--init FILE` gives them instead).
    #[serde(alias = "init")]
    pub init_scheme: InitScheme,
    pub seed: u64,
    /// Training steps; exactly one of `iters` and `epochs` is set.
    pub iters: Option<usize>,
    pub epochs: Option<usize>,
    pub batch_size: BatchSize,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub momentum: f32,
    pub lr_schedule: LrKind,
    /// Cosine: final rate as a fraction of `lr`.
    pub lr_floor: f32,
    /// Step: multiply by `lr_step_factor` every `lr_step_every` steps.
    pub lr_step_every: usize,
    pub lr_step_factor: f32,
    /// L2 factor of each weight matrix (W11, W12, W2, W3), or one for all.
    pub l2: Vec<f32>,
    /// The notebook's L2 schedule period in steps (0: off).
    pub reg_every: usize,
    /// Dropout keep probability of each hidden branch, or one for all.
    pub keep: Vec<f32>,
    pub dropout: DropoutMode,
    /// Largest random shift of training images in pixels (0: no augmentation).
    pub shift: usize,
    /// Distortions of training images (see [`crate::data::distort`]): the
    /// largest rotation in degrees, change of size and shear as fractions,
    /// and elastic displacement in pixels; 0 is none.
    #[serde(default)]
    pub rotate: f32,
    #[serde(default)]
    pub scale: f32,
    #[serde(default)]
    pub shear: f32,
    #[serde(default)]
    pub elastic: f32,
    /// Keep the weights of the best validation accuracy seen at an
    /// evaluation, not the last ones.
    #[serde(default)]
    pub keep_best: bool,
    /// Stop after this many evaluations without a better validation
    /// accuracy.
    #[serde(default)]
    pub patience: Option<usize>,
    /// Evaluate every this many steps (default: 50 full-batch, once per epoch otherwise).
    pub eval_every: Option<usize>,
    /// Validation images taken from the end of the IDX training set.
    pub val_size: usize,
    /// The first layer's products: float32 (`f32`), or plain bfloat16 with
    /// float32 sums (`bf16`) on a matrix unit where the CPU has one.
    #[serde(default)]
    pub precision: Precision,
}

/// Names of the built-in presets.
pub const PRESETS: &[&str] = &["fast", "best", "seed"];

impl TrainConfig {
    /// A built-in preset by name.
    pub fn preset(name: &str) -> Result<TrainConfig> {
        let seed = TrainConfig {
            preset: "seed".into(),
            arch: NOTEBOOK_ARCH.into(),
            init_scheme: InitScheme::Notebook,
            seed: 4,
            iters: Some(10_000),
            epochs: None,
            batch_size: BatchSize::Full,
            optimizer: OptimizerKind::AdamNb,
            lr: 0.001,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            momentum: 0.9,
            lr_schedule: LrKind::Constant,
            lr_floor: 0.0,
            lr_step_every: 1000,
            lr_step_factor: 0.5,
            l2: vec![1.19, 1.05, 1.07, 2.22],
            reg_every: 1000,
            keep: vec![0.9],
            dropout: DropoutMode::Unit,
            shift: 0,
            rotate: 0.0,
            scale: 0.0,
            shear: 0.0,
            elastic: 0.0,
            keep_best: false,
            patience: None,
            eval_every: Some(50),
            val_size: 10_000,
            precision: Precision::F32,
        };
        match name {
            "seed" => Ok(seed),
            // Both chosen by measurement on the validation split
            // (docs/ACCURACY.md).
            "fast" => Ok(TrainConfig {
                preset: "fast".into(),
                seed: 1,
                iters: None,
                epochs: Some(12),
                batch_size: BatchSize::Mini(128),
                optimizer: OptimizerKind::Adam,
                lr: 0.003,
                beta2: 0.99,
                eps: 1e-8,
                lr_schedule: LrKind::Cosine,
                lr_floor: 0.0,
                reg_every: 0,
                keep: vec![1.0],
                dropout: DropoutMode::Sample,
                shift: 1,
                // Every 3 epochs (of 391 steps): an evaluation of the
                // three splits costs a third of an epoch's training.
                eval_every: Some(3 * 391),
                ..seed
            }),
            "best" => Ok(TrainConfig {
                preset: "best".into(),
                epochs: Some(400),
                shift: 2,
                rotate: 10.0,
                scale: 0.1,
                shear: 0.2,
                elastic: 1.5,
                eval_every: Some(10 * 391),
                ..TrainConfig::preset("fast")?
            }),
            other => bail!(
                "--preset `{other}` is unknown (presets: {})",
                PRESETS.join(", ")
            ),
        }
    }

    /// Every option's configuration name (TOML key; the flag is the same
    /// with dashes): the keys of a configuration.
    pub fn option_names() -> Vec<String> {
        let cfg = serde_json::to_value(TrainConfig::preset("fast").expect("the default preset"))
            .expect("a configuration serialises");
        cfg.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// `; did you mean `x`?` for the option name nearest `key` (or the
    /// list of options, where none is near).
    pub fn suggest(key: &str) -> String {
        suggestion(key, &TrainConfig::option_names())
    }

    /// Resolves a configuration: the preset (named by `overrides` or the TOML
    /// file, else `fast`), then the TOML file's keys, then `overrides` (a JSON
    /// object of flag values). Each option given is checked as it comes: an
    /// error names the option and the value given, and for the file its
    /// name and line; a list option also takes one value for all.
    ///
    /// `file` is the TOML file's name (as errors call it) and text.
    pub fn resolve(file: Option<(&str, &str)>, overrides: Value) -> Result<TrainConfig> {
        let names = TrainConfig::option_names();
        let file = match file {
            Some((name, text)) => file_options(name, text, &names)?,
            None => Vec::new(),
        };
        let Value::Object(flags) = overrides else {
            bail!("the options are not a table of names and values")
        };
        let mut given = Vec::with_capacity(file.len() + flags.len());
        given.extend(file);
        for (k, v) in flags {
            if !names.contains(&k) {
                bail!("unknown option `{k}`{}", suggestion(&k, &names));
            }
            given.push(Given::new(k, v, None));
        }
        let preset_name = given
            .iter()
            .rev()
            .find(|g| g.key == "preset")
            .and_then(|g| g.value.as_str())
            .unwrap_or("fast")
            .to_string();
        let mut merged = serde_json::to_value(TrainConfig::preset(&preset_name)?)?;
        for g in &given {
            // A step count given at one level replaces the other unit chosen before it.
            match g.key.as_str() {
                "iters" => merged["epochs"] = Value::Null,
                "epochs" => merged["iters"] = Value::Null,
                _ => {}
            }
            merged[&g.key] = g.value.clone();
            let cfg = serde_json::from_value::<TrainConfig>(merged.clone())
                .map_err(|e| g.error(&plain_type_error(&e.to_string())))?;
            if let Some(problem) = cfg.problem(&g.key) {
                return Err(g.error(&problem));
            }
        }
        let mut cfg: TrainConfig = serde_json::from_value(merged)?;
        // A preset's per-layer lists fit the preset's network; for another
        // --arch that was given without them, each list becomes its mean.
        if let Ok(arch) = Arch::parse(&cfg.arch, 1, 10) {
            let given = |k: &str| given.iter().any(|g| g.key == k);
            if !given("l2") && cfg.l2.len() != arch.weight_matrices() {
                cfg.l2 = vec![cfg.l2.iter().sum::<f32>() / cfg.l2.len().max(1) as f32];
            }
            if !given("keep") && cfg.keep.len() != arch.hidden_branches() {
                cfg.keep = vec![cfg.keep.iter().sum::<f32>() / cfg.keep.len().max(1) as f32];
            }
        }
        Ok(TrainConfig {
            preset: preset_name,
            ..cfg
        })
    }

    /// The architecture for data with `inputs` pixels and `classes` classes.
    pub fn arch(&self, inputs: usize, classes: usize) -> Result<Arch> {
        Arch::parse(&self.arch, inputs, classes)
    }

    /// Checks every option, and the options against the network; errors
    /// name the option and its value.
    pub fn validate(&self, arch: &Arch) -> Result<()> {
        let values = serde_json::to_value(self)?;
        for key in TrainConfig::option_names() {
            if let Some(problem) = self.problem(&key) {
                let given = Given::new(key.clone(), values[&key].clone(), None);
                return Err(given.error(&problem));
            }
        }
        if self.iters.is_some() == self.epochs.is_some() {
            bail!("give exactly one of --iters and --epochs");
        }
        let weights = arch.weight_matrices();
        if self.l2.len() != 1 && self.l2.len() != weights {
            bail!(
                "--l2 has {} values; give 1 or one per weight matrix ({weights})",
                self.l2.len()
            );
        }
        let branches = arch.hidden_branches();
        if self.keep.len() != 1 && self.keep.len() != branches {
            bail!(
                "--keep has {} values; give 1 or one per hidden branch ({branches})",
                self.keep.len()
            );
        }
        Ok(())
    }

    /// What is wrong with option `key`'s value, if anything (ranges; the
    /// types are the deserialiser's to check).
    pub fn problem(&self, key: &str) -> Option<String> {
        let finite_above = |v: f32, what: &str| {
            (!(v.is_finite() && v > 0.0)).then(|| format!("{what} must be a finite number > 0"))
        };
        let within = |v: f32, lo: f32, hi: f32, top: bool| {
            let ok = v >= lo && (v < hi || top && v <= hi);
            let end = if top { "]" } else { ")" };
            (!ok).then(|| format!("must be in [{lo}, {hi}{end}"))
        };
        match key {
            "iters" | "epochs" => {
                let n = if key == "iters" {
                    self.iters
                } else {
                    self.epochs
                };
                (n == Some(0)).then(|| "must be at least 1".into())
            }
            "batch_size" => (self.batch_size == BatchSize::Mini(0))
                .then(|| "must be `full` or at least 1".into()),
            "lr" => finite_above(self.lr, "a learning rate"),
            "eps" => finite_above(self.eps, "eps"),
            "lr_step_factor" => finite_above(self.lr_step_factor, "the factor"),
            "beta1" => within(self.beta1, 0.0, 1.0, false),
            "beta2" => within(self.beta2, 0.0, 1.0, false),
            "momentum" => within(self.momentum, 0.0, 1.0, false),
            "lr_floor" => within(self.lr_floor, 0.0, 1.0, true),
            "lr_step_every" | "eval_every" | "patience" => {
                let n = match key {
                    "lr_step_every" => Some(self.lr_step_every),
                    "eval_every" => self.eval_every,
                    _ => self.patience,
                };
                (n == Some(0)).then(|| "must be at least 1".into())
            }
            "l2" => (self.l2.is_empty() || self.l2.iter().any(|l| !(l.is_finite() && *l >= 0.0)))
                .then(|| "L2 factors must be finite and >= 0".into()),
            "keep" => (self.keep.is_empty() || self.keep.iter().any(|k| !(*k > 0.0 && *k <= 1.0)))
                .then(|| "keep probabilities must be in (0, 1]".into()),
            "shift" => (self.shift > 8).then(|| "must be at most 8 pixels".into()),
            "rotate" => within(self.rotate, 0.0, 45.0, true),
            "scale" => within(self.scale, 0.0, 0.5, true),
            "shear" => within(self.shear, 0.0, 1.0, true),
            "elastic" => within(self.elastic, 0.0, 8.0, true),
            "arch" => Arch::parse(&self.arch, 1, 10)
                .err()
                .map(|e| format!("{e:#}")),
            _ => None,
        }
    }

    /// One L2 factor per weight matrix.
    pub fn l2_factors(&self, arch: &Arch) -> Vec<f32> {
        expand(&self.l2, arch.weight_matrices())
    }

    /// One keep probability per hidden branch.
    pub fn keeps(&self, arch: &Arch) -> Vec<f32> {
        expand(&self.keep, arch.hidden_branches())
    }

    pub fn lr_schedule(&self) -> LrSchedule {
        match self.lr_schedule {
            LrKind::Constant => LrSchedule::Constant,
            LrKind::Cosine => LrSchedule::Cosine {
                floor: self.lr_floor,
            },
            LrKind::Step => LrSchedule::Step {
                every: self.lr_step_every,
                factor: self.lr_step_factor,
            },
        }
    }

    pub fn reg_schedule(&self) -> RegSchedule {
        RegSchedule {
            every: self.reg_every,
        }
    }

    /// The distortions of training images.
    pub fn distortion(&self) -> Distortion {
        Distortion {
            rotate: self.rotate,
            scale: self.scale,
            shear: self.shear,
            elastic: self.elastic,
        }
    }

    /// Steps in one pass over `n` training samples.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        crate::data::batch::steps_per_epoch(n, self.minibatch())
    }

    /// Steps of the whole run, on `n` training samples.
    pub fn total_steps(&self, n: usize) -> usize {
        self.iters
            .unwrap_or_else(|| self.epochs.unwrap_or(1) * self.steps_per_epoch(n))
    }

    /// Minibatch size, or `None` for full batch.
    pub fn minibatch(&self) -> Option<usize> {
        match self.batch_size {
            BatchSize::Full => None,
            BatchSize::Mini(n) => Some(n),
        }
    }

    /// Pretty TOML, the form printed at start and accepted by `--config`.
    pub fn to_toml(&self) -> String {
        match toml::Table::try_from(self) {
            Ok(t) => toml_text(t),
            Err(e) => format!("# cannot print configuration: {e}"),
        }
    }

    /// The preset and the options that differ from it, as TOML that
    /// `--config` reads back to this configuration.
    pub fn changes_toml(&self) -> String {
        let (Ok(now), Ok(preset)) = (
            toml::Table::try_from(self),
            TrainConfig::preset(&self.preset).and_then(|p| Ok(toml::Table::try_from(p)?)),
        ) else {
            return self.to_toml();
        };
        // A step count in the other unit than the preset's replaces it when
        // read back, as the flag did: the preset's own need not be undone.
        let changes = now
            .into_iter()
            .filter(|(k, v)| k == "preset" || preset.get(k) != Some(v))
            .collect();
        toml_text(changes)
    }
}

/// An option given in the TOML file (with its line) or as a flag.
struct Given {
    key: String,
    value: Value,
    /// The file's name and the option's line in it.
    line: Option<(String, usize)>,
}

impl Given {
    /// Option `key` given `value`; a list option's single value becomes a
    /// list of one.
    fn new(key: String, value: Value, line: Option<(String, usize)>) -> Given {
        let value = match (key.as_str(), value) {
            ("l2" | "keep", v @ Value::Number(_)) => Value::Array(vec![v]),
            (_, v) => v,
        };
        Given { key, value, line }
    }

    /// An error about this option: named as the file or the flags name it,
    /// with the value given.
    fn error(&self, problem: &str) -> anyhow::Error {
        match &self.line {
            Some((file, n)) => {
                let shown = match &self.value {
                    Value::Array(items) => {
                        format!(
                            "[{}]",
                            items.iter().map(number).collect::<Vec<_>>().join(", ")
                        )
                    }
                    v => number(v),
                };
                anyhow::anyhow!(
                    "--config {file}, line {n}: {} = {shown}: {problem}",
                    self.key
                )
            }
            None => {
                let shown = match &self.value {
                    Value::Array(items) => items.iter().map(number).collect::<Vec<_>>().join(","),
                    Value::String(s) => s.clone(),
                    Value::Null => "(not a finite number)".into(),
                    v => number(v),
                };
                anyhow::anyhow!("--{} {shown}: {problem}", self.key.replace('_', "-"))
            }
        }
    }
}

/// A value as the options take it: a decimal number at float32's
/// precision (0.9, not 0.8999999761581421), anything else as JSON.
fn number(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => (n.as_f64().unwrap_or(f64::NAN) as f32).to_string(),
        v => v.to_string(),
    }
}

/// The options a TOML file sets, each with its line; unknown keys get a
/// suggestion, values that are not finite numbers an error.
fn file_options(name: &str, text: &str, names: &[String]) -> Result<Vec<Given>> {
    let table = toml::from_str::<toml::Table>(text)
        .with_context(|| format!("--config {name}: not valid TOML"))?;
    let line_of = |key: &str| {
        text.lines().position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .or_else(|| l.strip_prefix(&format!("\"{key}\"")))
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
    };
    let mut given = Vec::new();
    for (k, v) in table {
        let line = line_of(&k).map(|n| n + 1);
        let at = match line {
            Some(n) => format!("--config {name}, line {n}: "),
            None => format!("--config {name}: "),
        };
        if !names.contains(&k) {
            bail!("{at}unknown option `{k}`{}", suggestion(&k, names));
        }
        if let Some(bad) = non_finite(&v) {
            bail!("{at}{k} = {bad}: expected a finite number");
        }
        let value = serde_json::to_value(v)?;
        given.push(Given::new(k, value, line.map(|n| (name.to_string(), n))));
    }
    given.sort_by_key(|g| g.line.as_ref().map(|l| l.1));
    Ok(given)
}

/// The first value in `v` that is a float but not finite.
fn non_finite(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(*f),
        toml::Value::Array(items) => items.iter().find_map(non_finite),
        _ => None,
    }
}

/// ` (did you mean `x`?)` for the option name nearest `key`, where one is
/// near; `init` is the scheme's old key.
fn suggestion(key: &str, names: &[String]) -> String {
    if key == "init" {
        return "; did you mean `init_scheme`? (`--init FILE` starts from saved weights)".into();
    }
    let nearest = names
        .iter()
        .map(|n| (edits(key, n), n))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, n)| *d <= 2.max(n.len() / 4));
    match nearest {
        Some((_, n)) => format!("; did you mean `{n}`?"),
        None => format!(" (options: {})", names.join(", ")),
    }
}

/// The edit distance between two words (insertions, deletions, changes).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// A deserialiser's complaint about a value's type, in words.
fn plain_type_error(e: &str) -> String {
    let e = e.split(" at line ").next().unwrap_or(e);
    [
        ("expected f32", "expected a number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected a boolean", "expected true or false"),
        ("invalid type: null", "not a finite number"),
    ]
    .iter()
    .fold(e.to_string(), |e, (from, to)| e.replace(from, to))
}

/// `table` as TOML, the preset first, each number as the float32 it is
/// (0.9, not 0.8999999761581421).
fn toml_text(mut table: toml::Table) -> String {
    fn shortest(v: &mut toml::Value) {
        match v {
            toml::Value::Float(f) => *f = (*f as f32).to_string().parse().unwrap_or(*f),
            toml::Value::Array(items) => items.iter_mut().for_each(shortest),
            _ => {}
        }
    }
    table.iter_mut().for_each(|(_, v)| shortest(v));
    let mut first = toml::Table::new();
    if let Some(p) = table.remove("preset") {
        first.insert("preset".into(), p);
    }
    let text = |t: &toml::Table| toml::to_string(t).unwrap_or_else(|e| format!("# {e}\n"));
    text(&first) + &text(&table)
}

fn expand(v: &[f32], n: usize) -> Vec<f32> {
    if v.len() == 1 {
        vec![v[0]; n]
    } else {
        v.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preset_then_file_then_flags() {
        let cfg = TrainConfig::resolve(
            Some(("run.toml", "preset = \"seed\"\nlr = 0.01\niters = 7\n")),
            json!({"lr": 0.02, "keep": [0.8]}),
        )
        .unwrap();
        assert_eq!(cfg.preset, "seed");
        assert_eq!(cfg.lr, 0.02);
        assert_eq!(cfg.iters, Some(7));
        assert_eq!(cfg.keep, vec![0.8]);
        assert_eq!(cfg.l2, vec![1.19, 1.05, 1.07, 2.22]);
        // epochs on the command line replaces the preset's iters.
        let cfg = TrainConfig::resolve(None, json!({"preset": "seed", "epochs": 2})).unwrap();
        assert_eq!((cfg.iters, cfg.epochs), (None, Some(2)));
    }

    #[test]
    fn printed_configuration_reads_back() {
        let cfg = TrainConfig::preset("fast").unwrap();
        let back = TrainConfig::resolve(Some(("printed", &cfg.to_toml())), json!({})).unwrap();
        assert_eq!(back, cfg);
        // The short form: the preset and what differs from it.
        for over in [
            json!({"preset": "seed", "epochs": 2, "lr": 0.01, "keep": [0.8]}),
            json!({"iters": 100, "arch": "relu:300"}),
            json!({}),
        ] {
            let cfg = TrainConfig::resolve(None, over.clone()).unwrap();
            let short = cfg.changes_toml();
            let back = TrainConfig::resolve(Some(("printed", &short)), json!({})).unwrap();
            assert_eq!(back, cfg, "{over}: {short}");
            assert!(
                short.lines().count() <= 1 + over.as_object().unwrap().len() + 2,
                "{short}"
            );
        }
    }

    #[test]
    fn another_arch_takes_the_mean_of_the_presets_lists() {
        let cfg = TrainConfig::resolve(None, json!({"arch": "relu:300"})).unwrap();
        assert_eq!(cfg.l2, vec![(1.19 + 1.05 + 1.07 + 2.22) / 4.0]);
        let cfg =
            TrainConfig::resolve(None, json!({"arch": "relu:300", "l2": [1.0, 2.0]})).unwrap();
        assert_eq!(cfg.l2, vec![1.0, 2.0]);
    }

    /// Every bad value is an error naming the option and the value, and in
    /// the file its line; unknown names get the nearest known one.
    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let file_error = |text: &str| {
            format!(
                "{:#}",
                TrainConfig::resolve(Some(("run.toml", text)), json!({})).unwrap_err()
            )
        };
        let flag_error =
            |over: Value| format!("{:#}", TrainConfig::resolve(None, over).unwrap_err());
        for (text, want) in [
            (
                "lrr = 1",
                "--config run.toml, line 1: unknown option `lrr`; did you mean `lr`?",
            ),
            (
                "epochs = 2\ninit = \"he\"",
                "line 2: unknown option `init`; did you mean `init_scheme`?",
            ),
            ("lr = inf", "line 1: lr = inf: expected a finite number"),
            (
                "keep = [0.5, nan]",
                "line 1: keep = NaN: expected a finite number",
            ),
            (
                "# a run\n\nkeep = 1.5",
                "line 3: keep = [1.5]: keep probabilities must be in (0, 1]",
            ),
            (
                "keep = [0.9, 1.5]",
                "line 1: keep = [0.9, 1.5]: keep probabilities",
            ),
            (
                "lr = \"fast\"",
                "line 1: lr = \"fast\": invalid type: string \"fast\", expected a number",
            ),
            ("epochs = 0", "line 1: epochs = 0: must be at least 1"),
            ("beta2 = 1.0", "line 1: beta2 = 1: must be in [0, 1)"),
            ("arch = \"relu:0\"", "line 1: arch = \"relu:0\""),
            ("lr = 0.1\n[extra]\nx = 1", "unknown option `extra`"),
        ] {
            let e = file_error(text);
            assert!(e.contains(want), "{text:?}: {e}");
        }
        for (over, want) in [
            (
                json!({"lrr": 1}),
                "unknown option `lrr`; did you mean `lr`?",
            ),
            (
                json!({"lr": -1.0}),
                "--lr -1: a learning rate must be a finite number > 0",
            ),
            (json!({"lr": null}), "--lr (not a finite number)"),
            (
                json!({"keep": [0.9, 1.5]}),
                "--keep 0.9,1.5: keep probabilities must be in (0, 1]",
            ),
            (
                json!({"momentum": 1.5}),
                "--momentum 1.5: must be in [0, 1)",
            ),
            (json!({"preset": "nope"}), "--preset `nope` is unknown"),
        ] {
            let e = flag_error(over.clone());
            assert!(e.contains(want), "{over}: {e}");
        }
        // One value for a list option, in the file as on the command line.
        let cfg =
            TrainConfig::resolve(Some(("run.toml", "keep = 0.9\nl2 = 1")), json!({})).unwrap();
        assert_eq!((cfg.keep, cfg.l2), (vec![0.9], vec![1.0]));
        // Models saved before the scheme's key was renamed still read.
        let mut old = serde_json::to_value(TrainConfig::preset("seed").unwrap()).unwrap();
        let scheme = old.as_object_mut().unwrap().remove("init_scheme").unwrap();
        old["init"] = scheme;
        assert_eq!(
            serde_json::from_value::<TrainConfig>(old).unwrap(),
            TrainConfig::preset("seed").unwrap()
        );
        let arch = Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap();
        let cfg = TrainConfig::resolve(None, json!({"l2": [1.0, 2.0]})).unwrap();
        let e = cfg.validate(&arch).unwrap_err().to_string();
        assert!(e.contains("--l2 has 2 values"), "{e}");
    }
}
