//! Optimisers over the flat parameter buffer, and learning-rate schedules.

pub mod adam;
pub mod schedule;
pub mod sgd;

use serde::{Deserialize, Serialize};

pub use adam::Adam;
pub use schedule::{LrSchedule, RegSchedule};
pub use sgd::Sgd;

/// Which update rule to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// The notebook's Adam: no bias correction.
    AdamNb,
    /// Standard Adam (Kingma & Ba), with bias correction.
    Adam,
    /// SGD with (heavy-ball) momentum.
    Sgd,
}

/// An optimiser with its state, stepping every parameter at once.
#[derive(Clone, Debug)]
pub enum Optimizer {
    Adam(Adam),
    Sgd(Sgd),
}

impl Optimizer {
    /// A fresh optimiser for `len` parameters.
    pub fn new(
        kind: OptimizerKind,
        len: usize,
        beta1: f32,
        beta2: f32,
        eps: f32,
        momentum: f32,
    ) -> Optimizer {
        match kind {
            OptimizerKind::AdamNb => Optimizer::Adam(Adam::new(len, beta1, beta2, eps, false)),
            OptimizerKind::Adam => Optimizer::Adam(Adam::new(len, beta1, beta2, eps, true)),
            OptimizerKind::Sgd => Optimizer::Sgd(Sgd::new(len, momentum)),
        }
    }

    /// The state a checkpoint must keep: steps taken and named buffers.
    pub fn state(&self) -> (u64, Vec<(&'static str, &[f32])>) {
        match self {
            Optimizer::Adam(a) => (a.t, vec![("adam_v", &a.v), ("adam_s", &a.s)]),
            Optimizer::Sgd(s) => (0, vec![("sgd_velocity", &s.velocity)]),
        }
    }

    /// Restores what [`Optimizer::state`] gave; `get` finds a buffer by name.
    pub fn restore<'a>(
        &mut self,
        t: u64,
        get: impl Fn(&str) -> Option<&'a [f32]>,
    ) -> anyhow::Result<()> {
        let take = |name: &str, dst: &mut Vec<f32>| -> anyhow::Result<()> {
            let src = get(name)
                .ok_or_else(|| anyhow::anyhow!("checkpoint lacks optimiser state `{name}`"))?;
            if src.len() != dst.len() {
                anyhow::bail!(
                    "optimiser state `{name}` has {} values, expected {}",
                    src.len(),
                    dst.len()
                );
            }
            dst.copy_from_slice(src);
            Ok(())
        };
        match self {
            Optimizer::Adam(a) => {
                take("adam_v", &mut a.v)?;
                take("adam_s", &mut a.s)?;
                a.t = t;
            }
            Optimizer::Sgd(s) => take("sgd_velocity", &mut s.velocity)?,
        }
        Ok(())
    }

    /// One update of `params` by `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        match self {
            Optimizer::Adam(a) => a.step(params, grads, lr),
            Optimizer::Sgd(s) => s.step(params, grads, lr),
        }
    }
}
