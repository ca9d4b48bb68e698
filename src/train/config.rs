//! A training run's settings: what determines a run (its schema), the
//! built-in presets, and the rules every setting keeps, each checked on the
//! typed value in one function ([`TrainConfig::check`]). Errors speak of
//! settings by their names here (`lr`, `batch_size`); the command line
//! renders them as flags (`--lr`), Python as keywords (`lr=`)
//! ([`SettingError::render`]). How a configuration is put together from a
//! preset, a TOML file and given options is [`super::options`]'.

use crate::data::distort::Distortion;
use crate::nn::arch::NOTEBOOK_ARCH;
use crate::nn::dropout::DropoutMode;
use crate::nn::{Arch, InitScheme, Precision};
use crate::optim::{LrSchedule, OptimizerKind, RegSchedule};
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

/// The built-in starting points of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// The default: 12 epochs of minibatch Adam, about 98.7% test in seconds.
    Fast,
    /// 400 epochs on distorted images, about 99.3% test in minutes.
    Best,
    /// The notebook's final run: 10,000 full-batch iterations, about 98.3% test.
    Seed,
}

impl Preset {
    /// The preset's name, as flags, files and keywords give it.
    pub fn name(self) -> &'static str {
        match self {
            Preset::Fast => "fast",
            Preset::Best => "best",
            Preset::Seed => "seed",
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
    pub preset: Preset,
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
    /// TensorBoard's event files go in this folder (not a training
    /// setting: where a run reports).
    #[serde(default)]
    pub tensorboard: Option<String>,
}

impl TrainConfig {
    /// A built-in preset.
    pub fn preset(preset: Preset) -> TrainConfig {
        let seed = TrainConfig {
            preset: Preset::Seed,
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
            tensorboard: None,
        };
        // `fast` and `best` were chosen by measurement on the validation
        // split (docs/ACCURACY.md).
        let fast = TrainConfig {
            preset: Preset::Fast,
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
            ..seed.clone()
        };
        match preset {
            Preset::Seed => seed,
            Preset::Fast => fast,
            Preset::Best => TrainConfig {
                preset: Preset::Best,
                epochs: Some(400),
                shift: 2,
                rotate: 10.0,
                scale: 0.1,
                shear: 0.2,
                elastic: 1.5,
                eval_every: Some(10 * 391),
                ..fast
            },
        }
    }

    /// Every setting's name (the TOML key; the flag is the same with
    /// dashes): the keys of a configuration.
    pub fn option_names() -> Vec<String> {
        let cfg = serde_json::to_value(TrainConfig::preset(Preset::Fast))
            .expect("a configuration serialises");
        cfg.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Checks every setting's own rule, in the order of the fields; the
    /// first broken one is the error, naming the setting and its value.
    pub fn check(&self) -> Result<(), SettingError> {
        let c = self;
        let positive = |v: f32| v.is_finite() && v > 0.0;
        let within = |v: f32, lo: f32, hi: f32| v >= lo && v < hi;
        let within_top = |v: f32, lo: f32, hi: f32| v >= lo && v <= hi;
        if let Err(e) = Arch::parse(&c.arch, 1, 10) {
            return Err(SettingError::new(setting!(c.arch), format!("{e:#}")));
        }
        rule!(c.iters, c.iters != Some(0), "must be at least 1");
        rule!(c.epochs, c.epochs != Some(0), "must be at least 1");
        rule!(
            c.batch_size,
            c.batch_size != BatchSize::Mini(0),
            "must be `full` or at least 1"
        );
        rule!(
            c.lr,
            positive(c.lr),
            "a learning rate must be a finite number > 0"
        );
        rule!(c.beta1, within(c.beta1, 0.0, 1.0), "must be in [0, 1)");
        rule!(c.beta2, within(c.beta2, 0.0, 1.0), "must be in [0, 1)");
        rule!(c.eps, positive(c.eps), "must be a finite number > 0");
        rule!(
            c.momentum,
            within(c.momentum, 0.0, 1.0),
            "must be in [0, 1)"
        );
        rule!(
            c.lr_floor,
            within_top(c.lr_floor, 0.0, 1.0),
            "must be in [0, 1]"
        );
        rule!(c.lr_step_every, c.lr_step_every != 0, "must be at least 1");
        rule!(
            c.lr_step_factor,
            positive(c.lr_step_factor),
            "must be a finite number > 0"
        );
        rule!(
            c.l2,
            !c.l2.is_empty() && c.l2.iter().all(|l| l.is_finite() && *l >= 0.0),
            "L2 factors must be finite and >= 0"
        );
        rule!(
            c.keep,
            !c.keep.is_empty() && c.keep.iter().all(|k| *k > 0.0 && *k <= 1.0),
            "keep probabilities must be in (0, 1]"
        );
        rule!(c.shift, c.shift <= 8, "must be at most 8 pixels");
        rule!(
            c.rotate,
            within_top(c.rotate, 0.0, 45.0),
            "must be in [0, 45] degrees"
        );
        rule!(
            c.scale,
            within_top(c.scale, 0.0, 0.5),
            "must be in [0, 0.5]"
        );
        rule!(c.shear, within_top(c.shear, 0.0, 1.0), "must be in [0, 1]");
        rule!(
            c.elastic,
            within_top(c.elastic, 0.0, 8.0),
            "must be in [0, 8] pixels"
        );
        rule!(c.patience, c.patience != Some(0), "must be at least 1");
        rule!(c.eval_every, c.eval_every != Some(0), "must be at least 1");
        rule!(
            c.tensorboard,
            c.tensorboard.as_ref().is_none_or(|d| !d.trim().is_empty()),
            "must name a folder"
        );
        Ok(())
    }

    /// [`TrainConfig::check`], then the settings against the network: one
    /// length of run, and an L2 factor for all weight matrices or one each,
    /// a keep probability for all hidden branches or one each.
    pub fn check_against(&self, arch: &Arch) -> Result<(), SettingError> {
        let c = self;
        c.check()?;
        if c.iters.is_some() == c.epochs.is_some() {
            return Err(SettingError::new(
                setting!(c.iters),
                "give exactly one of {iters} and {epochs}",
            ));
        }
        let (weights, branches) = (arch.weight_matrices(), arch.hidden_branches());
        rule!(
            c.l2,
            c.l2.len() == 1 || c.l2.len() == weights,
            format!(
                "{} values; give 1 or one per weight matrix ({weights})",
                c.l2.len()
            )
        );
        rule!(
            c.keep,
            c.keep.len() == 1 || c.keep.len() == branches,
            format!(
                "{} values; give 1 or one per hidden branch ({branches})",
                c.keep.len()
            )
        );
        Ok(())
    }

    /// The architecture for data with `inputs` pixels and `classes` classes.
    pub fn arch(&self, inputs: usize, classes: usize) -> anyhow::Result<Arch> {
        Arch::parse(&self.arch, inputs, classes)
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
}

/// A setting and its value, named by the field itself: a renamed field
/// cannot keep a stale name.
macro_rules! setting {
    ($cfg:ident . $field:ident) => {
        (stringify!($field), serde_json::to_value(&$cfg.$field).ok())
    };
}
pub(crate) use setting;

/// The error naming `$cfg.$field` unless `$ok`: `$problem` says what is
/// expected.
macro_rules! rule {
    ($cfg:ident . $field:ident, $ok:expr, $problem:expr) => {
        if !$ok {
            return Err(SettingError::new(setting!($cfg.$field), $problem));
        }
    };
}
use rule;

/// What is wrong with a setting, in the library's terms; [`SettingError::render`]
/// spells it as the caller's user gave it.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingError {
    /// The setting's name (`lr`, `batch_size`), or an unknown one given.
    pub setting: String,
    /// The value it has, where it has one.
    pub value: Option<Value>,
    /// The configuration file that gave it, where one did.
    pub place: Option<Box<Place>>,
    pub problem: Problem,
}

/// Where in a configuration file a setting was given.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub file: String,
    /// Its line, where the key stands on one of its own.
    pub line: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// No such setting; the nearest names, or all of them.
    Unknown(String),
    /// What the value should be; a setting it names stands in braces,
    /// `{lr}`, to be spelled as the user spells settings.
    Invalid(String),
}

/// How a caller's user names settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spelling {
    /// As the configuration (and a TOML file) names them: `batch_size = 128`.
    Setting,
    /// As command-line flags: `--batch-size 128`.
    Flag,
    /// As Python keyword arguments: `batch_size=128`.
    Keyword,
}

impl Spelling {
    /// Setting `name` as this user writes it.
    pub fn name(self, name: &str) -> String {
        match self {
            Spelling::Setting => name.to_string(),
            Spelling::Flag => format!("--{}", name.replace('_', "-")),
            Spelling::Keyword => format!("{name}="),
        }
    }

    /// `text` with each `{setting}` in it spelled as this user names it, in
    /// backticks.
    pub fn spell(self, text: &str) -> String {
        let mut text = text.to_string();
        for name in TrainConfig::option_names() {
            let spelt = format!("`{}`", self.name(&name).trim_end_matches('='));
            text = text.replace(&format!("{{{name}}}"), &spelt);
        }
        text
    }

    /// `name` given `value`, as this user wrote it.
    fn given(self, name: &str, value: &Value) -> String {
        let item = |v: &Value| match (self, v) {
            // Python writes a float as `-1.0`; flags and TOML as `-1`.
            (Spelling::Keyword, Value::Number(n)) if n.is_f64() => {
                format!("{:?}", n.as_f64().unwrap_or(f64::NAN) as f32)
            }
            (_, Value::Number(n)) if n.is_f64() => {
                (n.as_f64().unwrap_or(f64::NAN) as f32).to_string()
            }
            (Spelling::Flag, Value::String(s)) => s.clone(),
            (Spelling::Keyword, Value::String(s)) => format!("'{s}'"),
            (Spelling::Keyword, Value::Bool(b)) => (if *b { "True" } else { "False" }).into(),
            (Spelling::Keyword, Value::Null) => "None".into(),
            (Spelling::Flag, Value::Null) => "(not a finite number)".into(),
            (_, v) => v.to_string(),
        };
        let value = match (self, value) {
            (Spelling::Flag, Value::Array(items)) => {
                items.iter().map(item).collect::<Vec<_>>().join(",")
            }
            (_, Value::Array(items)) => {
                format!(
                    "[{}]",
                    items.iter().map(item).collect::<Vec<_>>().join(", ")
                )
            }
            (_, v) => item(v),
        };
        match self {
            Spelling::Setting => format!("{name} = {value}"),
            Spelling::Flag => format!("{} {value}", self.name(name)),
            Spelling::Keyword => format!("{}{value}", self.name(name)),
        }
    }
}

impl SettingError {
    /// `problem` with the setting `(name, value)`.
    pub fn new((setting, value): (&str, Option<Value>), problem: impl Into<String>) -> Self {
        SettingError {
            setting: setting.to_string(),
            value,
            place: None,
            problem: Problem::Invalid(problem.into()),
        }
    }

    /// The error as a user of `spelling` reads it: the setting (as given in
    /// a file, where it was), its value, the problem; setting names in the
    /// problem spelled alike.
    pub fn render(&self, spelling: Spelling) -> String {
        // A file names settings as the configuration does.
        let spelling = match self.place {
            Some(_) => Spelling::Setting,
            None => spelling,
        };
        let place = match self.place.as_deref() {
            Some(Place {
                file,
                line: Some(line),
            }) => format!("{file}, line {line}: "),
            Some(Place { file, line: None }) => format!("{file}: "),
            None => String::new(),
        };
        let spell_names = |text: &str| spelling.spell(text);
        match &self.problem {
            Problem::Unknown(nearest) => format!(
                "{place}unknown {} `{}`{}",
                if spelling == Spelling::Keyword {
                    "keyword"
                } else {
                    "option"
                },
                self.setting,
                spell_names(nearest)
            ),
            Problem::Invalid(problem) => {
                let given = match &self.value {
                    Some(v) => spelling.given(&self.setting, v),
                    None => spelling
                        .name(&self.setting)
                        .trim_end_matches('=')
                        .to_string(),
                };
                format!("{place}{given}: {}", spell_names(problem))
            }
        }
    }
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Spelling::Setting))
    }
}

impl std::error::Error for SettingError {}

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

    /// Every rule names a setting the configuration has, with its value,
    /// spelled as each caller's users write it.
    #[test]
    fn errors_name_the_setting_as_each_user_writes_it() {
        let mut c = TrainConfig::preset(Preset::Fast);
        c.batch_size = BatchSize::Mini(0);
        let e = c.check().unwrap_err();
        assert!(TrainConfig::option_names().contains(&e.setting));
        assert_eq!(
            e.render(Spelling::Setting),
            "batch_size = 0: must be `full` or at least 1"
        );
        assert_eq!(
            e.render(Spelling::Flag),
            "--batch-size 0: must be `full` or at least 1"
        );
        assert_eq!(
            e.render(Spelling::Keyword),
            "batch_size=0: must be `full` or at least 1"
        );
        let mut c = TrainConfig::preset(Preset::Seed);
        c.keep = vec![0.9, 1.5];
        let e = c.check().unwrap_err();
        assert_eq!(
            e.render(Spelling::Flag),
            "--keep 0.9,1.5: keep probabilities must be in (0, 1]"
        );
        assert_eq!(
            e.render(Spelling::Keyword),
            "keep=[0.9, 1.5]: keep probabilities must be in (0, 1]"
        );
        let mut c = TrainConfig::preset(Preset::Fast);
        c.iters = Some(5);
        let arch = Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap();
        let e = c.check_against(&arch).unwrap_err();
        assert_eq!(
            e.render(Spelling::Flag),
            "--iters 5: give exactly one of `--iters` and `--epochs`"
        );
        assert_eq!(
            e.render(Spelling::Keyword),
            "iters=5: give exactly one of `iters` and `epochs`"
        );
        let e = SettingError {
            place: Some(Box::new(Place {
                file: "run.toml".into(),
                line: Some(3),
            })),
            ..SettingError::new(
                ("keep", Some(json!([1.5]))),
                "keep probabilities must be in (0, 1]",
            )
        };
        assert_eq!(
            e.render(Spelling::Flag),
            "run.toml, line 3: keep = [1.5]: keep probabilities must be in (0, 1]"
        );
    }

    /// Each preset keeps every rule.
    #[test]
    fn presets_keep_the_rules() {
        let arch = Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap();
        for p in [Preset::Fast, Preset::Best, Preset::Seed] {
            TrainConfig::preset(p).check_against(&arch).unwrap();
        }
    }
}
