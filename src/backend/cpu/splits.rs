//! The splits as the CPU's first layer reads them fastest, and the batches
//! of a run: the images compressed when they are sparse enough (MNIST is),
//! a fixed set of images merged in pairs of similar ones, and minibatches
//! prepared on another thread while the step before them computes.

use super::super::SplitName;
use crate::data::batch::Batcher;
use crate::data::{Dataset, Split};
use crate::nn::{Input, InputKind};
use crate::tensor::sparse::{pair_order, ColumnBlocks, PairRows, SparseRows};

/// Rows per block of the first layer's weight gradient on compressed input
/// (their `dZ1`, 384 KB, stays in L2).
const GRAD_BLOCK_ROWS: usize = 512;

pub struct Splits<'d> {
    data: &'d Dataset,
    batcher: Batcher,
    /// The data compressed, when it is sparse enough to gain from it.
    sparse: Option<SparseData>,
}

/// Compressed forms of the splits, and the reused buffers of the
/// compressed minibatches.
struct SparseData {
    train: TrainRows,
    val: PairedSplit,
    test: PairedSplit,
    /// This step's batch and the next one's, prepared while this one computes.
    batches: [Batch; 2],
}

/// The training images, compressed.
enum TrainRows {
    /// Minibatches are gathered from these rows.
    Batches(SparseRows),
    /// Every batch is the whole split: its images merged in pairs, labels
    /// reordered alike (the loss and the weight gradient are sums over all
    /// images, so only their rounding depends on the order), and the same
    /// by column for the weight gradient.
    Whole {
        rows: PairedSplit,
        by_column: ColumnBlocks,
    },
}

/// A compressed minibatch: rows, the same by column, labels.
#[derive(Default)]
struct Batch {
    /// The step whose batch this is.
    step: Option<usize>,
    rows: SparseRows,
    by_column: ColumnBlocks,
    labels: Vec<u8>,
}

impl<'d> Splits<'d> {
    pub fn new(data: &'d Dataset, batcher: Batcher) -> Splits<'d> {
        Splits {
            sparse: SparseData::new(data, batcher.is_whole_split()),
            data,
            batcher,
        }
    }

    /// The form the first layer's input takes here.
    pub fn input_kind(&self) -> InputKind {
        match self.sparse {
            Some(_) => InputKind::Sparse,
            None => InputKind::Dense,
        }
    }

    /// Training images.
    pub fn train_len(&self) -> usize {
        self.data.train.len()
    }

    /// `f(images, labels)` on step `i`'s batch, and the batch's size; a
    /// compressed minibatch for step `i + 1` is prepared meanwhile on
    /// another thread when `more` (the preparation is mostly serial work).
    pub fn with_batch<R: Send>(
        &mut self,
        i: usize,
        more: bool,
        f: impl FnOnce(Input<'_>, &[u8]) -> R + Send,
    ) -> (R, usize) {
        let (batcher, split) = (&mut self.batcher, &self.data.train);
        match &mut self.sparse {
            Some(SparseData {
                train: TrainRows::Whole { rows, by_column },
                ..
            }) => {
                let x = Input::Paired {
                    rows: rows.rows.view(),
                    by_column: Some(by_column),
                };
                (f(x, &rows.labels), split.len())
            }
            Some(SparseData {
                train: TrainRows::Batches(train),
                batches: [now, next],
                ..
            }) => {
                if now.step != Some(i) {
                    now.fill(batcher, split, train, i);
                }
                let (r, ()) = rayon::join(
                    || f(now.input(), &now.labels),
                    || {
                        if more {
                            next.fill(batcher, split, train, i + 1)
                        }
                    },
                );
                let rows = now.labels.len();
                std::mem::swap(now, next);
                (r, rows)
            }
            None => {
                let (x, y) = batcher.get(split, i);
                (f(Input::Dense(x), y), y.len())
            }
        }
    }

    /// A split's images as evaluation reads them fastest, and its labels in
    /// the same order (accuracy does not depend on the order).
    pub fn eval(&self, which: SplitName) -> (Input<'_>, &[u8]) {
        let d = self.data;
        let split = match which {
            SplitName::Train => &d.train,
            SplitName::Val => &d.val,
            SplitName::Test => &d.test,
        };
        let Some(s) = &self.sparse else {
            return (Input::Dense(&split.images), &split.labels);
        };
        let paired = match (which, &s.train) {
            (SplitName::Train, TrainRows::Batches(rows)) => {
                return (Input::new(&split.images, Some(rows)), &split.labels)
            }
            (SplitName::Train, TrainRows::Whole { rows, .. }) => rows,
            (SplitName::Val, _) => &s.val,
            (SplitName::Test, _) => &s.test,
        };
        let x = Input::Paired {
            rows: paired.rows.view(),
            by_column: None,
        };
        (x, &paired.labels)
    }
}

impl Batch {
    /// Makes this step `step`'s batch.
    fn fill(&mut self, batcher: &mut Batcher, split: &Split, train: &SparseRows, step: usize) {
        let labels = batcher.get_compressed(split, train, step, &mut self.rows);
        self.labels.clear();
        self.labels.extend_from_slice(labels);
        self.by_column.fill(self.rows.view(), GRAD_BLOCK_ROWS);
        self.step = Some(step);
    }

    fn input(&self) -> Input<'_> {
        Input::Sparse {
            rows: self.rows.view(),
            by_column: Some(&self.by_column),
        }
    }
}

impl SparseData {
    /// `None` unless the training images are sparse enough.
    fn new(data: &Dataset, whole_split: bool) -> Option<SparseData> {
        let f = data.features();
        let train = SparseRows::compress_if_sparse(&data.train.images, f)?;
        let train = if whole_split {
            // Regrouped from the pairs, so the unpaired rows can go first
            // (peak memory).
            let rows = PairedSplit::new(train, &data.train.labels);
            let by_column = ColumnBlocks::new(rows.rows.view(), GRAD_BLOCK_ROWS);
            TrainRows::Whole { rows, by_column }
        } else {
            TrainRows::Batches(train)
        };
        let paired = |s: &Split| PairedSplit::new(SparseRows::from_dense(&s.images, f), &s.labels);
        Some(SparseData {
            val: paired(&data.val),
            test: paired(&data.test),
            train,
            batches: Default::default(),
        })
    }
}

/// Compressed images merged in pairs of similar ones (the forward
/// product's fastest form, see [`crate::tensor::sparse::pairs`]), and their
/// labels in the same order.
struct PairedSplit {
    rows: PairRows,
    labels: Vec<u8>,
}

impl PairedSplit {
    fn new(images: SparseRows, labels: &[u8]) -> PairedSplit {
        let order = pair_order(images.view());
        PairedSplit {
            rows: PairRows::from_rows(images.view(), &order),
            labels: order.iter().map(|&r| labels[r as usize]).collect(),
        }
    }
}
