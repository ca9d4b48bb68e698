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

    /// One update of `params` by `grads` at learning rate `lr`.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        match self {
            Optimizer::Adam(a) => a.step(params, grads, lr),
            Optimizer::Sgd(s) => s.step(params, grads, lr),
        }
    }
}
