//! Sets of images in the forms the first layer reads fastest, chosen once
//! for each: a fixed set ([`Images`]), the training split that every step
//! of a full-batch run reads whole ([`WholeBatch`]), and a minibatch
//! refilled every step ([`CompressedBatch`]).

use super::arithmetic::Arithmetic;
use super::input::{Input, InputKind, Role, TrainInput};
use crate::data::pixels::PixelSlice;
use crate::tensor::bf16::Tiled;
use crate::tensor::sparse::{pair_order, ColumnBlocks, PairRows, SparseRows};
use std::borrow::Cow;

/// Rows per block of the weight gradient on compressed input (their `dZ1`,
/// 384 KB for the notebook's 192 outputs, stays in L2).
const GRAD_BLOCK_ROWS: usize = 512;

/// Below this many rows, a set of images stays on the float32 kernels:
/// packing the weight for the tiles costs more than the tiles save.
const TILES_FROM_ROWS: usize = 256;

/// A fixed set of images in the form the first layer reads fastest, chosen
/// here once: bfloat16 tiles where the arithmetic is AMX's; else
/// compressed when they are sparse enough (MNIST is), and then, where the
/// order is free, merged in pairs of similar images; with their labels in
/// the same order.
pub struct Images<'d> {
    form: Form<'d>,
    labels: Cow<'d, [u8]>,
    /// Where the images were reordered: the given index of each row here.
    order: Option<Vec<u32>>,
}

enum Form<'d> {
    Dense(Cow<'d, [f32]>),
    Compressed(SparseRows),
    Paired(PairRows),
    Tiles(Tiled),
}

impl<'d> Images<'d> {
    /// `images` (`[n, inputs]`) and their `labels` (may be empty, for
    /// inference), for `role`, computed with `arith`.
    pub fn new(
        images: PixelSlice<'d>,
        labels: &'d [u8],
        inputs: usize,
        role: Role,
        arith: Arithmetic,
    ) -> Images<'d> {
        let rows = images.len() / inputs.max(1);
        let kept = |form| Images {
            form,
            labels: Cow::Borrowed(labels),
            order: None,
        };
        if role != Role::Gather && on_tiles(arith, rows) {
            return kept(Form::Tiles(Tiled::from_rows(
                &images.floats(),
                rows,
                inputs,
            )));
        }
        match (images.compress_if_sparse(inputs), role) {
            (None, _) => kept(Form::Dense(images.floats())),
            (Some(rows), Role::Evaluate) => {
                let (rows, labels, order) = paired(rows, labels);
                Images {
                    form: Form::Paired(rows),
                    labels: Cow::Owned(labels),
                    order: Some(order),
                }
            }
            (Some(rows), _) => kept(Form::Compressed(rows)),
        }
    }

    pub fn input(&self) -> Input<'_> {
        match &self.form {
            Form::Dense(x) => Input::Dense(x),
            Form::Compressed(rows) => Input::Sparse(rows.view()),
            Form::Paired(rows) => Input::Paired(rows.view()),
            Form::Tiles(tiles) => Input::Tiles(tiles.view()),
        }
    }

    /// The labels, in the images' order here.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// `values`, one per image in the order here, put back in the order
    /// the images were given.
    pub fn in_given_order<T: Copy + Default>(&self, values: Vec<T>) -> Vec<T> {
        in_given_order(self.order.as_deref(), values)
    }

    pub fn kind(&self) -> InputKind {
        match self.form {
            Form::Dense(_) => InputKind::Dense,
            _ => InputKind::Sparse,
        }
    }

    /// The compressed rows, in order, where the images are compressed so:
    /// what compressed minibatches are gathered from.
    pub fn compressed(&self) -> Option<&SparseRows> {
        match &self.form {
            Form::Compressed(rows) => Some(rows),
            _ => None,
        }
    }
}

/// Whether `rows` images go to the tiles: where the arithmetic is AMX's and
/// they are enough to repay packing the weight.
fn on_tiles(arith: Arithmetic, rows: usize) -> bool {
    arith == Arithmetic::AmxBf16 && rows >= TILES_FROM_ROWS
}

/// `values`, one per row in `order` (each row's given index), put back in
/// the given order; unchanged where there is no order.
fn in_given_order<T: Copy + Default>(order: Option<&[u32]>, values: Vec<T>) -> Vec<T> {
    let Some(order) = order else {
        return values;
    };
    let mut given = vec![T::default(); values.len()];
    for (&at, v) in order.iter().zip(values) {
        given[at as usize] = v;
    }
    given
}

/// `rows` merged in pairs of similar rows (the forward product's fastest
/// form), `labels` (unless empty) reordered alike, and the order: the
/// given index of each row.
fn paired(rows: SparseRows, labels: &[u8]) -> (PairRows, Vec<u8>, Vec<u32>) {
    let order = pair_order(rows.view());
    let labels = match labels.is_empty() {
        true => Vec::new(),
        false => order.iter().map(|&r| labels[r as usize]).collect(),
    };
    (PairRows::from_rows(rows.view(), &order), labels, order)
}

/// The training split as every step of a full-batch run reads it, in any
/// order: for a sparse or tiled form, with the same rows grouped by column
/// for the weight gradient, held together so that they cannot part.
pub struct WholeBatch<'d> {
    form: Whole<'d>,
    labels: Cow<'d, [u8]>,
    /// Where the rows were reordered: the given index of each row here.
    order: Option<Vec<u32>>,
}

enum Whole<'d> {
    Dense(Cow<'d, [f32]>),
    /// Rows merged in pairs, and the same grouped by column (regrouped
    /// from the pairs, so the compressed rows need not stay: peak memory).
    Paired(PairRows, ColumnBlocks),
    /// Rows as tiles, and their transpose.
    Tiles(Tiled, Tiled),
}

impl<'d> WholeBatch<'d> {
    pub fn new(
        images: PixelSlice<'d>,
        labels: &'d [u8],
        inputs: usize,
        arith: Arithmetic,
    ) -> WholeBatch<'d> {
        let rows = images.len() / inputs.max(1);
        if on_tiles(arith, rows) {
            let dense = images.floats();
            let mut t = Tiled::default();
            t.fill_transposed_from_sparse(SparseRows::from_dense(&dense, inputs).view());
            return WholeBatch {
                form: Whole::Tiles(Tiled::from_rows(&dense, rows, inputs), t),
                labels: Cow::Borrowed(labels),
                order: None,
            };
        }
        match images.compress_if_sparse(inputs) {
            None => WholeBatch {
                form: Whole::Dense(images.floats()),
                labels: Cow::Borrowed(labels),
                order: None,
            },
            Some(rows) => {
                let (rows, labels, order) = paired(rows, labels);
                let by_column = ColumnBlocks::new(rows.view(), GRAD_BLOCK_ROWS);
                WholeBatch {
                    form: Whole::Paired(rows, by_column),
                    labels: Cow::Owned(labels),
                    order: Some(order),
                }
            }
        }
    }

    pub fn input(&self) -> TrainInput<'_> {
        match &self.form {
            Whole::Dense(x) => TrainInput::Dense(x),
            Whole::Paired(rows, by_column) => TrainInput::Paired {
                rows: rows.view(),
                by_column,
            },
            Whole::Tiles(rows, by_column) => TrainInput::Tiles {
                rows: rows.view(),
                by_column: by_column.view(),
            },
        }
    }

    /// The labels, in the rows' order here.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// `values`, one per row in the order here, put back in the order the
    /// rows were given.
    pub fn in_given_order<T: Copy + Default>(&self, values: Vec<T>) -> Vec<T> {
        in_given_order(self.order.as_deref(), values)
    }

    pub fn kind(&self) -> InputKind {
        match self.form {
            Whole::Dense(_) => InputKind::Dense,
            _ => InputKind::Sparse,
        }
    }
}

/// A minibatch, refilled every step: its rows compressed, and for the
/// weight gradient the same grouped by column, or as bfloat16 tiles and
/// their transpose where the arithmetic is AMX's. Buffers are kept, so
/// steps do not allocate.
#[derive(Default)]
pub struct CompressedBatch {
    rows: SparseRows,
    by_column: ColumnBlocks,
    tiles: Tiled,
    tiles_t: Tiled,
    arith: Option<Arithmetic>,
}

impl CompressedBatch {
    /// Refills it with the rows `gather` writes, in the form `arith` reads.
    pub fn fill(&mut self, arith: Arithmetic, gather: impl FnOnce(&mut SparseRows)) {
        gather(&mut self.rows);
        match arith {
            Arithmetic::AmxBf16 => {
                self.tiles.fill_from_sparse(self.rows.view());
                self.tiles_t.fill_transposed_from_sparse(self.rows.view());
            }
            Arithmetic::F32 => self.by_column.fill(self.rows.view(), GRAD_BLOCK_ROWS),
        }
        self.arith = Some(arith);
    }

    pub fn input(&self) -> TrainInput<'_> {
        match self.arith {
            Some(Arithmetic::AmxBf16) => TrainInput::Tiles {
                rows: self.tiles.view(),
                by_column: self.tiles_t.view(),
            },
            _ => TrainInput::Sparse {
                rows: self.rows.view(),
                by_column: &self.by_column,
            },
        }
    }
}
