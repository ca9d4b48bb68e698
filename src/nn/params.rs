//! All parameters in one flat buffer with named views (as llm.c does): the
//! optimiser step is one loop, and saving is one pass over the names.
//!
//! Layer `l` stores its branches' weight matrices stacked (`out x in`,
//! row-major, branch after branch) and then its biases. Stacking makes a
//! parallel block's forward one product whose output columns are the
//! branches' concatenation, with no copy. The first layer's weight is kept
//! in column panels instead where its branches allow ([`Layout::w0_panels`]);
//! files and the GPU always see `out x in` rows.

use super::arch::{Activation, Arch};
use crate::tensor::{pack_transposed_into, unpack_transposed, TILE};
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
    /// Whether the first layer's weight is held as its transpose in column
    /// panels ([`crate::tensor::Panels`] layout, `TILE` outputs per panel)
    /// rather than as `out x in` rows. It is when every branch of the layer
    /// is a whole number of panels wide, so each branch's weight is still
    /// one range of the buffer (a trainer turns it off for dense data). The sparse kernels read it in place and
    /// write its gradient the same way, where they would otherwise repack it
    /// every step. [`Layout::to_row_major`] gives the rows (files, the GPU).
    pub w0_panels: bool,
}

/// How weights are initialised: N(0, 1) * sqrt(gain / fan_in), biases zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        let w0_panels = layers[0]
            .branches
            .iter()
            .all(|b| b.cols.len().is_multiple_of(TILE));
        Layout {
            arch: arch.clone(),
            layers,
            weights,
            biases,
            len: at,
            w0_panels,
        }
    }

    /// Rewrites `buf` (the parameters, or a buffer shaped like them: a
    /// gradient, an optimiser's state) from this layout's order to every
    /// weight as `out x in` rows.
    pub fn to_row_major(&self, buf: &mut [f32]) {
        self.reorder_w0(buf, unpack_transposed);
    }

    /// The inverse of [`Layout::to_row_major`].
    pub fn from_row_major(&self, buf: &mut [f32]) {
        self.reorder_w0(buf, pack_transposed_into);
    }

    /// Rewrites the first layer's weight in `buf` by `f(dst, src, inputs,
    /// outputs)` from a copy, where it is kept in panels.
    fn reorder_w0(&self, buf: &mut [f32], f: fn(&mut [f32], &[f32], usize, usize)) {
        if self.w0_panels {
            let l = &self.layers[0];
            let w = &mut buf[l.w.clone()];
            let src = w.to_vec();
            f(w, &src, l.inputs, l.outputs);
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

    /// Fresh parameters from a seeded generator; draws weights in the
    /// notebook's order (W11, W12, W2, W3), each row-major (then placed in
    /// this layout's order).
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
        self.from_row_major(&mut params);
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

    /// The notebook's first layer (128 and 64 wide) is kept in panels, odd
    /// widths in rows. In panels each branch's range holds exactly that
    /// branch's weights (what L2 reads), the round trip through rows is
    /// exact, and the initial weights are those a layout in rows draws.
    #[test]
    fn first_layer_in_panels_keeps_each_branch_in_its_range() {
        let odd = Layout::new(&Arch::parse("relu:37|tanh:20,relu:11", 61, 10).unwrap());
        assert!(!odd.w0_panels);
        let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
        assert!(layout.w0_panels);
        let rows: Vec<f32> = (0..layout.len).map(|i| i as f32).collect();
        let mut kept = rows.clone();
        layout.from_row_major(&mut kept);
        let w0 = layout.layers[0].w.clone();
        assert_eq!(kept[w0.end..], rows[w0.end..], "only layer 0 moves");
        // W1[o][i] is row i of panel o / 16, lane o % 16.
        for (o, i) in [(0, 0), (0, 1), (1, 0), (130, 7), (191, 783)] {
            assert_eq!(kept[(o / 16 * 784 + i) * 16 + o % 16], rows[o * 784 + i]);
        }
        for w in &layout.weights[..2] {
            let mut a = kept[w.range.clone()].to_vec();
            a.sort_by(f32::total_cmp);
            assert_eq!(a, rows[w.range.clone()], "{}", w.name);
        }
        let mut back = kept;
        layout.to_row_major(&mut back);
        assert_eq!(back, rows);
        let mut in_rows = layout.clone();
        in_rows.w0_panels = false;
        let mut init = layout.init(InitScheme::Notebook, 3);
        layout.to_row_major(&mut init);
        assert_eq!(init, in_rows.init(InitScheme::Notebook, 3));
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
