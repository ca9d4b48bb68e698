//! Putting a run's settings together from what a user gives: a preset,
//! overlaid by a TOML file's options (each with its line), overlaid by
//! given options (command-line flags, Python keyword arguments), each
//! checked as it comes, so that an error names what was given and where;
//! the printed form of a configuration, which a file reads back; the
//! nearest name for an unknown one.

use super::config::{Place, Preset, Problem, SettingError, Spelling, TrainConfig};
use crate::nn::Arch;
use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde_json::Value;

impl TrainConfig {
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
                return Err(unknown(&k, None).into());
            }
            given.push(Given::new(k, v, None));
        }
        let mut preset = Preset::Fast;
        for g in given.iter().filter(|g| g.key == "preset") {
            preset = serde_json::from_value(g.value.clone()).map_err(|_| {
                let presets = Preset::value_variants().iter().map(|p| p.name());
                g.error(&format!(
                    "no such preset (presets: {})",
                    presets.collect::<Vec<_>>().join(", ")
                ))
            })?;
        }
        let mut merged = serde_json::to_value(TrainConfig::preset(preset))?;
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
            // The settings before this one were checked as they came.
            cfg.check().map_err(|e| match e.setting == g.key {
                true => g.error_of(e),
                false => e,
            })?;
        }
        let mut cfg: TrainConfig = serde_json::from_value(merged)?;
        // A preset's per-layer lists fit the preset's network; for another
        // `arch` that was given without them, each list becomes its mean.
        if let Ok(arch) = Arch::parse(&cfg.arch, 1, 10) {
            let given = |k: &str| given.iter().any(|g| g.key == k);
            if !given("l2") && cfg.l2.len() != arch.weight_matrices() {
                cfg.l2 = vec![cfg.l2.iter().sum::<f32>() / cfg.l2.len().max(1) as f32];
            }
            if !given("keep") && cfg.keep.len() != arch.hidden_branches() {
                cfg.keep = vec![cfg.keep.iter().sum::<f32>() / cfg.keep.len().max(1) as f32];
            }
        }
        Ok(TrainConfig { preset, ..cfg })
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
            toml::Table::try_from(TrainConfig::preset(self.preset)),
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
    /// The file's name and the option's line in it, where it has one.
    line: Option<Box<Place>>,
}

impl Given {
    /// Option `key` given `value`; a list option's single value becomes a
    /// list of one.
    fn new(key: String, value: Value, line: Option<Box<Place>>) -> Given {
        let value = match (key.as_str(), value) {
            ("l2" | "keep", v @ Value::Number(_)) => Value::Array(vec![v]),
            (_, v) => v,
        };
        Given { key, value, line }
    }

    /// `problem` with this option, as it was given.
    fn error(&self, problem: &str) -> SettingError {
        SettingError {
            setting: self.key.clone(),
            value: Some(self.value.clone()),
            place: self.line.clone(),
            problem: Problem::Invalid(problem.into()),
        }
    }

    /// `e`, about this option, placed where it was given, with the value
    /// as given.
    fn error_of(&self, e: SettingError) -> SettingError {
        SettingError {
            value: Some(self.value.clone()),
            place: self.line.clone(),
            ..e
        }
    }
}

/// The options a TOML file sets, each with its line; unknown keys get a
/// suggestion, values that are not finite numbers an error.
fn file_options(name: &str, text: &str, names: &[String]) -> Result<Vec<Given>> {
    let table =
        toml::from_str::<toml::Table>(text).with_context(|| format!("{name}: not valid TOML"))?;
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
        let place = Some(Box::new(Place {
            file: name.to_string(),
            line: line_of(&k).map(|n| n + 1),
        }));
        if !names.contains(&k) {
            return Err(unknown(&k, place).into());
        }
        if let Some(bad) = non_finite(&v) {
            return Err(SettingError {
                setting: k,
                value: None,
                place,
                problem: Problem::Invalid(format!("{bad} is not a finite number")),
            }
            .into());
        }
        let value = serde_json::to_value(v)?;
        given.push(Given::new(k, value, place));
    }
    given.sort_by_key(|g| g.line.as_ref().map(|l| l.line));
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

/// Setting `key`, which does not exist, given (in a file, where `place`
/// says): the error, with the nearest name.
pub fn unknown(key: &str, place: Option<Box<Place>>) -> SettingError {
    SettingError {
        setting: key.to_string(),
        value: None,
        place,
        problem: Problem::Unknown(suggestion(key, &TrainConfig::option_names())),
    }
}

/// `; did you mean `x`?` for the setting nearest `key`, where one is near
/// (else the list of names), spelled as `spelling` names settings.
pub fn nearest(key: &str, spelling: Spelling) -> String {
    spelling.spell(&suggestion(key, &TrainConfig::option_names()))
}

/// [`nearest`] among `names`; `init` is the scheme's old key.
fn suggestion(key: &str, names: &[String]) -> String {
    if key == "init" {
        return "; did you mean {init_scheme}? (how the weights are drawn; starting weights from a file are not a setting)".into();
    }
    let nearest = names
        .iter()
        .map(|n| (edits(key, n), n))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, n)| *d <= 2.max(n.len() / 4));
    match nearest {
        Some((_, n)) => format!("; did you mean {{{n}}}?"),
        None => {
            let all: Vec<String> = names.iter().map(|n| format!("{{{n}}}")).collect();
            format!(" (options: {})", all.join(", "))
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::NOTEBOOK_ARCH;
    use serde_json::json;

    #[test]
    fn preset_then_file_then_options() {
        let cfg = TrainConfig::resolve(
            Some(("run.toml", "preset = \"seed\"\nlr = 0.01\niters = 7\n")),
            json!({"lr": 0.02, "keep": [0.8]}),
        )
        .unwrap();
        assert_eq!(cfg.preset, Preset::Seed);
        assert_eq!(cfg.lr, 0.02);
        assert_eq!(cfg.iters, Some(7));
        assert_eq!(cfg.keep, vec![0.8]);
        assert_eq!(cfg.l2, vec![1.19, 1.05, 1.07, 2.22]);
        // epochs given replaces the preset's iters.
        let cfg = TrainConfig::resolve(None, json!({"preset": "seed", "epochs": 2})).unwrap();
        assert_eq!((cfg.iters, cfg.epochs), (None, Some(2)));
    }

    #[test]
    fn printed_configuration_reads_back() {
        let cfg = TrainConfig::preset(Preset::Fast);
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

    /// Every bad value is an error naming the setting and the value, and in
    /// the file its line; unknown names get the nearest known one.
    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let file_error = |text: &str| {
            let e = TrainConfig::resolve(Some(("run.toml", text)), json!({})).unwrap_err();
            format!("{e:#}")
        };
        let given_error =
            |over: Value| format!("{:#}", TrainConfig::resolve(None, over).unwrap_err());
        for (text, want) in [
            (
                "lrr = 1",
                "run.toml, line 1: unknown option `lrr`; did you mean `lr`?",
            ),
            (
                "epochs = 2\ninit = \"he\"",
                "line 2: unknown option `init`; did you mean `init_scheme`?",
            ),
            ("lr = inf", "line 1: lr: inf is not a finite number"),
            (
                "keep = [0.5, nan]",
                "line 1: keep: NaN is not a finite number",
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
            (
                "arch = \"relu:0\"",
                "line 1: arch = \"relu:0\": branch `relu:0`",
            ),
            (
                "preset = \"nope\"",
                "line 1: preset = \"nope\": no such preset (presets: fast, best, seed)",
            ),
            (
                "lr = 0.1\n[extra]\nx = 1",
                "run.toml: unknown option `extra`",
            ),
            ("lr = ", "run.toml: not valid TOML"),
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
                "lr = -1: a learning rate must be a finite number > 0",
            ),
            (json!({"lr": null}), "lr = null: not a finite number"),
            (
                json!({"keep": [0.9, 1.5]}),
                "keep = [0.9, 1.5]: keep probabilities must be in (0, 1]",
            ),
            (
                json!({"momentum": 1.5}),
                "momentum = 1.5: must be in [0, 1)",
            ),
            (
                json!({"preset": "nope"}),
                "preset = \"nope\": no such preset",
            ),
        ] {
            let e = given_error(over.clone());
            assert!(e.contains(want), "{over}: {e}");
        }
        // One value for a list option, in the file as given.
        let cfg =
            TrainConfig::resolve(Some(("run.toml", "keep = 0.9\nl2 = 1")), json!({})).unwrap();
        assert_eq!((cfg.keep, cfg.l2), (vec![0.9], vec![1.0]));
        // Models saved before the scheme's key was renamed still read.
        let mut old = serde_json::to_value(TrainConfig::preset(Preset::Seed)).unwrap();
        let scheme = old.as_object_mut().unwrap().remove("init_scheme").unwrap();
        old["init"] = scheme;
        assert_eq!(
            serde_json::from_value::<TrainConfig>(old).unwrap(),
            TrainConfig::preset(Preset::Seed)
        );
        let arch = Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap();
        let cfg = TrainConfig::resolve(None, json!({"l2": [1.0, 2.0]})).unwrap();
        let e = cfg.check_against(&arch).unwrap_err().to_string();
        assert!(
            e.contains("l2 = [1, 2]: 2 values; give 1 or one per weight matrix (4)"),
            "{e}"
        );
    }
}
