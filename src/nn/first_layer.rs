//! The first layer's product and weight gradient, whatever form its input
//! takes and however its weight is stored: the one place that knows.
//!
//! `Z1 = X·W1ᵀ` and `dW1 = dZ1ᵀ·X`, where `W1` stacks the first stage's
//! branches (the notebook's W11 and W12: `[192, 784]`). This layer does
//! most of the network's arithmetic, and MNIST's images are mostly zeros,
//! so its input comes in three forms: dense rows, for the matrix library;
//! compressed rows, for the sparse kernels; and compressed rows merged in
//! pairs of similar images, for a fixed set of images whose order does not
//! matter (see [`crate::tensor::sparse`]). [`Images`] chooses the form of a
//! set of images once, from how sparse they are; [`WholeBatch`] and
//! [`CompressedBatch`] add what a training step's weight gradient reads
//! (the rows grouped by column).
//!
//! The sparse kernels read the weight as column panels. So a weight that
//! will meet sparse input is stored in panels where every branch is a whole
//! number of panels wide (each branch's weight is then still one range of
//! the buffer), and the kernels read it in place and write its gradient the
//! same way; otherwise it is stored in rows. [`FirstLayer::prepare`] gives
//! the weight as an input reads it, repacked where the storage does not suit.

use super::dense::{self, column_sums, Dims};
use super::layout::Layout;
use crate::tensor::bf16::{self, layout::Source, Out, Pairs, PairsView, Tiled, TiledView, Unit};
use crate::tensor::kernels::Kernels;
use crate::tensor::sparse::{
    pack_transposed_into, pair_order, spmm, spmm_by_columns, spmm_paired, spmm_t,
    unpack_transposed, ColumnBlocks, ColumnParts, PairRows, PairView, PanelView, Panels,
    SparseRows, SparseView, TILE,
};
use crate::tensor::transpose;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::ops::Range;
use std::sync::{Mutex, PoisonError};

/// Rows per block of the weight gradient on compressed input (their `dZ1`,
/// 384 KB for the notebook's 192 outputs, stays in L2).
const GRAD_BLOCK_ROWS: usize = 512;

/// Network inputs for a forward pass, `[rows, inputs]`.
#[derive(Clone, Copy, Debug)]
pub enum Input<'a> {
    Dense(&'a [f32]),
    /// Mostly-zero rows, compressed.
    Sparse(SparseView<'a>),
    /// Mostly-zero rows merged in pairs of similar rows, in the pairs' order.
    Paired(PairView<'a>),
    /// Rows as bfloat16 tiles, for a matrix unit.
    Tiles(TiledView<'a>, Bf16),
}

/// The first layer's product on a bfloat16 matrix unit: the unit, and how
/// many bfloat16 terms the float32 operand (the weight, or the gradient)
/// is split into: one is plain bfloat16, three float32's accuracy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bf16 {
    pub unit: Unit,
    pub terms: usize,
}

/// The arithmetic of a run: float32 throughout (`f32`, the default), or
/// the first layer's products in plain bfloat16 with float32 sums (`bf16`,
/// as PyTorch's autocast; the weights, optimiser, activations and loss
/// stay float32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

/// Bfloat16 terms of the float32 operand for [`Precision::F32`]: how many
/// keep the golden trajectories at their bounds (docs/TESTING.md).
pub const F32_TERMS: usize = 3;

/// Below this many rows, a product stays on the float32 kernels: packing
/// the weight for the unit costs more than the unit saves.
const TILES_FROM_ROWS: usize = 256;

/// The most terms with which a minibatch goes to the unit: with more,
/// splitting the weight and the gradient into terms at every step costs
/// more than the unit saves, and the compressed kernels are faster.
const MINIBATCH_TERMS: usize = 1;

/// How the first layer computes: float32 multiply-adds, or a bfloat16 unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    Fma,
    Bf16(Bf16),
}

impl Arithmetic {
    /// The arithmetic of `precision` on `kernels`: a bfloat16 unit where
    /// they have one (with [`F32_TERMS`] terms for float32), else float32.
    pub fn new(precision: Precision, kernels: Kernels) -> Arithmetic {
        match kernels.unit() {
            None => Arithmetic::Fma,
            Some(unit) => Arithmetic::Bf16(Bf16 {
                unit,
                terms: match precision {
                    Precision::F32 => F32_TERMS,
                    Precision::Bf16 => 1,
                },
            }),
        }
    }

    /// [`Arithmetic::new`] on the kernels this process uses.
    pub fn current(precision: Precision) -> Arithmetic {
        Arithmetic::new(precision, Kernels::current())
    }

    /// Rows as tiles for this arithmetic, where it has a unit and `rows` is
    /// enough to repay the weight's packing; `None` where float32 serves
    /// (or where a value is not exact in bfloat16 and more than one term is
    /// asked for: float32's accuracy needs the rows exact).
    fn tiles(self, rows: usize, tile: impl FnOnce(bool) -> Option<Tiled>) -> Option<(Tiled, Bf16)> {
        match self {
            Arithmetic::Bf16(b) if rows >= TILES_FROM_ROWS => tile(b.terms > 1).map(|t| (t, b)),
            _ => None,
        }
    }
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
        math: Bf16,
    },
}

impl<'a> Input<'a> {
    /// Rows `range`, for `inputs`-wide rows.
    pub fn slice(&self, range: Range<usize>, inputs: usize) -> Input<'a> {
        match *self {
            Input::Dense(x) => Input::Dense(&x[range.start * inputs..range.end * inputs]),
            Input::Sparse(rows) => Input::Sparse(rows.slice(range)),
            Input::Paired(rows) => Input::Paired(rows.slice(range)),
            Input::Tiles(rows, math) => Input::Tiles(rows.slice_rows(range), math),
        }
    }

    /// Number of rows, for `inputs`-wide rows.
    pub fn rows(&self, inputs: usize) -> usize {
        match self {
            Input::Dense(x) => x.len() / inputs.max(1),
            Input::Sparse(rows) => rows.rows(),
            Input::Paired(rows) => rows.rows(),
            Input::Tiles(rows, _) => rows.rows(),
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
            Input::Tiles(rows, _) => rows.k(),
        };
        assert_eq!(cols, inputs, "input is not {inputs} wide");
        self.rows(inputs)
    }

    /// Consecutive chunks of at most `most` rows (paired rows cut between
    /// pairs, tiles between tiles), each with its first row.
    pub fn chunks(self, most: usize, inputs: usize) -> impl Iterator<Item = (usize, Input<'a>)> {
        let n = self.rows(inputs);
        let most = match self {
            Input::Paired(_) => most & !1,
            Input::Tiles(..) => most / 16 * 16,
            _ => most,
        };
        assert!(most > 0 || n == 0, "chunks of no rows");
        (0..n)
            .step_by(most.max(1))
            .map(move |first| (first, self.slice(first..n.min(first + most), inputs)))
    }
}

impl<'a> TrainInput<'a> {
    /// The same rows as the forward pass reads them.
    pub fn forward(&self) -> Input<'a> {
        match *self {
            TrainInput::Dense(x) => Input::Dense(x),
            TrainInput::Sparse { rows, .. } => Input::Sparse(rows),
            TrainInput::Paired { rows, .. } => Input::Paired(rows),
            TrainInput::Tiles { rows, math, .. } => Input::Tiles(rows, math),
        }
    }
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

/// A fixed set of images in the form the first layer reads fastest, chosen
/// here once: bfloat16 tiles where the arithmetic has a unit (and the
/// images are exact in bfloat16 where float32 is asked for); else
/// compressed when they are sparse enough (MNIST is), and then, where the
/// order is free, merged in pairs of similar images; with their labels in
/// the same order.
pub struct Images<'d> {
    form: Form<'d>,
    labels: Cow<'d, [u8]>,
}

enum Form<'d> {
    Dense(&'d [f32]),
    Compressed(SparseRows),
    Paired(PairRows),
    Tiles(Tiled, Bf16),
}

impl<'d> Images<'d> {
    /// `images` (`[n, inputs]`) and their `labels` (may be empty, for
    /// inference), for `role`, computed with `arith`.
    pub fn new(
        images: &'d [f32],
        labels: &'d [u8],
        inputs: usize,
        role: Role,
        arith: Arithmetic,
    ) -> Images<'d> {
        let rows = images.len() / inputs.max(1);
        let kept = |form| Images {
            form,
            labels: Cow::Borrowed(labels),
        };
        if role != Role::Gather {
            let tiles = arith.tiles(rows, |exact| Tiled::from_rows(images, inputs, exact));
            if let Some((tiles, math)) = tiles {
                return kept(Form::Tiles(tiles, math));
            }
        }
        match (SparseRows::compress_if_sparse(images, inputs), role) {
            (None, _) => kept(Form::Dense(images)),
            (Some(rows), Role::Evaluate) => Images::paired(rows, labels),
            (Some(rows), _) => kept(Form::Compressed(rows)),
        }
    }

    /// `rows` merged in pairs of similar rows (the forward product's
    /// fastest form), labels reordered alike.
    fn paired(rows: SparseRows, labels: &[u8]) -> Images<'d> {
        let order = pair_order(rows.view());
        let labels = match labels.is_empty() {
            true => Vec::new(),
            false => order.iter().map(|&r| labels[r as usize]).collect(),
        };
        Images {
            form: Form::Paired(PairRows::from_rows(rows.view(), &order)),
            labels: Cow::Owned(labels),
        }
    }

    pub fn input(&self) -> Input<'_> {
        match &self.form {
            Form::Dense(x) => Input::Dense(x),
            Form::Compressed(rows) => Input::Sparse(rows.view()),
            Form::Paired(rows) => Input::Paired(rows.view()),
            Form::Tiles(tiles, math) => Input::Tiles(tiles.view(), *math),
        }
    }

    /// The labels, in the images' order here.
    pub fn labels(&self) -> &[u8] {
        &self.labels
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

/// The training split as every step of a full-batch run reads it: its
/// [`Images`] in any order and, for a sparse or tiled form, the same
/// grouped by column for the weight gradient.
pub struct WholeBatch<'d> {
    images: Images<'d>,
    by_column: ByColumn,
}

/// The training rows grouped by column, for the weight gradient.
enum ByColumn {
    None,
    Blocks(ColumnBlocks),
    Tiles(Tiled),
}

impl<'d> WholeBatch<'d> {
    pub fn new(
        dense: &'d [f32],
        labels: &'d [u8],
        inputs: usize,
        arith: Arithmetic,
    ) -> WholeBatch<'d> {
        let images = Images::new(dense, labels, inputs, Role::Evaluate, arith);
        let by_column = match &images.form {
            // Regrouped from the pairs (the compressed rows are gone by
            // now: peak memory).
            Form::Paired(rows) => ByColumn::Blocks(ColumnBlocks::new(rows.view(), GRAD_BLOCK_ROWS)),
            Form::Tiles(..) => {
                let mut t = Tiled::default();
                t.fill_transposed_from_sparse(SparseRows::from_dense(dense, inputs).view());
                ByColumn::Tiles(t)
            }
            _ => ByColumn::None,
        };
        WholeBatch { images, by_column }
    }

    pub fn input(&self) -> TrainInput<'_> {
        match (self.images.input(), &self.by_column) {
            (Input::Dense(x), _) => TrainInput::Dense(x),
            (Input::Paired(rows), ByColumn::Blocks(by_column)) => {
                TrainInput::Paired { rows, by_column }
            }
            (Input::Sparse(rows), ByColumn::Blocks(by_column)) => {
                TrainInput::Sparse { rows, by_column }
            }
            (Input::Tiles(rows, math), ByColumn::Tiles(t)) => TrainInput::Tiles {
                rows,
                by_column: t.view(),
                math,
            },
            _ => unreachable!("sparse and tiled rows are grouped by column when made"),
        }
    }

    pub fn images(&self) -> &Images<'d> {
        &self.images
    }
}

/// A minibatch, refilled every step: its rows compressed, and for the
/// weight gradient the same grouped by column, or as bfloat16 tiles and
/// their transpose where the arithmetic has a unit and at most
/// one term (`bf16`). Buffers are kept, so steps do not allocate.
#[derive(Default)]
pub struct CompressedBatch {
    rows: SparseRows,
    by_column: ColumnBlocks,
    tiles: Tiled,
    tiles_t: Tiled,
    math: Option<Bf16>,
}

impl CompressedBatch {
    /// Refills it with the rows `gather` writes, in the form `arith` reads.
    pub fn fill(&mut self, arith: Arithmetic, gather: impl FnOnce(&mut SparseRows)) {
        gather(&mut self.rows);
        self.math = match arith {
            Arithmetic::Bf16(math) if math.terms <= MINIBATCH_TERMS => {
                self.tiles.fill_from_sparse(self.rows.view());
                self.tiles_t.fill_transposed_from_sparse(self.rows.view());
                Some(math)
            }
            _ => None,
        };
        if self.math.is_none() {
            self.by_column.fill(self.rows.view(), GRAD_BLOCK_ROWS);
        }
    }

    pub fn input(&self) -> TrainInput<'_> {
        match self.math {
            Some(math) => TrainInput::Tiles {
                rows: self.tiles.view(),
                by_column: self.tiles_t.view(),
                math,
            },
            None => TrainInput::Sparse {
                rows: self.rows.view(),
                by_column: &self.by_column,
            },
        }
    }
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

/// The weight as one input form reads it.
#[derive(Clone, Copy)]
enum Weight<'a> {
    Rows(&'a [f32]),
    Panels(PanelView<'a>),
    /// `W1ᵀ` in pairs of inputs, as bfloat16 terms, for a unit.
    Pairs(&'a [Pairs], Unit),
}

/// The first layer's buffers in a workspace: its weight repacked for input
/// that its storage does not suit (or for a unit), the threads' parts of a
/// minibatch's product, and the gradient's terms for a unit.
#[derive(Debug, Default)]
pub struct Scratch {
    rows: Vec<f32>,
    panels: Panels,
    parts: Mutex<ColumnParts>,
    pairs: Vec<Pairs>,
    dz_pairs: Vec<Pairs>,
    /// `dW1ᵀ` row-major, where the weight is stored in rows.
    dw_t: Vec<f32>,
}

/// The first layer's weight ready for forward passes over one input form,
/// until the parameters change: see [`FirstLayer::prepare`].
#[derive(Clone, Copy)]
pub struct Prepared<'a> {
    layer: &'a FirstLayer,
    weight: Weight<'a>,
    parts: &'a Mutex<ColumnParts>,
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

    /// The weight, from `stored` (the parameters in storage order), as `x`'s
    /// form reads it: in place where it is stored so, else repacked into
    /// `scratch`.
    pub fn prepare<'a>(
        &'a self,
        stored: &'a [f32],
        x: &Input<'_>,
        scratch: &'a mut Scratch,
    ) -> Prepared<'a> {
        let Scratch {
            rows,
            panels,
            parts,
            pairs,
            ..
        } = scratch;
        let (w, n, k) = (&stored[self.w.clone()], self.outputs, self.inputs);
        let weight = match (x, self.panels) {
            (Input::Tiles(_, math), _) => {
                pairs.resize_with(math.terms, Pairs::default);
                let src = match self.panels {
                    true => Source::Panels(w),
                    false => Source::Transposed(w),
                };
                Pairs::fill_terms(pairs, src, k, n);
                Weight::Pairs(pairs, math.unit)
            }
            (Input::Dense(_), false) => Weight::Rows(w),
            (Input::Dense(_), true) => {
                rows.resize(w.len(), 0.0);
                unpack_transposed(rows, w, k, n);
                Weight::Rows(rows)
            }
            (_, true) => Weight::Panels(PanelView::new(w, k, n)),
            (_, false) => {
                panels.pack_transposed(w, k, n);
                Weight::Panels(panels.view())
            }
        };
        Prepared {
            layer: self,
            weight,
            parts,
        }
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
            TrainInput::Tiles {
                by_column, math, ..
            } => {
                // dW1ᵀ = Xᵀ·dZ1: the samples along k, dZ1 split into terms.
                let (rows, n, k) = (by_column.k(), self.outputs, self.inputs);
                let dz = &dz[..rows * n];
                scratch.dz_pairs.resize_with(math.terms, Pairs::default);
                Pairs::fill_terms(&mut scratch.dz_pairs, Source::Rows(dz), rows, n);
                let terms: Vec<PairsView> = scratch.dz_pairs.iter().map(Pairs::view).collect();
                match self.panels {
                    true => {
                        let out = Out::Panels {
                            data: dw,
                            rows: k,
                            n,
                        };
                        bf16::product(math.unit, out, by_column, &terms, threads);
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
                        bf16::product(math.unit, out, by_column, &terms, threads);
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

impl Prepared<'_> {
    /// `z[rows, outputs] = x · W1ᵀ` for rows of the form the weight was
    /// prepared for, on `threads` threads: for compressed rows on several
    /// threads (a minibatch), the threads split the weight's columns.
    pub fn forward(&self, z: &mut [f32], x: Input<'_>, threads: usize) {
        match (x, self.weight) {
            (Input::Dense(x), Weight::Rows(w)) => {
                let d = self.layer.dims(x.len() / self.layer.inputs);
                dense::forward(z, x, w, d, threads)
            }
            (Input::Sparse(rows), Weight::Panels(w)) if threads > 1 => {
                let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
                spmm_by_columns(z, rows, w, &mut parts)
            }
            (Input::Sparse(rows), Weight::Panels(w)) => spmm(z, rows, w, false),
            (Input::Paired(rows), Weight::Panels(w)) => spmm_paired(z, rows, w),
            (Input::Tiles(rows, _), Weight::Pairs(pairs, unit)) => {
                let terms: Vec<PairsView> = pairs.iter().map(Pairs::view).collect();
                let n = self.layer.outputs;
                let out = Out::Rows {
                    data: z,
                    rows: rows.rows(),
                    n,
                    stride: n,
                };
                bf16::product(unit, out, rows, &terms, threads)
            }
            _ => unreachable!("the weight was prepared for another input form"),
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
        let kept = Images::new(&sparse, &labels, 10, Role::Infer, Arithmetic::Fma);
        assert!(matches!(kept.input(), Input::Sparse(_)) && kept.compressed().is_some());
        assert_eq!(kept.labels(), &labels[..]);
        let free = Images::new(&sparse, &labels, 10, Role::Evaluate, Arithmetic::Fma);
        let Input::Paired(rows) = free.input() else {
            panic!("paired")
        };
        let (images, order) = (rows.to_dense(), free.labels());
        for (row, &label) in images.chunks(10).zip(order) {
            assert_eq!(row, &sparse[label as usize * 10..][..10]);
        }
        let chunks: Vec<usize> = free.input().chunks(5, 10).map(|(f, _)| f).collect();
        assert_eq!(chunks, [0, 4, 8]);
        let d = Images::new(&dense, &labels, 10, Role::Evaluate, Arithmetic::Fma);
        assert!(matches!(d.input(), Input::Dense(x) if x.as_ptr() == dense.as_ptr()));
        assert_eq!(d.kind(), InputKind::Dense);
        let whole = WholeBatch::new(&sparse, &labels, 10, Arithmetic::Fma);
        assert!(matches!(whole.input(), TrainInput::Paired { .. }));
    }
}
