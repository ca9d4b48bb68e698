//! A run's random choices given as data rather than drawn from the seed:
//! each step's samples and their shifts and, optionally, each step's
//! per-sample dropout masks. Another implementation of the same math (the
//! numpy reference of `tests/it/golden.rs`) and scratchnet can then start
//! from the same inputs and be compared step by step.

use crate::data::batch::GivenBatches;
use crate::nn::dropout::GivenMasks;
use crate::nn::Layout;
use anyhow::{bail, Result};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Replay {
    pub batches: GivenBatches,
    /// Each step's masks; none: drawn from the seed.
    pub masks: Option<Vec<GivenMasks>>,
}

impl Replay {
    /// Steps given.
    pub fn steps(&self) -> usize {
        self.batches.ids.len()
    }

    /// Checks the masks against the network: one set per step, a mask of
    /// `[rows, outputs]` for each hidden layer of each.
    pub fn check_masks(&self, layout: &Layout) -> Result<()> {
        let hidden = &layout.layers[..layout.layers.len() - 1];
        for (step, (masks, ids)) in self
            .masks
            .iter()
            .flatten()
            .zip(&self.batches.ids)
            .enumerate()
        {
            if masks.layers.len() != hidden.len() {
                bail!(
                    "step {step}: masks of {} layers for {} hidden layers",
                    masks.layers.len(),
                    hidden.len()
                );
            }
            for (l, (m, layer)) in masks.layers.iter().zip(hidden).enumerate() {
                if m.len() != ids.len() * layer.outputs {
                    bail!(
                        "step {step}: hidden layer {l}'s mask has {} values, not {} rows x {}",
                        m.len(),
                        ids.len(),
                        layer.outputs
                    );
                }
            }
        }
        match &self.masks {
            Some(m) if m.len() != self.steps() => {
                bail!("masks for {} steps, batches for {}", m.len(), self.steps())
            }
            _ => Ok(()),
        }
    }
}
