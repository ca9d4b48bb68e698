//! Where a run writes, checked before any work and kept after a failure:
//! no trained model is lost to its output path. A model that cannot be
//! written where asked goes beside the checkpoint, to the working
//! directory or to the system's temporary folder, and the error says where.

use super::trainer::{Diverged, Trainer};
use crate::fsutil::{check_extension, check_output_file};
use crate::model_io::Model;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where the checkpoint goes when `--checkpoint` is not given.
pub const DEFAULT_CHECKPOINT: &str = "checkpoint.safetensors";

/// A run's outputs.
#[derive(Clone, Debug, Default)]
pub struct Outputs {
    /// The trained model (`--save`).
    pub save: Option<PathBuf>,
    /// The evaluations, one JSON object a line (`--metrics`, appended to).
    pub metrics: Option<PathBuf>,
    /// `--checkpoint`, if given.
    pub checkpoint: Option<PathBuf>,
    /// `--checkpoint-every`: steps between checkpoints.
    pub checkpoint_every: Option<usize>,
}

impl Outputs {
    /// The checkpoint's path: `--checkpoint`, or the default.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.checkpoint
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CHECKPOINT))
    }

    /// Checks that every output can be written, before any work: errors
    /// name the option and the path.
    pub fn check(&self) -> Result<()> {
        for (option, path, example) in [
            ("--save", &self.save, "model.safetensors"),
            ("--metrics", &self.metrics, "run.jsonl"),
        ] {
            if let Some(p) = path {
                check_extension(option, p)?;
                check_output_file(option, p, example)?;
            }
        }
        if self.checkpoint.is_some() || self.checkpoint_every.is_some() {
            let path = self.checkpoint_path();
            check_extension("--checkpoint", &path)?;
            check_output_file("--checkpoint", &path, DEFAULT_CHECKPOINT)?;
        }
        Ok(())
    }

    /// The options that continue a run with these outputs (the metrics
    /// file is appended to, so a resumed run goes on recording).
    pub fn resume_options(&self) -> Vec<String> {
        let mut args = vec!["--resume".to_string(), shell_word(&self.checkpoint_path())];
        for (flag, path) in [
            ("--save", &self.save),
            ("--metrics", &self.metrics),
            ("--checkpoint", &self.checkpoint),
        ] {
            if let Some(p) = path {
                args.extend([flag.to_string(), shell_word(p)]);
            }
        }
        if let Some(n) = self.checkpoint_every {
            args.extend(["--checkpoint-every".to_string(), n.to_string()]);
        }
        args
    }

    /// Saves `model` to `--save`; where that fails, to a rescue path, and
    /// the error says where it went.
    pub fn save(&self, model: &Model) -> Result<Option<PathBuf>> {
        let Some(path) = &self.save else {
            return Ok(None);
        };
        let checkpoint = self.checkpoint_path();
        match model.save(path) {
            Ok(()) => Ok(Some(path.clone())),
            Err(e) => {
                let note = match rescue(model, path, &checkpoint) {
                    Some(p) => format!("the trained model was saved to {} instead", p.display()),
                    None => format!(
                        "the trained model could not be written anywhere (tried beside the checkpoint, here and in {}){}",
                        std::env::temp_dir().display(),
                        self.checkpoint_note()
                    ),
                };
                anyhow::bail!("{e:#}\n{note}")
            }
        }
    }

    /// The error of a run that stopped, with where its work is: a run
    /// stopped by anything but divergence (a checkpoint that could not be
    /// written, a device error) still holds good weights, kept as a
    /// checkpoint where one can be written; after divergence, the last
    /// checkpoint written, if any.
    pub fn after_failure(&self, e: anyhow::Error, trainer: &Trainer<'_>) -> anyhow::Error {
        let checkpoint = self.checkpoint_path();
        let good = e.downcast_ref::<Diverged>().is_none()
            && trainer.step > 0
            && trainer
                .params()
                .is_ok_and(|p| p.iter().all(|v| v.is_finite()));
        let saved = good
            .then(|| trainer.checkpoint().ok())
            .flatten()
            .and_then(|ckpt| rescue(&ckpt, &checkpoint, &checkpoint));
        let note = match saved {
            Some(p) => format!(
                "\nthe run as of step {} was saved to {p} (scratchnet train --resume {p})",
                trainer.step,
                p = p.display()
            ),
            None => self.checkpoint_note(),
        };
        anyhow::anyhow!("{e:#}{note}")
    }

    /// A line naming the last good checkpoint, where this run wrote one.
    fn checkpoint_note(&self) -> String {
        let checkpoint = self.checkpoint_path();
        match self.checkpoint_every.is_some() && checkpoint.is_file() {
            true => format!(
                "\nthe last good checkpoint, {0}, is intact (scratchnet train --resume {0})",
                checkpoint.display()
            ),
            false => String::new(),
        }
    }
}

/// Where a model goes when it cannot go to `wanted`:
/// `NAME.rescued.safetensors` beside the checkpoint, in the working
/// directory, or in the system's temporary folder, the first that takes it
/// (never over an existing file).
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

/// `path` as one word of a shell command (quoted where it needs to be).
pub fn shell_word(path: &Path) -> String {
    let s = path.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c);
    match !s.is_empty() && s.chars().all(plain) {
        true => s.into_owned(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_options_carry_every_output_and_quote_paths() {
        let o = Outputs {
            save: Some("my model.safetensors".into()),
            metrics: Some("run.jsonl".into()),
            checkpoint: None,
            checkpoint_every: Some(500),
        };
        assert_eq!(
            o.resume_options().join(" "),
            "--resume checkpoint.safetensors --save 'my model.safetensors' --metrics run.jsonl --checkpoint-every 500"
        );
        assert_eq!(shell_word(Path::new("it's")), r"'it'\''s'");
    }
}
