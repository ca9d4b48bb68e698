//! The first layer's forward product, `Z1 = X·W1ᵀ`, on an input paired with
//! the weight as that input's form reads it: paired when made
//! ([`super::FirstLayer::prepare`]), so that a product can only meet its
//! own weight.

use super::dense;
use super::FirstLayer;
use crate::tensor::bf16::{self, Out, PairsView, TiledView};
use crate::tensor::sparse::{
    spmm, spmm_by_columns, spmm_paired, ColumnParts, PairView, PanelView, SparseView,
};
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

/// An input form and the weight as it reads it.
#[derive(Clone, Copy)]
pub(super) enum Operands<'a> {
    /// Dense rows, and the weight as `[outputs, inputs]` rows.
    Dense { x: &'a [f32], w: &'a [f32] },
    /// Compressed rows, and `W1ᵀ` in column panels.
    Sparse { x: SparseView<'a>, w: PanelView<'a> },
    /// Rows merged in pairs, and `W1ᵀ` in column panels.
    Paired { x: PairView<'a>, w: PanelView<'a> },
    /// Rows as bfloat16 tiles, and `W1ᵀ` in pairs of inputs in bfloat16.
    Tiles { x: TiledView<'a>, w: PairsView<'a> },
}

/// An input and the first layer's weight ready for forward passes over it,
/// until the parameters change.
#[derive(Clone, Copy)]
pub struct Prepared<'a> {
    layer: &'a FirstLayer,
    ops: Operands<'a>,
    parts: &'a Mutex<ColumnParts>,
}

impl<'a> Prepared<'a> {
    pub(super) fn new(
        layer: &'a FirstLayer,
        ops: Operands<'a>,
        parts: &'a Mutex<ColumnParts>,
    ) -> Prepared<'a> {
        Prepared { layer, ops, parts }
    }

    /// Rows of the input.
    pub fn rows(&self) -> usize {
        match self.ops {
            Operands::Dense { x, .. } => x.len() / self.layer.inputs,
            Operands::Sparse { x, .. } => x.rows(),
            Operands::Paired { x, .. } => x.rows(),
            Operands::Tiles { x, .. } => x.rows(),
        }
    }

    /// Rows `range` of the input, with the same weight.
    pub fn slice(&self, range: Range<usize>) -> Prepared<'a> {
        let inputs = self.layer.inputs;
        let ops = match self.ops {
            Operands::Dense { x, w } => Operands::Dense {
                x: &x[range.start * inputs..range.end * inputs],
                w,
            },
            Operands::Sparse { x, w } => Operands::Sparse {
                x: x.slice(range),
                w,
            },
            Operands::Paired { x, w } => Operands::Paired {
                x: x.slice(range),
                w,
            },
            Operands::Tiles { x, w } => Operands::Tiles {
                x: x.slice_rows(range),
                w,
            },
        };
        Prepared { ops, ..*self }
    }

    /// Consecutive chunks of at most `most` rows (paired rows cut between
    /// pairs, tiles between tiles), each with its first row.
    pub fn chunks(self, most: usize) -> impl Iterator<Item = (usize, Prepared<'a>)> {
        let n = self.rows();
        let most = match self.ops {
            Operands::Paired { .. } => most & !1,
            Operands::Tiles { .. } => most / 16 * 16,
            _ => most,
        };
        assert!(most > 0 || n == 0, "chunks of no rows");
        (0..n)
            .step_by(most.max(1))
            .map(move |first| (first, self.slice(first..n.min(first + most))))
    }

    /// `z[rows, outputs] = x · W1ᵀ` on `threads` threads: for compressed
    /// rows on several threads (a minibatch), the threads split the
    /// weight's columns.
    pub fn forward(&self, z: &mut [f32], threads: usize) {
        let (n, k) = (self.layer.outputs, self.layer.inputs);
        match self.ops {
            Operands::Dense { x, w } => {
                dense::forward(z, x, w, self.layer.dims(x.len() / k), threads)
            }
            Operands::Sparse { x, w } if threads > 1 => {
                let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
                spmm_by_columns(z, x, w, &mut parts)
            }
            Operands::Sparse { x, w } => spmm(z, x, w, false),
            Operands::Paired { x, w } => spmm_paired(z, x, w),
            Operands::Tiles { x, w } => {
                let out = Out::Rows {
                    data: z,
                    rows: x.rows(),
                    n,
                    stride: n,
                };
                bf16::product(out, x, w, threads)
            }
        }
    }
}
