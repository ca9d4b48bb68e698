//! Batches for training: the whole split (full batch), or shuffled
//! minibatches with a fresh permutation each epoch, optionally shifted or
//! distorted.

use super::augment::{random_shift, shift_entries, shift_image};
use super::distort::Distortion;
use super::pixels::Pixels;
use super::Split;
use crate::nn::dropout::stream_key;
use crate::tensor::sparse::{SparseRows, SparseView};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Stream ids, so shuffling and augmentation never share random numbers.
const SHUFFLE: u64 = 1;
const AUGMENT: u64 = 2;
/// Rows gathered ahead of the one being copied (enough to cover a trip to
/// memory).
const PREFETCH_AHEAD: usize = 4;

/// Produces the batch of any training step; a step's batch is a pure function
/// of (seed, step), which makes runs resumable and reproducible.
#[derive(Debug)]
pub struct Batcher {
    /// Samples per batch; `None` is full batch.
    batch: Option<usize>,
    seed: u64,
    /// Largest shift in pixels (0: no augmentation).
    shift: usize,
    /// Distortions beside the shift (none by default).
    distort: Distortion,
    shape: (usize, usize),
    perm: Vec<u32>,
    perm_epoch: Option<usize>,
    out: Out,
    /// Batches given as data, in place of the seeded ones.
    given: Option<GivenBatches>,
}

/// The buffers a batch is written to (reused).
#[derive(Debug, Default)]
struct Out {
    images: Vec<f32>,
    labels: Vec<u8>,
    /// The second half of a compressed batch, gathered on another thread.
    second_half: SparseRows,
    /// An image converted to float32, where the split holds bytes.
    row: Vec<f32>,
}

/// Steps in one pass over `n` samples in batches of `batch` (`None`: all).
pub fn steps_per_epoch(n: usize, batch: Option<usize>) -> usize {
    n.div_ceil(batch.unwrap_or(n).min(n).max(1))
}

/// Batches given as data (a replay) rather than drawn from the seed: each
/// step's sample ids and each sample's shift `(dx, dy)` in pixels, right
/// and down. For checking the training loop against another
/// implementation step by step.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GivenBatches {
    pub ids: Vec<Vec<u32>>,
    pub shifts: Vec<Vec<(i8, i8)>>,
}

impl Batcher {
    pub fn new(
        n: usize,
        batch: Option<usize>,
        seed: u64,
        shift: usize,
        shape: (usize, usize),
    ) -> Batcher {
        let rows = batch.unwrap_or(n).min(n);
        let copies = batch.is_some() || shift > 0;
        let features = shape.0 * shape.1;
        Batcher {
            batch,
            seed,
            shift,
            distort: Distortion::default(),
            shape,
            perm: (0..n as u32).collect(),
            perm_epoch: None,
            out: Out {
                images: if copies {
                    vec![0.0; rows * features]
                } else {
                    Vec::new()
                },
                labels: Vec::with_capacity(if copies { rows } else { 0 }),
                second_half: SparseRows::default(),
                row: Vec::new(),
            },
            given: None,
        }
    }

    /// Takes each step's batch from `given` instead of the seed; an error
    /// names what does not fit (a sample outside the split, a batch of
    /// another size, a shift past the largest, a step without its shifts).
    /// Steps past the last given one are refused when they come.
    pub fn given(mut self, given: GivenBatches) -> Result<Batcher, String> {
        let (n, rows, shift) = (self.perm.len(), self.max_rows(), self.shift as i64);
        if self.batch.is_none() || !self.distort.is_none() {
            return Err("given batches need minibatches without distortions".into());
        }
        if given.ids.len() != given.shifts.len() {
            return Err(format!(
                "{} steps of samples but {} of shifts",
                given.ids.len(),
                given.shifts.len()
            ));
        }
        for (step, (ids, shifts)) in given.ids.iter().zip(&given.shifts).enumerate() {
            if ids.len() != rows || shifts.len() != rows {
                return Err(format!(
                    "step {step}: {} samples and {} shifts for batches of {rows}",
                    ids.len(),
                    shifts.len()
                ));
            }
            if let Some(id) = ids.iter().find(|&&id| id as usize >= n) {
                return Err(format!("step {step}: sample {id} of a split of {n}"));
            }
            let far = |&(dx, dy): &(i8, i8)| (dx as i64).abs().max((dy as i64).abs()) > shift;
            if let Some((dx, dy)) = shifts.iter().find(|s| far(s)) {
                return Err(format!(
                    "step {step}: shift ({dx}, {dy}) past --shift {shift}"
                ));
            }
        }
        self.given = Some(given);
        Ok(self)
    }

    /// Largest batch this batcher returns.
    pub fn max_rows(&self) -> usize {
        self.batch.unwrap_or(self.perm.len()).min(self.perm.len())
    }

    /// Steps in one pass over the data.
    pub fn steps_per_epoch(&self) -> usize {
        steps_per_epoch(self.perm.len(), self.batch)
    }

    /// Whether every step's batch is the split itself, unchanged.
    pub fn is_whole_split(&self) -> bool {
        self.batch.is_none() && self.shift == 0 && self.distort.is_none()
    }

    /// Distorts every training image by `d` (see [`super::distort`]), the
    /// shift becoming the distortion's translation.
    pub fn distorted(mut self, d: Distortion) -> Batcher {
        self.distort = d;
        if !d.is_none() && self.out.images.is_empty() {
            let rows = self.max_rows();
            self.out.images = vec![0.0; rows * self.shape.0 * self.shape.1];
        }
        self
    }

    /// Whether images are distorted (which a device gathering its own
    /// batches does not do).
    pub fn distorts(&self) -> bool {
        !self.distort.is_none()
    }

    /// The images and labels of step `step` (0-based). A whole split of
    /// bytes is converted into a float32 copy kept here (the CPU's full
    /// batch reads the split's own compressed form instead).
    pub fn get<'a>(&'a mut self, split: &'a Split, step: usize) -> (&'a [f32], &'a [u8]) {
        if let (true, Pixels::Floats(x)) = (self.is_whole_split(), &split.images) {
            return (x, &split.labels);
        }
        let (key, ids, how, out) = self.step(step);
        let f = split.features;
        out.labels.clear();
        out.images.resize(out.images.len().max(ids.len() * f), 0.0);
        for (j, &id) in ids.iter().enumerate() {
            let id = id as usize;
            let dst = &mut out.images[j * f..(j + 1) * f];
            let src = split.images.range_in(id * f..(id + 1) * f, &mut out.row);
            how.dense(src, dst, key, j);
            out.labels.push(split.labels[id]);
        }
        (&out.images[..ids.len() * f], &out.labels)
    }

    /// [`Batcher::get`] from `compressed` (the split's images, compressed):
    /// the batch's images are written to `out` and its labels returned.
    /// Cheaper than compressing the dense batch, and the same images. Two
    /// threads gather a half each (the second half into a buffer appended
    /// after); each row depends only on its sample and position.
    pub fn get_compressed<'a>(
        &'a mut self,
        split: &Split,
        compressed: &SparseRows,
        step: usize,
        out: &mut SparseRows,
    ) -> &'a [u8] {
        let (key, ids, how, buf) = self.step(step);
        let (half, rows) = (ids.len() / 2, compressed.view());
        let second = &mut buf.second_half;
        rayon::join(
            || gather(out, rows, &ids[..half], 0, key, how),
            || gather(second, rows, &ids[half..], half, key, how),
        );
        out.append(second);
        buf.labels.clear();
        buf.labels
            .extend(ids.iter().map(|&id| split.labels[id as usize]));
        &buf.labels
    }

    /// The sample ids of step `step`, and in `shifts` each one's shift:
    /// what a device gathers itself.
    pub fn plan(&mut self, step: usize, shifts: &mut Vec<(isize, isize)>) -> &[u32] {
        let (key, ids, how, _) = self.step(step);
        shifts.clear();
        shifts.extend((0..ids.len()).map(|j| how.shift(key, j)));
        ids
    }

    /// Step `step`'s augmentation key, sample ids, how its images change,
    /// and the buffers its batch goes to.
    fn step(&mut self, step: usize) -> (u64, &[u32], How<'_>, &mut Out) {
        let key = self.advance(step);
        let (k, rows) = (step % self.steps_per_epoch(), self.max_rows());
        let Batcher {
            perm,
            given,
            out,
            shift,
            distort,
            shape,
            ..
        } = self;
        let given = given.as_ref();
        let ids = match given {
            Some(g) => g
                .ids
                .get(step)
                .unwrap_or_else(|| panic!("step {step} is past the {} batches given", g.ids.len())),
            None => &perm[k * rows..((k + 1) * rows).min(perm.len())],
        };
        let how = How {
            shift: *shift,
            distort: *distort,
            shape: *shape,
            given: given.map(|g| &g.shifts[step][..]),
        };
        (key, ids, how, out)
    }

    /// Readies the sample ids of step `step` (a new epoch's permutation);
    /// returns the step's augmentation key.
    fn advance(&mut self, step: usize) -> u64 {
        let epoch = step / self.steps_per_epoch();
        if self.batch.is_some() && self.given.is_none() && self.perm_epoch != Some(epoch) {
            self.perm
                .iter_mut()
                .enumerate()
                .for_each(|(i, p)| *p = i as u32);
            self.perm
                .shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(stream_key(
                    self.seed,
                    epoch as u64,
                    SHUFFLE,
                )));
            self.perm_epoch = Some(epoch);
        }
        stream_key(self.seed, step as u64, AUGMENT)
    }
}

/// Asks the CPU to bring `data` into cache (a hint: no effect on results).
fn prefetch<T>(data: &[T]) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..std::mem::size_of_val(data)).step_by(64) {
        // SAFETY: prefetching is a hint that never faults, and the address
        // lies within `data`.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().cast::<i8>().add(line));
        }
    }
}

/// How each image of a batch is changed.
#[derive(Clone, Copy, Debug)]
struct How<'a> {
    shift: usize,
    distort: Distortion,
    shape: (usize, usize),
    /// The batch's shifts, where given.
    given: Option<&'a [(i8, i8)]>,
}

impl How<'_> {
    /// The shift of sample `position` of the batch with augmentation key `key`.
    fn shift(&self, key: u64, position: usize) -> (isize, isize) {
        match (self.given, self.shift) {
            (Some(given), _) => (given[position].0 as isize, given[position].1 as isize),
            (None, 0) => (0, 0),
            (None, max) => random_shift(key, position as u64, max),
        }
    }

    /// Image `src` as sample `position` of the batch with augmentation key
    /// `key` gets it, into `dst`.
    fn dense(&self, src: &[f32], dst: &mut [f32], key: u64, position: usize) {
        if !self.distort.is_none() {
            let warp = self.distort.warp(self.shift, key, position as u64);
            warp.apply(src, dst, self.shape);
        } else if self.shift > 0 {
            let (dx, dy) = self.shift(key, position);
            shift_image(src, dst, self.shape, dx, dy);
        } else {
            dst.copy_from_slice(src);
        }
    }
}

/// Replaces `out` with the rows `ids` of `rows`, shifted or distorted as
/// `how` says; `first` is the batch position of `ids[0]` (it picks each
/// row's draws).
fn gather(
    out: &mut SparseRows,
    rows: SparseView<'_>,
    ids: &[u32],
    first: usize,
    key: u64,
    how: How<'_>,
) {
    out.clear(rows.cols());
    if !how.distort.is_none() {
        let mut image = vec![0.0f32; rows.cols()];
        for (j, &id) in ids.iter().enumerate() {
            let (idx, val) = rows.row(id as usize);
            let warp = how.distort.warp(how.shift, key, (first + j) as u64);
            let ink = idx.iter().copied().zip(val.iter().copied());
            warp.move_ink(ink, &mut image, how.shape);
            out.push_row_with(image.len(), |i, v| {
                // Written always, kept where inked: no branch to mispredict
                // at the ink's edges.
                let mut m = 0;
                for (k, &x) in image.iter().enumerate() {
                    (i[m], v[m]) = (k as u32, x);
                    m += (x != 0.0) as usize;
                }
                m
            });
        }
        return;
    }
    for (j, &id) in ids.iter().enumerate() {
        // The rows are scattered over the split: ask for a later one now,
        // or each row starts with a wait on memory.
        if let Some(&ahead) = ids.get(j + PREFETCH_AHEAD) {
            let (idx, val) = rows.row(ahead as usize);
            prefetch(idx);
            prefetch(val);
        }
        let (idx, val) = rows.row(id as usize);
        if how.shift > 0 {
            let (dx, dy) = how.shift(key, first + j);
            shift_entries(idx, val, out, how.shape, dx, dy);
        } else {
            out.push_row_with(idx.len(), |i, v| {
                i.copy_from_slice(idx);
                v.copy_from_slice(val);
                idx.len()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(n: usize) -> Split {
        Split {
            images: (0..n * 4).map(|v| v as f32).collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            features: 4,
        }
    }

    #[test]
    fn each_epoch_visits_every_sample_once_in_a_new_order() {
        let s = split(10);
        let mut b = Batcher::new(10, Some(4), 7, 0, (2, 2));
        assert_eq!(b.steps_per_epoch(), 3);
        let mut epochs = Vec::new();
        for e in 0..2 {
            let mut seen = Vec::new();
            for k in 0..3 {
                let (x, y) = b.get(&s, e * 3 + k);
                assert_eq!(x.len(), y.len() * 4);
                for (row, &l) in x.chunks(4).zip(y) {
                    let id = row[0] as usize / 4;
                    assert_eq!(l as usize, id % 10, "image and label stay paired");
                    seen.push(id);
                }
            }
            let mut sorted = seen.clone();
            sorted.sort();
            assert_eq!(sorted, (0..10).collect::<Vec<_>>());
            epochs.push(seen);
        }
        assert_ne!(epochs[0], epochs[1]);
        // A fresh batcher gives the same batch for the same step (resumable).
        let mut again = Batcher::new(10, Some(4), 7, 0, (2, 2));
        let first_of_epoch_1 = again.get(&s, 3).1.to_vec();
        assert_eq!(
            first_of_epoch_1,
            epochs[1][..4]
                .iter()
                .map(|&i| (i % 10) as u8)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn compressed_batches_are_the_dense_batches() {
        // 6 x 5 images, about half zeros, shifted by up to 2 pixels and
        // distorted or not.
        let n = 23;
        let s = Split {
            images: (0..n * 30)
                .map(|v| {
                    if v % 7 < 3 {
                        0.0
                    } else {
                        (v % 13) as f32 / 12.0
                    }
                })
                .collect(),
            labels: (0..n).map(|i| (i % 10) as u8).collect(),
            features: 30,
        };
        let compressed = SparseRows::from_dense(&s.images.floats(), 30);
        let warp = Distortion {
            rotate: 20.0,
            scale: 0.2,
            shear: 0.3,
            elastic: 1.5,
        };
        for (batch, shift, d) in [
            (Some(8), 2, Distortion::default()),
            (Some(5), 0, Distortion::default()),
            (None, 1, Distortion::default()),
            (Some(8), 2, warp),
            (None, 0, warp),
        ] {
            let mut dense = Batcher::new(n, batch, 3, shift, (6, 5)).distorted(d);
            let mut sparse = Batcher::new(n, batch, 3, shift, (6, 5)).distorted(d);
            let mut out = SparseRows::default();
            for step in 0..7 {
                let (x, y) = dense.get(&s, step);
                let y2 = sparse.get_compressed(&s, &compressed, step, &mut out);
                assert_eq!(y, y2, "labels of step {step}");
                assert_eq!(out.view().to_dense(), x, "images of step {step}");
            }
        }
    }

    #[test]
    fn full_batch_without_augmentation_is_the_split_itself() {
        let s = split(5);
        let mut b = Batcher::new(5, None, 1, 0, (2, 2));
        let (x, y) = b.get(&s, 3);
        assert_eq!(x.as_ptr(), s.images.floats().as_ptr());
        assert_eq!(y, &s.labels[..]);
        let bytes = Split {
            images: Pixels::Bytes((0..20).collect()),
            ..s.clone()
        };
        let (x, y) = b.get(&bytes, 3);
        assert_eq!(x, &bytes.images.floats()[..]);
        assert_eq!(y, &s.labels[..]);
    }
}
