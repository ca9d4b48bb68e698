//! Optimisers over the flat parameter buffer, and learning-rate schedules.

pub mod adam;
pub mod schedule;
pub mod sgd;

use serde::{Deserialize, Serialize};
use std::ops::Range;

pub use adam::Adam;
pub use schedule::{LrSchedule, RegSchedule};
pub use sgd::Sgd;

/// L2 decay of one tensor: the step uses `g + k·p` as the gradient of the
/// parameters in `range` (in the same pass, so the gradient is not
/// rewritten first).
#[derive(Clone, Debug, PartialEq)]
pub struct Decay {
    pub range: Range<usize>,
    pub k: f32,
}

/// Calls `f(piece, k)` for consecutive pieces of the chunk of parameters
/// `offset..offset + len`, split at the edges of the (sorted, disjoint)
/// `decay` ranges; pieces are relative to the chunk, `k` is 0 outside them.
fn for_each_piece(
    offset: usize,
    len: usize,
    decay: &[Decay],
    mut f: impl FnMut(Range<usize>, f32),
) {
    let (mut at, end) = (offset, offset + len);
    for d in decay {
        if d.range.end <= at || d.range.start >= end {
            continue;
        }
        if d.range.start > at {
            f(at - offset..d.range.start - offset, 0.0);
        }
        let stop = d.range.end.min(end);
        f(at.max(d.range.start) - offset..stop - offset, d.k);
        at = stop;
    }
    if at < end {
        f(at - offset..end - offset, 0.0);
    }
}

/// Parameters per parallel chunk of an update: the pass is cheap, so chunks
/// are large.
const CHUNK: usize = 1 << 14;

/// Which update rule to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

    /// Replaces each state buffer `b` (shaped like the parameters) by
    /// `f(b)`: to move it between orders of the parameters.
    pub fn map_buffers(&mut self, mut f: impl FnMut(&[f32]) -> Vec<f32>) {
        match self {
            Optimizer::Adam(a) => {
                a.v = f(&a.v);
                a.s = f(&a.s);
            }
            Optimizer::Sgd(s) => s.velocity = f(&s.velocity),
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

    /// One update of `params` by `grads` (plus `decay`) at learning rate
    /// `lr`; false if some parameter is no longer finite (checked in the
    /// same pass).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], decay: &[Decay], lr: f32) -> bool {
        match self {
            Optimizer::Adam(a) => a.step(params, grads, decay, lr),
            Optimizer::Sgd(s) => s.step(params, grads, decay, lr),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n as u32)
            .map(|i| ((i.wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
            .collect()
    }

    /// Decay inside the step is the same as adding `k·p` to the gradient
    /// first (the notebook's order), bit for bit, for ranges that cross
    /// parallel chunks and leave gaps (biases).
    #[test]
    fn decay_in_the_step_equals_decay_added_to_the_gradient() {
        let n = 3 * CHUNK + 77;
        let decay = [
            Decay {
                range: 5..CHUNK + 9,
                k: 0.3,
            },
            Decay {
                range: CHUNK + 20..CHUNK + 21,
                k: -2.0,
            },
            Decay {
                range: 2 * CHUNK - 3..n - 1,
                k: 1e-4,
            },
        ];
        let (p0, g) = (values(n, 1), values(n, 2));
        for kind in [
            OptimizerKind::Adam,
            OptimizerKind::AdamNb,
            OptimizerKind::Sgd,
        ] {
            let (mut a, mut b) = (p0.clone(), p0.clone());
            let mut fused = Optimizer::new(kind, n, 0.9, 0.999, 1e-8, 0.9);
            let mut plain = fused.clone();
            for _ in 0..2 {
                assert!(fused.step(&mut a, &g, &decay, 0.01));
                // The reference: the gradient plus k times the current parameters.
                let mut added = g.clone();
                for d in &decay {
                    for i in d.range.clone() {
                        added[i] += d.k * b[i];
                    }
                }
                assert!(plain.step(&mut b, &added, &[], 0.01));
            }
            assert_eq!(a, b, "{kind:?}");
            let mut undecayed = p0.clone();
            let mut opt = Optimizer::new(kind, n, 0.9, 0.999, 1e-8, 0.9);
            opt.step(&mut undecayed, &g, &[], 0.01);
            opt.step(&mut undecayed, &g, &[], 0.01);
            assert_ne!(a, undecayed, "{kind:?}: the decay changed nothing");
        }
    }

    #[test]
    fn pieces_cover_the_chunk_in_order() {
        let decay = [
            Decay {
                range: 2..5,
                k: 1.0,
            },
            Decay {
                range: 7..20,
                k: 2.0,
            },
        ];
        let mut seen = Vec::new();
        for_each_piece(3, 10, &decay, |r, k| seen.push((r, k)));
        assert_eq!(seen, [(0..2, 1.0), (2..4, 0.0), (4..10, 2.0)]);
        seen.clear();
        for_each_piece(20, 4, &decay, |r, k| seen.push((r, k)));
        assert_eq!(seen, [(0..4, 0.0)]);
    }

    #[test]
    fn a_step_that_leaves_a_non_finite_parameter_says_so() {
        for kind in [OptimizerKind::Adam, OptimizerKind::Sgd] {
            let mut p = vec![1.0f32; 40];
            let mut g = vec![0.5f32; 40];
            g[33] = f32::NAN;
            let mut opt = Optimizer::new(kind, 40, 0.9, 0.999, 1e-8, 0.9);
            assert!(!opt.step(&mut p, &g, &[], 0.1), "{kind:?}");
            let mut p = vec![1.0f32; 40];
            p[3] = f32::INFINITY;
            let mut opt = Optimizer::new(kind, 40, 0.9, 0.999, 1e-8, 0.9);
            assert!(!opt.step(&mut p, &[0.0; 40], &[], 0.1), "{kind:?}");
        }
    }
}
