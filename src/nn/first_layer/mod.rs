//! The first layer's product and weight gradient, whatever form its input
//! takes and however its weight is stored: the one place that knows.
//!
//! `Z1 = X·W1ᵀ` and `dW1 = dZ1ᵀ·X`, where `W1` stacks the first stage's
//! branches (the notebook's W11 and W12: `[192, 784]`). This layer does
//! most of the network's arithmetic, and MNIST's images are mostly zeros,
//! so its input comes in several forms ([`input`]): dense rows, for the
//! matrix library; compressed rows, for the sparse kernels; compressed rows
//! merged in pairs of similar images, for a fixed set of images whose order
//! does not matter (see [`crate::tensor::sparse`]); and bfloat16 tiles, for
//! AMX ([`arithmetic`]). [`images`] chooses the form of a set of images
//! once, from how sparse they are and the arithmetic.
//!
//! The sparse kernels read the weight as column panels. So a weight that
//! will meet sparse input is stored in panels where every branch is a whole
//! number of panels wide (each branch's weight is then still one range of
//! the buffer), and the kernels read it in place and write its gradient the
//! same way; otherwise it is stored in rows. [`FirstLayer::prepare`] pairs
//! an input with the weight as its form reads it ([`product`]), repacked
//! where the storage does not suit.

pub mod arithmetic;
pub mod images;
pub mod input;
pub mod product;

pub use arithmetic::{Arithmetic, Precision};
pub use images::{CompressedBatch, Images, WholeBatch};
pub use input::{Input, InputKind, Role, TrainInput};
pub use product::Prepared;

use super::dense::{self, column_sums, Dims};
use super::layout::Layout;
use crate::tensor::bf16::{self, layout::Source, Out, Pairs};
use crate::tensor::sparse::{
    pack_transposed_into, spmm_t, unpack_transposed, ColumnParts, PanelView, Panels, TILE,
};
use crate::tensor::transpose;
use product::Operands;
use std::ops::Range;
use std::sync::Mutex;

/// The first layer's shape and how its weight is stored in the parameter
/// buffer: as `[out, in]` rows, or as its transpose in column panels.
#[derive(Clone, Debug, PartialEq)]
pub struct FirstLayer {
    w: Range<usize>,
    b: Range<usize>,
    inputs: usize,
    outputs: usize,
    panels: bool,
}

/// The first layer's buffers in a workspace: its weight repacked for input
/// that its storage does not suit (or for the tiles), the threads' parts of
/// a minibatch's product, and the gradient in bfloat16 for the tiles.
#[derive(Debug, Default)]
pub struct Scratch {
    rows: Vec<f32>,
    panels: Panels,
    parts: Mutex<ColumnParts>,
    pairs: Pairs,
    dz_pairs: Pairs,
    /// `dW1ᵀ` row-major, where the weight is stored in rows.
    dw_t: Vec<f32>,
}

impl FirstLayer {
    /// The first layer of `layout`, stored for input of `kind`.
    pub fn new(layout: &Layout, kind: InputKind) -> FirstLayer {
        let l = &layout.layers[0];
        let whole_panels = l.branches.iter().all(|b| b.cols.len().is_multiple_of(TILE));
        FirstLayer {
            w: l.w.clone(),
            b: l.b.clone(),
            inputs: l.inputs,
            outputs: l.outputs,
            panels: kind == InputKind::Sparse && whole_panels,
        }
    }

    /// The range of the parameters that holds the weight.
    pub fn weight_range(&self) -> Range<usize> {
        self.w.clone()
    }

    /// Whether the weight is stored in column panels rather than rows.
    pub fn in_panels(&self) -> bool {
        self.panels
    }

    /// Rewrites the first layer's weight in `buf` (the parameters, or a
    /// buffer shaped like them) from its storage order to rows.
    pub fn to_rows(&self, buf: &mut [f32]) {
        if self.panels {
            let w = &mut buf[self.w.clone()];
            let stored = w.to_vec();
            unpack_transposed(w, &stored, self.inputs, self.outputs);
        }
    }

    /// The inverse of [`FirstLayer::to_rows`].
    pub fn from_rows(&self, buf: &mut [f32]) {
        if self.panels {
            let w = &mut buf[self.w.clone()];
            let rows = w.to_vec();
            pack_transposed_into(w, &rows, self.inputs, self.outputs);
        }
    }

    /// `x` paired with the weight, from `stored` (the parameters in storage
    /// order), as `x`'s form reads it: in place where it is stored so, else
    /// repacked into `scratch`.
    pub fn prepare<'a>(
        &'a self,
        stored: &'a [f32],
        x: Input<'a>,
        scratch: &'a mut Scratch,
    ) -> Prepared<'a> {
        x.checked_rows(self.inputs);
        let Scratch {
            rows,
            panels,
            parts,
            pairs,
            ..
        } = scratch;
        let (w, n, k) = (&stored[self.w.clone()], self.outputs, self.inputs);
        let panel_view = |panels: &'a mut Panels| match self.panels {
            true => PanelView::new(w, k, n),
            false => {
                panels.pack_transposed(w, k, n);
                panels.view()
            }
        };
        let ops = match x {
            Input::Dense(x) => Operands::Dense {
                x,
                w: match self.panels {
                    false => w,
                    true => {
                        rows.resize(w.len(), 0.0);
                        unpack_transposed(rows, w, k, n);
                        rows
                    }
                },
            },
            Input::Sparse(x) => Operands::Sparse {
                x,
                w: panel_view(panels),
            },
            Input::Paired(x) => Operands::Paired {
                x,
                w: panel_view(panels),
            },
            Input::Tiles(x) => {
                let src = match self.panels {
                    true => Source::Panels(w),
                    false => Source::Transposed(w),
                };
                pairs.fill(src, k, n);
                Operands::Tiles { x, w: pairs.view() }
            }
        };
        Prepared::new(self, ops, parts)
    }

    /// `dW1 = dZ1ᵀ·X` (stored as the weight is) and `db1 = Σ dZ1` into
    /// `dwdb`, the layer's part of a gradient buffer; no input gradient.
    pub fn weight_grad(
        &self,
        dwdb: &mut [f32],
        dz: &[f32],
        x: TrainInput<'_>,
        threads: usize,
        scratch: &mut Scratch,
    ) {
        let (dw, db) = dwdb.split_at_mut(self.w.len());
        assert_eq!(db.len(), self.b.len(), "not the first layer's gradient");
        match x {
            TrainInput::Dense(x) => {
                let d = self.dims(x.len() / self.inputs);
                dense::weight_grad(dw, db, dz, x, d, threads);
                if self.panels {
                    let rows = dw.to_vec();
                    pack_transposed_into(dw, &rows, self.inputs, self.outputs);
                }
            }
            TrainInput::Sparse { by_column, .. } | TrainInput::Paired { by_column, .. } => {
                let rows = by_column.blocks().iter().map(|b| b.cols()).sum::<usize>();
                let dz = &dz[..rows * self.outputs];
                spmm_t(dw, by_column, dz, self.outputs, self.panels);
                column_sums(db, dz);
            }
            TrainInput::Tiles { by_column, .. } => {
                // dW1ᵀ = Xᵀ·dZ1: the samples along k, dZ1 in bfloat16.
                let (rows, n, k) = (by_column.k(), self.outputs, self.inputs);
                let dz = &dz[..rows * n];
                scratch.dz_pairs.fill(Source::Rows(dz), rows, n);
                let dz_t = scratch.dz_pairs.view();
                match self.panels {
                    true => {
                        let out = Out::Panels {
                            data: dw,
                            rows: k,
                            n,
                        };
                        bf16::product(out, by_column, dz_t, threads);
                    }
                    false => {
                        let t = &mut scratch.dw_t;
                        t.resize(k * n, 0.0);
                        let out = Out::Rows {
                            data: t,
                            rows: k,
                            n,
                            stride: n,
                        };
                        bf16::product(out, by_column, dz_t, threads);
                        transpose(dw, k, t, n, k, n);
                    }
                }
                column_sums(db, dz);
            }
        }
    }

    fn dims(&self, batch: usize) -> Dims {
        Dims {
            batch,
            inputs: self.inputs,
            outputs: self.outputs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::{Arch, NOTEBOOK_ARCH};

    /// The notebook's branches (128 and 64 wide) are whole panels: stored
    /// in panels for sparse input, in rows for dense; odd widths always in
    /// rows. In panels, `W1[o][i]` is row `i` of panel `o / 16`, lane
    /// `o % 16`.
    #[test]
    fn panels_where_the_branches_allow_and_the_input_is_sparse() {
        let notebook = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
        let odd = Layout::new(&Arch::parse("relu:37|tanh:20,relu:11", 61, 10).unwrap());
        assert!(FirstLayer::new(&notebook, InputKind::Sparse).panels);
        assert!(!FirstLayer::new(&notebook, InputKind::Dense).panels);
        assert!(!FirstLayer::new(&odd, InputKind::Sparse).panels);
        let first = FirstLayer::new(&notebook, InputKind::Sparse);
        let rows: Vec<f32> = (0..notebook.len).map(|i| i as f32).collect();
        let mut stored = rows.clone();
        first.from_rows(&mut stored);
        for (o, i) in [(0, 0), (0, 1), (1, 0), (130, 7), (191, 783)] {
            assert_eq!(stored[(o / 16 * 784 + i) * 16 + o % 16], rows[o * 784 + i]);
        }
    }

    /// Sparse images are compressed, paired where the order is free (labels
    /// following their images), dense ones kept as they are; paired chunks
    /// are cut between pairs.
    #[test]
    fn forms_follow_the_sparsity_and_the_order() {
        let n = 9;
        let sparse: Vec<f32> = (0..n * 10)
            .map(|i| if i % 5 == 0 { (i % 7) as f32 } else { 0.0 })
            .collect();
        let dense: Vec<f32> = (0..n * 10).map(|i| 1.0 + i as f32).collect();
        let labels: Vec<u8> = (0..n as u8).collect();
        let f32 = Arithmetic::F32;
        let kept = Images::new(sparse[..].into(), &labels, 10, Role::Infer, f32);
        assert!(matches!(kept.input(), Input::Sparse(_)) && kept.compressed().is_some());
        assert_eq!(kept.labels(), &labels[..]);
        let free = Images::new(sparse[..].into(), &labels, 10, Role::Evaluate, f32);
        let Input::Paired(rows) = free.input() else {
            panic!("paired")
        };
        let (images, order) = (rows.to_dense(), free.labels());
        for (row, &label) in images.chunks(10).zip(order) {
            assert_eq!(row, &sparse[label as usize * 10..][..10]);
        }
        let layout = Layout::new(&Arch::parse("relu:16", 10, 10).unwrap());
        let first = FirstLayer::new(&layout, InputKind::Sparse);
        let (params, mut scratch) = (vec![0.0; layout.len], Scratch::default());
        let prepared = first.prepare(&params, free.input(), &mut scratch);
        let chunks: Vec<usize> = prepared.chunks(5).map(|(f, _)| f).collect();
        assert_eq!(chunks, [0, 4, 8]);
        let d = Images::new(dense[..].into(), &labels, 10, Role::Evaluate, f32);
        assert!(matches!(d.input(), Input::Dense(x) if x.as_ptr() == dense.as_ptr()));
        assert_eq!(d.kind(), InputKind::Dense);
        let whole = WholeBatch::new(sparse[..].into(), &labels, 10, f32);
        assert!(matches!(whole.input(), TrainInput::Paired { .. }));
    }
}
