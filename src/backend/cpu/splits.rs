//! The splits held in the forms the CPU's first layer reads fastest
//! ([`crate::nn::first_layer`] chooses them), and the batches of a run:
//! minibatches prepared on another thread while the step before them
//! computes.

use super::super::SplitName;
use crate::data::batch::Batcher;
use crate::data::{Dataset, Split};
use crate::nn::{
    Arithmetic, CompressedBatch, Images, Input, InputKind, Role, TrainInput, WholeBatch,
};
use crate::tensor::sparse::SparseRows;

pub struct Splits<'d> {
    data: &'d Dataset,
    batcher: Batcher,
    arith: Arithmetic,
    train: Train<'d>,
    val: Images<'d>,
    test: Images<'d>,
}

/// The training split, as the steps read it.
enum Train<'d> {
    /// Every batch is the whole split, unchanged.
    Whole(WholeBatch<'d>),
    /// Batches gathered from the split: compressed, when its images are,
    /// this step's and the next one's, prepared while this one computes;
    /// else dense, by the batcher.
    Batches {
        images: Images<'d>,
        batches: Box<[Batch; 2]>,
    },
}

/// A compressed minibatch and its labels.
#[derive(Default)]
struct Batch {
    /// The step whose batch this is.
    step: Option<usize>,
    rows: CompressedBatch,
    labels: Vec<u8>,
}

impl<'d> Splits<'d> {
    /// The splits of `data` for `arith`'s first layer.
    pub fn new(data: &'d Dataset, batcher: Batcher, arith: Arithmetic) -> Splits<'d> {
        let f = data.features();
        let (train, labels) = (data.train.images.view(), &data.train.labels);
        let train = match batcher.is_whole_split() {
            true => Train::Whole(WholeBatch::new(train, labels, f, arith)),
            false => Train::Batches {
                images: Images::new(train, labels, f, Role::Gather, arith),
                batches: Default::default(),
            },
        };
        let eval = |s: &'d Split| Images::new(s.images.view(), &s.labels, f, Role::Evaluate, arith);
        Splits {
            val: eval(&data.val),
            test: eval(&data.test),
            train,
            data,
            batcher,
            arith,
        }
    }

    /// The form the first layer's training input takes here.
    pub fn input_kind(&self) -> InputKind {
        match &self.train {
            Train::Whole(whole) => whole.kind(),
            Train::Batches { images, .. } => images.kind(),
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
        f: impl FnOnce(TrainInput<'_>, &[u8]) -> R + Send,
    ) -> (R, usize) {
        let (batcher, split, arith) = (&mut self.batcher, &self.data.train, self.arith);
        let (images, [now, next]) = match &mut self.train {
            Train::Whole(whole) => {
                return (f(whole.input(), whole.labels()), split.len());
            }
            Train::Batches { images, batches } => (&*images, &mut **batches),
        };
        let Some(train) = images.compressed() else {
            let (x, y) = batcher.get(split, i);
            return (f(TrainInput::Dense(x), y), y.len());
        };
        if now.step != Some(i) {
            now.fill(batcher, split, train, i, arith);
        }
        let (r, ()) = rayon::join(
            || f(now.rows.input(), &now.labels),
            || {
                if more {
                    next.fill(batcher, split, train, i + 1, arith)
                }
            },
        );
        let rows = now.labels.len();
        std::mem::swap(now, next);
        (r, rows)
    }

    /// A split's images as evaluation reads them fastest, and its labels in
    /// the same order (accuracy does not depend on the order).
    pub fn eval(&self, which: SplitName) -> (Input<'_>, &[u8]) {
        let images = match (which, &self.train) {
            (SplitName::Train, Train::Whole(whole)) => {
                return (whole.input().forward(), whole.labels())
            }
            (SplitName::Train, Train::Batches { images, .. }) => images,
            (SplitName::Val, _) => &self.val,
            (SplitName::Test, _) => &self.test,
        };
        (images.input(), images.labels())
    }

    /// Answers on a split, one per image in the order [`Splits::eval`]
    /// gives, put back in the split's own order.
    pub fn in_split_order(&self, which: SplitName, answers: Vec<u8>) -> Vec<u8> {
        match (which, &self.train) {
            (SplitName::Train, Train::Whole(whole)) => whole.in_given_order(answers),
            (SplitName::Train, Train::Batches { images, .. }) => images.in_given_order(answers),
            (SplitName::Val, _) => self.val.in_given_order(answers),
            (SplitName::Test, _) => self.test.in_given_order(answers),
        }
    }
}

impl Batch {
    /// Makes this step `step`'s batch.
    fn fill(
        &mut self,
        batcher: &mut Batcher,
        split: &Split,
        train: &SparseRows,
        step: usize,
        arith: Arithmetic,
    ) {
        let Batch { rows, labels, .. } = self;
        rows.fill(arith, |out| {
            let got = batcher.get_compressed(split, train, step, out);
            labels.clear();
            labels.extend_from_slice(got);
        });
        self.step = Some(step);
    }
}
