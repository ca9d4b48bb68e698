//! Checkpoints: a model file that also holds what a run needs to continue
//! exactly where it was: its configuration, the optimiser's state, the
//! step and the scheduled L2 factors. Batches, dropout masks and shifts are
//! functions of (seed, step), so no generator state is kept.

use super::config::TrainConfig;
use super::metrics::EvalRecord;
use super::selection::Best;
use crate::model_io::{Model, STATE_PREFIX};
use crate::optim::Optimizer;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Metadata keys of models and checkpoints.
pub const CONFIG_KEY: &str = "scratchnet.config";
pub const CHECKPOINT_KEY: &str = "scratchnet.checkpoint";
/// Where model selection is on: the best evaluation so far; its weights are
/// the tensor `state.best`.
const BEST_KEY: &str = "scratchnet.best";
const BEST_PARAMS: &str = "state.best";

/// A checkpoint, read and checked once.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The run's configuration.
    pub cfg: TrainConfig,
    /// The parameters (in rows) and the optimiser's state (`state.*`).
    pub model: Model,
    /// Steps done.
    pub step: usize,
    /// The L2 factors as the schedule left them.
    pub factors: Vec<f32>,
    optimizer_steps: u64,
}

#[derive(Serialize, Deserialize)]
struct State {
    step: usize,
    factors: Vec<f32>,
    optimizer_steps: u64,
}

#[derive(Serialize, Deserialize)]
struct BestState {
    record: EvalRecord,
    since: usize,
}

impl Checkpoint {
    /// Reads a checkpoint file.
    pub fn load(path: &Path) -> Result<Checkpoint> {
        Checkpoint::from_model(Model::load(path)?).with_context(|| format!("{}", path.display()))
    }

    /// The checkpoint a model file holds, if it is one.
    pub fn from_model(model: Model) -> Result<Checkpoint> {
        let meta = |k: &str| {
            model
                .metadata
                .get(k)
                .with_context(|| format!("not a scratchnet checkpoint: no `{k}` in its metadata"))
        };
        let cfg: TrainConfig =
            serde_json::from_str(meta(CONFIG_KEY)?).context("unreadable training configuration")?;
        let state: State =
            serde_json::from_str(meta(CHECKPOINT_KEY)?).context("unreadable checkpoint state")?;
        Ok(Checkpoint {
            cfg,
            step: state.step,
            factors: state.factors,
            optimizer_steps: state.optimizer_steps,
            model,
        })
    }

    /// Model selection's state, where the run had it on.
    pub fn best(&self) -> Result<Option<Best>> {
        let Some(text) = self.model.metadata.get(BEST_KEY) else {
            return Ok(None);
        };
        let b: BestState = serde_json::from_str(text).context("unreadable best evaluation")?;
        let params = self.model.extra.get(BEST_PARAMS).cloned();
        if params
            .as_ref()
            .is_some_and(|p| p.len() != self.model.params.len())
        {
            anyhow::bail!("the best weights are of another network");
        }
        Ok(Some(Best {
            record: b.record,
            params,
            since: b.since,
        }))
    }

    /// Gives `opt` (made from this checkpoint's configuration) its state.
    pub fn restore(&self, opt: &mut Optimizer) -> Result<()> {
        opt.restore(self.optimizer_steps, |n| {
            self.model
                .extra
                .get(&format!("{STATE_PREFIX}{n}"))
                .map(Vec::as_slice)
        })
    }
}

/// `model` (with its configuration in the metadata) made a checkpoint:
/// the step, the L2 factors, `opt`'s state (buffers in rows) and model
/// selection's `best` added.
pub fn write(
    mut model: Model,
    step: usize,
    factors: &[f32],
    opt: &Optimizer,
    best: Option<&Best>,
) -> Result<Model> {
    let (optimizer_steps, buffers) = opt.state();
    let state = State {
        step,
        factors: factors.to_vec(),
        optimizer_steps,
    };
    model
        .metadata
        .insert(CHECKPOINT_KEY.into(), serde_json::to_string(&state)?);
    model.extra = buffers
        .into_iter()
        .map(|(n, v)| (format!("{STATE_PREFIX}{n}"), v.to_vec()))
        .collect();
    if let Some(b) = best {
        let state = BestState {
            record: b.record.clone(),
            since: b.since,
        };
        model
            .metadata
            .insert(BEST_KEY.into(), serde_json::to_string(&state)?);
        if let Some(p) = &b.params {
            model.extra.insert(BEST_PARAMS.into(), p.clone());
        }
    }
    Ok(model)
}
