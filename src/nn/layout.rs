//! All parameters in one flat buffer with named views (as llm.c does): the
//! optimiser step is one loop, and saving is one pass over the names.
//!
//! Layer `l` stores its branches' weight matrices stacked (`out x in`,
//! row-major, branch after branch) and then its biases. Stacking makes a
//! parallel block's forward one product whose output columns are the
//! branches' concatenation, with no copy. [`Layout`] names the ranges;
//! [`super::Params`] holds the values.

use super::arch::{Activation, Arch};
use rand::{RngExt, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// One named tensor inside the flat buffer (the notebook's W11, b11, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTensor {
    pub name: String,
    /// `[out, in]` for weights, `[out, 1]` for biases (the notebook's shapes).
    pub shape: [usize; 2],
    pub range: Range<usize>,
}

/// A branch within a dense layer: its columns of the layer's output and its
/// activation (`None` for the output layer's logits).
#[derive(Clone, Debug, PartialEq)]
pub struct BranchSlot {
    pub cols: Range<usize>,
    pub act: Option<Activation>,
    /// Index among hidden branches (dropout) and among weights (L2).
    pub index: usize,
}

/// One dense layer (a hidden stage or the output).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerLayout {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Range<usize>,
    pub b: Range<usize>,
    pub branches: Vec<BranchSlot>,
}

/// Where every parameter lives in the flat buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub arch: Arch,
    pub layers: Vec<LayerLayout>,
    /// Weight tensors in order (W11, W12, W2, W3 for the notebook): L2 applies to these.
    pub weights: Vec<ParamTensor>,
    /// Bias tensors, in the same order.
    pub biases: Vec<ParamTensor>,
    pub len: usize,
}

/// How weights are initialised: N(0, 1) * sqrt(gain / fan_in), biases zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InitScheme {
    /// The notebook's gains: 2 for the first hidden stage and the output, 1 for later hidden stages.
    Notebook,
    /// Gain 2 everywhere (He).
    He,
    /// Gain 1 everywhere (LeCun / Xavier-style for fan-in).
    Xavier,
}

impl Layout {
    pub fn new(arch: &Arch) -> Layout {
        let mut layers = Vec::new();
        let (mut weights, mut biases) = (Vec::new(), Vec::new());
        let mut at = 0;
        let mut inputs = arch.inputs;
        let stages = arch.hidden.len();
        let mut hidden_index = 0;
        for s in 0..=stages {
            let branches: Vec<(Option<Activation>, usize)> = if s < stages {
                arch.hidden[s]
                    .iter()
                    .map(|b| (Some(b.act), b.width))
                    .collect()
            } else {
                vec![(None, arch.classes)]
            };
            let outputs: usize = branches.iter().map(|b| b.1).sum();
            let w = at..at + outputs * inputs;
            let b = w.end..w.end + outputs;
            at = b.end;
            let mut slots = Vec::new();
            let mut col = 0;
            for (j, &(act, width)) in branches.iter().enumerate() {
                let name = if branches.len() > 1 {
                    format!("{}{}", s + 1, j + 1)
                } else {
                    format!("{}", s + 1)
                };
                weights.push(ParamTensor {
                    name: format!("W{name}"),
                    shape: [width, inputs],
                    range: w.start + col * inputs..w.start + (col + width) * inputs,
                });
                biases.push(ParamTensor {
                    name: format!("b{name}"),
                    shape: [width, 1],
                    range: b.start + col..b.start + col + width,
                });
                slots.push(BranchSlot {
                    cols: col..col + width,
                    act,
                    index: hidden_index,
                });
                hidden_index += 1;
                col += width;
            }
            layers.push(LayerLayout {
                inputs,
                outputs,
                w,
                b,
                branches: slots,
            });
            inputs = outputs;
        }
        Layout {
            arch: arch.clone(),
            layers,
            weights,
            biases,
            len: at,
        }
    }

    /// Every tensor, weights and biases interleaved as the notebook lists them
    /// (W11, b11, W12, b12, ...).
    pub fn tensors(&self) -> impl Iterator<Item = &ParamTensor> {
        self.weights
            .iter()
            .zip(&self.biases)
            .flat_map(|(w, b)| [w, b])
    }

    /// Fresh parameters, in rows, from a seeded generator; draws weights in
    /// the notebook's order (W11, W12, W2, W3), each row-major.
    pub fn init(&self, scheme: InitScheme, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut params = vec![0.0f32; self.len];
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let gain = match scheme {
                InitScheme::Notebook if l == 0 || l == last => 2.0,
                InitScheme::Notebook => 1.0,
                InitScheme::He => 2.0,
                InitScheme::Xavier => 1.0,
            };
            let std = (gain / layer.inputs as f64).sqrt();
            for p in &mut params[layer.w.clone()] {
                let z: f64 = rng.sample(StandardNormal);
                *p = (z * std) as f32;
            }
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::NOTEBOOK_ARCH;

    #[test]
    fn notebook_layout_names_and_shapes() {
        let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
        let names: Vec<_> = layout
            .tensors()
            .map(|t| (t.name.as_str(), t.shape))
            .collect();
        assert_eq!(
            names,
            [
                ("W11", [128, 784]),
                ("b11", [128, 1]),
                ("W12", [64, 784]),
                ("b12", [64, 1]),
                ("W2", [48, 192]),
                ("b2", [48, 1]),
                ("W3", [10, 48]),
                ("b3", [10, 1])
            ]
        );
        assert_eq!(layout.len, 192 * 785 + 48 * 193 + 10 * 49);
        // W12 follows W11 directly, so stage 1's weights are one stacked 192 x 784 matrix.
        assert_eq!(layout.weights[1].range.start, layout.weights[0].range.end);
        assert_eq!(
            layout.layers[0].w,
            layout.weights[0].range.start..layout.weights[1].range.end
        );
    }

    #[test]
    fn init_is_seeded_scaled_and_biases_zero() {
        let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
        let a = layout.init(InitScheme::Notebook, 4);
        assert_eq!(a, layout.init(InitScheme::Notebook, 4));
        assert_ne!(a, layout.init(InitScheme::Notebook, 5));
        for (w, gain) in layout.weights.iter().zip([2.0, 2.0, 1.0, 2.0]) {
            let v = &a[w.range.clone()];
            let var = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>() / v.len() as f64;
            let want = gain / w.shape[1] as f64;
            assert!(
                (var / want - 1.0).abs() < 0.2,
                "{}: variance {var}, want {want}",
                w.name
            );
        }
        assert!(layout
            .biases
            .iter()
            .all(|b| a[b.range.clone()].iter().all(|&x| x == 0.0)));
    }
}
