//! A training command's request turned into a run: its outputs checked
//! before any work, the configuration resolved (the preset, a TOML file,
//! flags) or a checkpoint's taken, and extended where a longer run is
//! asked for, the data loaded, the starting weights read.

use super::checkpoint::Checkpoint;
use super::config::TrainConfig;
use super::outputs::Outputs;
use super::trainer::Trainer;
use crate::backend::Target;
use crate::data::{Dataset, CLASSES};
use crate::model_io::load_init;
use crate::nn::Layout;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::PathBuf;

/// What a `train` command asks for.
#[derive(Clone, Debug)]
pub struct Request {
    /// `--config`: a TOML file of options.
    pub config: Option<PathBuf>,
    /// The flags given, by configuration name (a JSON object).
    pub overrides: Value,
    /// `--init`: starting weights.
    pub init: Option<PathBuf>,
    /// `--resume`: a checkpoint to continue.
    pub resume: Option<PathBuf>,
    /// Where the data is.
    pub data: PathBuf,
    pub outputs: Outputs,
}

/// A run ready to start.
pub struct Launch {
    pub cfg: TrainConfig,
    pub data: Dataset,
    /// The checkpoint a resumed run continues.
    pub resumed: Option<Checkpoint>,
    /// Where a resumed run was made longer: the steps it had.
    pub extended_from: Option<usize>,
    init: Option<Vec<f32>>,
}

impl Launch {
    pub fn new(req: &Request) -> Result<Launch> {
        req.outputs.check()?;
        let resumed = req.resume.as_deref().map(Checkpoint::load).transpose()?;
        let cfg = match &resumed {
            Some(ckpt) => extended(ckpt, req)?,
            None => configure(req)?,
        };
        if let Some(dir) = &cfg.tensorboard {
            crate::fsutil::check_folder("--tensorboard", std::path::Path::new(dir))?;
        }
        let val_given = req.overrides.get("val_size").is_some();
        let val_size =
            (!req.data.is_file() || val_given || resumed.is_some()).then_some(cfg.val_size);
        let data = Dataset::load(&req.data, val_size)?;
        let (mut resumed, mut extended_from) = (resumed, None);
        if let Some(ckpt) = &mut resumed {
            let (was, now) = (
                ckpt.cfg.total_steps(data.train.len()),
                cfg.total_steps(data.train.len()),
            );
            // Where the runs report is no part of what they train.
            let trained = |c: &TrainConfig| TrainConfig {
                tensorboard: None,
                ..c.clone()
            };
            if now < was || (now == was && trained(&cfg) != trained(&ckpt.cfg)) {
                bail!("--resume: the run has {was} steps ({} done); a longer --epochs or --iters extends it, a shorter one cannot", ckpt.step);
            }
            if now > was {
                extended_from = Some(was);
            }
            ckpt.cfg = cfg.clone();
        }
        let init = match &req.init {
            Some(p) => {
                let arch = cfg.arch(data.features(), CLASSES)?;
                Some(load_init(p, &Layout::new(&arch))?)
            }
            None => None,
        };
        Ok(Launch {
            cfg,
            data,
            resumed,
            extended_from,
            init,
        })
    }

    /// The trainer of this run, on `target`.
    pub fn trainer(&self, target: Target) -> Result<Trainer<'_>> {
        match &self.resumed {
            Some(ckpt) => Trainer::resume(ckpt, &self.data, target),
            None => Trainer::new(self.cfg.clone(), &self.data, target, self.init.clone()),
        }
    }
}

/// The configuration of a new run: the preset (named by the flags or the
/// file, else the default), the TOML file's keys, then the flags.
fn configure(req: &Request) -> Result<TrainConfig> {
    let text = match &req.config {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("--config {}: cannot read", p.display()))?,
        ),
        None => None,
    };
    let name = req.config.as_ref().map(|p| p.display().to_string());
    let file = name.as_deref().zip(text.as_deref());
    TrainConfig::resolve(file, req.overrides.clone())
}

/// A checkpoint's configuration, with a new length where `--epochs` or
/// `--iters` gives one, and where `--tensorboard` writes; any other option
/// that would change the run is refused.
fn extended(ckpt: &Checkpoint, req: &Request) -> Result<TrainConfig> {
    let given = req.overrides.as_object().cloned().unwrap_or_default();
    let mut other: Vec<String> = given
        .keys()
        .filter(|k| !["epochs", "iters", "tensorboard"].contains(&k.as_str()))
        .map(|k| format!("--{}", k.replace('_', "-")))
        .collect();
    other.extend(req.config.iter().map(|_| "--config".to_string()));
    other.extend(req.init.iter().map(|_| "--init".to_string()));
    if !other.is_empty() {
        bail!(
            "--resume continues the checkpoint's own configuration; drop the options that would change it ({}); only a longer --epochs or --iters, and --tensorboard, may be given",
            other.join(", ")
        );
    }
    let mut cfg = ckpt.cfg.clone();
    if let Some(dir) = given.get("tensorboard") {
        cfg.tensorboard = dir.as_str().map(String::from);
    }
    for (unit, n) in given.into_iter().filter(|(k, _)| k != "tensorboard") {
        let n = serde_json::from_value::<usize>(n)
            .with_context(|| format!("--{unit}: expected a whole number of steps"))?;
        (cfg.epochs, cfg.iters) = match unit.as_str() {
            "epochs" => (Some(n), None),
            _ => (None, Some(n)),
        };
    }
    Ok(cfg)
}
