//! The first layer's product and weight gradient, whatever form its input
//! takes and however its weight is stored: the one place that knows.
//!
//! `Z1 = X·W1ᵀ` and `dW1 = dZ1ᵀ·X`, where `W1` stacks the first stage's
//! branches (the notebook's W11 and W12: `[192, 784]`). This layer does
//! most of the network's arithmetic, and MNIST's images are mostly zeros,
//! so its input comes in three forms ([`Input`]): dense rows, for the
//! matrix library; compressed rows, for the sparse kernels; and compressed
//! rows merged in pairs of similar images, for a fixed set of images (see
//! [`crate::tensor::sparse`]). The sparse kernels read the weight as column
//! panels. So a weight that will meet sparse input is stored in panels
//! where every branch is a whole number of panels wide (each branch's
//! weight is then still one range of the buffer), and the kernels read it
//! in place and write its gradient the same way; otherwise it is stored in
//! rows, and a pass whose input wants the other form repacks it.

use super::dense::{self, column_sums, Dims};
use super::params::Layout;
use crate::tensor::sparse::{
    pack_transposed_into, spmm, spmm_by_columns, spmm_paired, spmm_t, unpack_transposed,
    ColumnBlocks, ColumnParts, PairView, PanelView, Panels, SparseRows, SparseView, TILE,
};
use std::ops::Range;

/// A batch of network inputs, `[rows, inputs]`.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Dense(&'a [f32]),
    /// Mostly-zero rows, compressed; a backward pass also needs them
    /// grouped by column, `by_column`.
    Sparse {
        rows: SparseView<'a>,
        by_column: Option<&'a ColumnBlocks>,
    },
    /// Mostly-zero rows merged in pairs of similar rows, in the pairs' row
    /// order, and the same by column for a backward pass.
    Paired {
        rows: PairView<'a>,
        by_column: Option<&'a ColumnBlocks>,
    },
}

impl<'a> Input<'a> {
    /// `dense`, or its compressed form when there is one (forward only).
    pub fn new(dense: &'a [f32], compressed: Option<&'a SparseRows>) -> Input<'a> {
        match compressed {
            Some(c) => Input::Sparse {
                rows: c.view(),
                by_column: None,
            },
            None => Input::Dense(dense),
        }
    }

    /// Rows `range`, for `inputs`-wide rows (forward only).
    pub fn slice(&self, range: Range<usize>, inputs: usize) -> Input<'a> {
        match *self {
            Input::Dense(x) => Input::Dense(&x[range.start * inputs..range.end * inputs]),
            Input::Sparse { rows, .. } => Input::Sparse {
                rows: rows.slice(range),
                by_column: None,
            },
            Input::Paired { rows, .. } => Input::Paired {
                rows: rows.slice(range),
                by_column: None,
            },
        }
    }

    /// Number of rows, for `inputs`-wide rows.
    pub fn rows(&self, inputs: usize) -> usize {
        match self {
            Input::Dense(x) => x.len() / inputs.max(1),
            Input::Sparse { rows, .. } => rows.rows(),
            Input::Paired { rows, .. } => rows.rows(),
        }
    }

    /// Number of rows, checking that they are `inputs` wide.
    pub fn checked_rows(&self, inputs: usize) -> usize {
        let cols = match self {
            Input::Dense(x) => {
                assert!(
                    inputs > 0 && x.len().is_multiple_of(inputs),
                    "input is not rows x {inputs}"
                );
                inputs
            }
            Input::Sparse { rows, .. } => rows.cols(),
            Input::Paired { rows, .. } => rows.cols(),
        };
        assert_eq!(cols, inputs, "input is not {inputs} wide");
        self.rows(inputs)
    }

    /// The rows grouped by column, which the weight gradient of compressed
    /// input reads.
    fn by_column(&self) -> Option<&'a ColumnBlocks> {
        match *self {
            Input::Dense(_) => None,
            Input::Sparse { by_column, .. } | Input::Paired { by_column, .. } => by_column,
        }
    }
}

/// What input a network's parameters will mostly meet, which decides how
/// the first layer's weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Dense,
    /// Compressed or paired rows.
    Sparse,
}

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

/// The weight as one pass's input reads it.
#[derive(Clone, Copy, Debug)]
pub enum Weight<'a> {
    Rows(&'a [f32]),
    Panels(PanelView<'a>),
}

/// The first layer's buffers in a workspace: its weight repacked for input
/// that its storage does not suit, and the threads' parts of a minibatch's
/// product.
#[derive(Debug, Default)]
pub struct Scratch {
    rows: Vec<f32>,
    panels: Panels,
    parts: ColumnParts,
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

    /// The weight, from `params` (in storage order), as `x`'s product reads
    /// it: in place where it is stored so, else repacked into `scratch`
    /// (`repack` false reuses the last repacking: the same parameters, the
    /// next chunk of rows); with the threads' parts of the product.
    pub fn weight<'a>(
        &self,
        params: &'a [f32],
        x: &Input<'_>,
        scratch: &'a mut Scratch,
        repack: bool,
    ) -> (Weight<'a>, &'a mut ColumnParts) {
        let Scratch {
            rows,
            panels,
            parts,
        } = scratch;
        let (w, n, k) = (&params[self.w.clone()], self.outputs, self.inputs);
        let weight = match (x, self.panels) {
            (Input::Dense(_), false) => Weight::Rows(w),
            (Input::Dense(_), true) => {
                if repack {
                    rows.resize(w.len(), 0.0);
                    unpack_transposed(rows, w, k, n);
                }
                Weight::Rows(rows)
            }
            (_, true) => Weight::Panels(PanelView::new(w, k, n)),
            (_, false) => {
                if repack {
                    panels.pack_transposed(w, k, n);
                }
                Weight::Panels(panels.view())
            }
        };
        (weight, parts)
    }

    /// `z[rows, outputs] = x · W1ᵀ` for a block of rows, on `threads`
    /// threads; `parts`, for a few compressed rows (a minibatch): the
    /// threads split the weight's columns instead of the rows.
    pub fn forward(
        &self,
        z: &mut [f32],
        x: Input<'_>,
        w: Weight<'_>,
        parts: Option<&mut ColumnParts>,
        threads: usize,
    ) {
        match (x, w) {
            (Input::Dense(x), Weight::Rows(w)) => {
                let d = self.dims(x.len() / self.inputs);
                dense::forward(z, x, w, d, threads)
            }
            (Input::Sparse { rows, .. }, Weight::Panels(w)) => match parts {
                Some(parts) => spmm_by_columns(z, rows, w, parts),
                None => spmm(z, rows, w, false),
            },
            (Input::Paired { rows, .. }, Weight::Panels(w)) => spmm_paired(z, rows, w),
            _ => unreachable!("the weight was prepared for another input form"),
        }
    }

    /// `dW1 = dZ1ᵀ·X` (stored as the weight is) and `db1 = Σ dZ1` into
    /// `dwdb`, the layer's part of a gradient buffer; no input gradient.
    pub fn weight_grad(&self, dwdb: &mut [f32], dz: &[f32], x: Input<'_>, threads: usize) {
        let (dw, db) = dwdb.split_at_mut(self.w.len());
        assert_eq!(db.len(), self.b.len(), "not the first layer's gradient");
        match (x, x.by_column()) {
            (Input::Dense(x), _) => {
                let d = self.dims(x.len() / self.inputs);
                dense::weight_grad(dw, db, dz, x, d, threads);
                if self.panels {
                    let rows = dw.to_vec();
                    pack_transposed_into(dw, &rows, self.inputs, self.outputs);
                }
            }
            (_, Some(by_column)) => {
                let rows = by_column.blocks().iter().map(|b| b.cols()).sum::<usize>();
                let dz = &dz[..rows * self.outputs];
                spmm_t(dw, by_column, dz, self.outputs, self.panels);
                column_sums(db, dz);
            }
            (_, None) => panic!("a backward pass needs compressed input by column"),
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
}
