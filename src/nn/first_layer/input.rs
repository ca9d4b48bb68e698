//! The forms the first layer's input takes, and what a set of images is
//! for (which decides the forms it may take).

use crate::tensor::bf16::TiledView;
use crate::tensor::sparse::{ColumnBlocks, PairView, SparseView};

/// Network inputs for a forward pass, `[rows, inputs]`.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Dense(&'a [f32]),
    /// Mostly-zero rows, compressed.
    Sparse(SparseView<'a>),
    /// Mostly-zero rows merged in pairs of similar rows, in the pairs' order.
    Paired(PairView<'a>),
    /// Rows as bfloat16 tiles, for AMX.
    Tiles(TiledView<'a>),
}

/// A training step's inputs: forward and backward. Compressed rows come
/// with the same rows grouped by column, which the weight gradient reads.
#[derive(Clone, Copy, Debug)]
pub enum TrainInput<'a> {
    Dense(&'a [f32]),
    Sparse {
        rows: SparseView<'a>,
        by_column: &'a ColumnBlocks,
    },
    Paired {
        rows: PairView<'a>,
        by_column: &'a ColumnBlocks,
    },
    /// Rows as bfloat16 tiles, and their transpose (the samples along k),
    /// which the weight gradient reads.
    Tiles {
        rows: TiledView<'a>,
        by_column: TiledView<'a>,
    },
}

/// What input a network's parameters will mostly meet, which decides how
/// the first layer's weight is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    Dense,
    /// Compressed, paired or tiled rows.
    Sparse,
}

/// What a fixed set of images is for, which decides the forms it may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The rows minibatches are gathered from: kept in order, compressed
    /// where sparse.
    Gather,
    /// Answers that go back in order (inference).
    Infer,
    /// Sums over the images, in any order, the labels reordered alike
    /// (accuracy, loss).
    Evaluate,
}

impl Input<'_> {
    /// Number of rows, for `inputs`-wide rows.
    pub fn rows(&self, inputs: usize) -> usize {
        match self {
            Input::Dense(x) => x.len() / inputs.max(1),
            Input::Sparse(rows) => rows.rows(),
            Input::Paired(rows) => rows.rows(),
            Input::Tiles(rows) => rows.rows(),
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
            Input::Sparse(rows) => rows.cols(),
            Input::Paired(rows) => rows.cols(),
            Input::Tiles(rows) => rows.k(),
        };
        assert_eq!(cols, inputs, "input is not {inputs} wide");
        self.rows(inputs)
    }
}

impl<'a> TrainInput<'a> {
    /// The same rows as the forward pass reads them.
    pub fn forward(&self) -> Input<'a> {
        match *self {
            TrainInput::Dense(x) => Input::Dense(x),
            TrainInput::Sparse { rows, .. } => Input::Sparse(rows),
            TrainInput::Paired { rows, .. } => Input::Paired(rows),
            TrainInput::Tiles { rows, .. } => Input::Tiles(rows),
        }
    }
}
