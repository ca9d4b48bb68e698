//! Compressed rows merged in pairs, and the transpose of compressed rows
//! cut into blocks.
//!
//! The sparse kernel is bound by loads: each stored entry costs an index
//! load, a broadcast and a load of a panel row per FMA. Two rows merged into
//! one list of (column, two values) load each panel row once for two
//! outputs. That pays where the two rows share most of their columns:
//! - the weight gradient `Xᵀ·D`: rows of `Xᵀ` are pixels, and neighbouring
//!   pixels of a digit are mostly inked together, so [`ColumnBlocks`] merges
//!   columns `2j, 2j + 1` of `X`;
//! - the forward product of a fixed set of images (the evaluated splits, and
//!   the training split of a full-batch run): [`pair_order`] matches each
//!   image with a similar one.
//!
//! docs/PERFORMANCE.md has the measurements.

use super::rows::SparseView;
use rayon::prelude::*;
use std::ops::Range;

/// A sparse matrix (`rows x cols`) with its rows merged in pairs: pair `j`
/// lists, in order, each column where row `2j` or `2j + 1` has an entry,
/// with both values (0 for the one absent). A last pair of an odd count has
/// one row.
#[derive(Clone, Debug, Default)]
pub struct PairRows {
    rows: usize,
    cols: usize,
    /// Pair `j`'s entries are `ptr[j]..ptr[j + 1]`.
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<[f32; 2]>,
}

/// Borrowed pairs `j0..j1` of a [`PairRows`].
#[derive(Clone, Copy, Debug)]
pub struct PairView<'a> {
    rows: usize,
    cols: usize,
    ptr: &'a [usize],
    idx: &'a [u32],
    val: &'a [[f32; 2]],
}

impl PairRows {
    /// Rows `order[2j]` and `order[2j + 1]` of `m` merged as pair `j` (row
    /// `r` of the result is row `order[r]` of `m`; `order` is a permutation
    /// of `m`'s rows, such as [`pair_order`]'s).
    pub fn from_rows(m: SparseView<'_>, order: &[u32]) -> PairRows {
        assert_eq!(order.len(), m.rows(), "an order lists every row");
        let mut p = PairRows {
            rows: m.rows(),
            cols: m.cols(),
            ptr: Vec::with_capacity(m.rows().div_ceil(2) + 1),
            // At most every entry of `m` (pages never written are not mapped).
            idx: Vec::with_capacity(m.entries()),
            val: Vec::with_capacity(m.entries()),
        };
        p.ptr.push(0);
        for two in order.chunks(2) {
            let (a, va) = m.row(two[0] as usize);
            let (b, vb) = two
                .get(1)
                .map_or((&[][..], &[][..]), |&r| m.row(r as usize));
            let (mut i, mut k) = (0, 0);
            while i < a.len() || k < b.len() {
                let c = a
                    .get(i)
                    .copied()
                    .unwrap_or(u32::MAX)
                    .min(b.get(k).copied().unwrap_or(u32::MAX));
                let mut v = [0.0; 2];
                if a.get(i) == Some(&c) {
                    v[0] = va[i];
                    i += 1;
                }
                if b.get(k) == Some(&c) {
                    v[1] = vb[k];
                    k += 1;
                }
                p.idx.push(c);
                p.val.push(v);
            }
            p.ptr.push(p.idx.len());
        }
        p
    }

    /// Rows (before pairing).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// All pairs.
    pub fn view(&self) -> PairView<'_> {
        PairView {
            rows: self.rows,
            cols: self.cols,
            ptr: &self.ptr,
            idx: &self.idx,
            val: &self.val,
        }
    }

    /// Rebuilds as the transpose of `m` (a counting sort of its entries by
    /// column pair; rows stay in order within each pair). `parts` tasks
    /// each count the entries of a range of rows, then each place those of
    /// a range of pairs (about equal counts), reading only those of each row
    /// (its columns are sorted). `counts` is scratch.
    pub(crate) fn transpose_from(&mut self, m: impl Rows, counts: &mut Vec<usize>, parts: usize) {
        let (pairs, parts) = (m.cols().div_ceil(2), parts.max(1));
        counts.clear();
        counts.resize(parts * (pairs + 1), 0);
        counts
            .par_chunks_mut(pairs + 1)
            .enumerate()
            .for_each(|(p, counts)| {
                for r in m.rows() * p / parts..m.rows() * (p + 1) / parts {
                    // A row's columns are sorted, so a pair's two come
                    // together. (Branch-free: whether a column starts a pair
                    // is data, and mispredicting it cost more than the
                    // counting.)
                    let mut last = usize::MAX;
                    m.for_each_in(r, 0..u32::MAX, |k, _| {
                        let j = k as usize / 2;
                        counts[j + 1] += (j != last) as usize;
                        last = j;
                    });
                }
            });
        let (counts, others) = counts.split_at_mut(pairs + 1);
        for other in others.chunks_exact(pairs + 1) {
            counts.iter_mut().zip(other).for_each(|(c, o)| *c += o);
        }
        for j in 0..pairs {
            counts[j + 1] += counts[j];
        }
        let nnz = counts[pairs];
        (self.rows, self.cols) = (m.cols(), m.rows());
        self.ptr.clear();
        self.ptr.extend_from_slice(counts);
        self.idx.resize(nnz, 0);
        self.val.resize(nnz, [0.0; 2]);
        // Pair ranges with about equal entries; each task gets its slices of
        // the entries and of `counts`, which it advances as each pair's next
        // slot.
        let mut tasks = Vec::with_capacity(parts);
        let (mut idx_rest, mut val_rest) = (&mut self.idx[..], &mut self.val[..]);
        let mut counts_rest = &mut counts[..pairs];
        let (mut j0, mut base) = (0, 0);
        for p in 1..=parts {
            let j1 = if p == parts {
                pairs
            } else {
                (j0 + counts_rest.partition_point(|&c| c < nnz * p / parts)).min(pairs)
            };
            let (next, rest) = std::mem::take(&mut counts_rest).split_at_mut(j1 - j0);
            let end = rest.first().copied().unwrap_or(nnz);
            counts_rest = rest;
            let (i, i_rest) = std::mem::take(&mut idx_rest).split_at_mut(end - base);
            let (v, v_rest) = std::mem::take(&mut val_rest).split_at_mut(end - base);
            (idx_rest, val_rest) = (i_rest, v_rest);
            tasks.push((j0, base, next, i, v));
            (j0, base) = (j1, end);
        }
        tasks
            .into_par_iter()
            .for_each(|(j0, base, next, idx, val)| {
                let j1 = j0 + next.len();
                let columns = 2 * j0 as u32..2 * j1 as u32;
                for r in 0..m.rows() {
                    // The row's entries are sorted, so a pair's two columns
                    // come one after the other: an odd column's entry joins
                    // the even one's slot when it had one. Branch-free (as
                    // the count above): each entry writes its slot whole.
                    let (mut last, mut at, mut even) = (usize::MAX, 0, 0.0);
                    m.for_each_in(r, columns.clone(), |k, v| {
                        let j = k as usize / 2;
                        let new = j != last;
                        let next = &mut next[j - j0];
                        at = if new { *next - base } else { at };
                        *next += new as usize;
                        let odd = k % 2 == 1;
                        even = if !odd {
                            v
                        } else if new {
                            0.0
                        } else {
                            even
                        };
                        idx[at] = r as u32;
                        val[at] = [even, if odd { v } else { 0.0 }];
                        last = j;
                    });
                }
            });
    }
}

/// Rows with sorted columns that [`ColumnBlocks`] can regroup by column:
/// compressed rows, or rows merged in pairs.
pub trait Rows: Copy + Send + Sync {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Number of columns.
    fn cols(&self) -> usize;
    /// Rows `range`.
    fn slice(&self, range: Range<usize>) -> Self;
    /// `f(column, value)` for each entry of row `r` in `columns`, in order.
    fn for_each_in(&self, r: usize, columns: Range<u32>, f: impl FnMut(u32, f32));
}

/// The entries of a row (sorted columns `ks`, values `vs`) in `columns`.
fn within<'a, T>(
    ks: &'a [u32],
    vs: &'a [T],
    columns: Range<u32>,
) -> impl Iterator<Item = (&'a u32, &'a T)> {
    let a = ks.partition_point(|&k| k < columns.start);
    let b = ks.partition_point(|&k| k < columns.end);
    ks[a..b].iter().zip(&vs[a..b])
}

impl Rows for SparseView<'_> {
    fn rows(&self) -> usize {
        SparseView::rows(self)
    }

    fn cols(&self) -> usize {
        SparseView::cols(self)
    }

    fn slice(&self, range: Range<usize>) -> Self {
        SparseView::slice(self, range)
    }

    fn for_each_in(&self, r: usize, columns: Range<u32>, mut f: impl FnMut(u32, f32)) {
        let (ks, vs) = self.row(r);
        for (&k, &v) in within(ks, vs, columns) {
            f(k, v);
        }
    }
}

impl Rows for PairView<'_> {
    fn rows(&self) -> usize {
        PairView::rows(self)
    }

    fn cols(&self) -> usize {
        PairView::cols(self)
    }

    fn slice(&self, range: Range<usize>) -> Self {
        PairView::slice(self, range)
    }

    /// A row's entries are those of its pair where its value is not 0
    /// (compressed rows store no zeros).
    fn for_each_in(&self, r: usize, columns: Range<u32>, mut f: impl FnMut(u32, f32)) {
        let (ks, vs) = self.pair(r / 2);
        for (&k, v) in within(ks, vs, columns) {
            if v[r % 2] != 0.0 {
                f(k, v[r % 2]);
            }
        }
    }
}

impl<'a> PairView<'a> {
    /// Rows (before pairing).
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    pub(crate) fn pairs(&self) -> usize {
        self.ptr.len() - 1
    }

    /// Rows `range` (which starts on a pair, and ends on one or at the end).
    pub fn slice(&self, range: Range<usize>) -> PairView<'a> {
        assert!(
            range.start.is_multiple_of(2)
                && (range.end.is_multiple_of(2) || range.end == self.rows),
            "rows {range:?} split a pair"
        );
        assert!(
            range.start <= range.end && range.end <= self.rows,
            "rows {range:?} out of range"
        );
        PairView {
            rows: range.len(),
            ptr: &self.ptr[range.start / 2..=range.end.div_ceil(2)],
            ..*self
        }
    }

    /// Column indices and value pairs of pair `j`.
    pub(crate) fn pair(&self, j: usize) -> (&'a [u32], &'a [[f32; 2]]) {
        let span = self.ptr[j]..self.ptr[j + 1];
        (&self.idx[span.clone()], &self.val[span])
    }

    /// The rows as a dense row-major matrix (for tests and references).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for j in 0..self.pairs() {
            let (idx, val) = self.pair(j);
            for (&c, v) in idx.iter().zip(val) {
                for (h, &v) in v.iter().enumerate() {
                    if 2 * j + h < self.rows {
                        out[(2 * j + h) * self.cols + c as usize] = v;
                    }
                }
            }
        }
        out
    }
}

/// Rows sorted by first column, then matched within each run of this many.
const PAIR_WINDOW: usize = 64;

/// An order of `m`'s rows for [`PairRows::from_rows`] in which the two rows
/// of a pair share many columns: rows sorted by their first column, then,
/// in windows of 64 rows, each unmatched row in turn takes the
/// unmatched row of its window with the largest overlap (shared over all
/// columns of the two). On the MNIST test images: 1.23 merged entries per
/// two rows' entries (random pairs: 1.50; sorted by first pixel only: 1.39).
/// A pure function of `m`.
pub fn pair_order(m: SparseView<'_>) -> Vec<u32> {
    let (rows, words) = (m.rows(), m.cols().div_ceil(64));
    let first = |r: usize| m.row(r).0.first().map_or(0, |&k| k as usize + 1);
    let mut starts = vec![0usize; m.cols() + 2];
    for r in 0..rows {
        starts[first(r) + 1] += 1;
    }
    for k in 1..starts.len() {
        starts[k] += starts[k - 1];
    }
    let mut sorted = vec![0u32; rows];
    for r in 0..rows {
        let at = &mut starts[first(r)];
        sorted[*at] = r as u32;
        *at += 1;
    }
    let mut order = vec![0u32; rows];
    order
        .par_chunks_mut(PAIR_WINDOW)
        .zip(sorted.par_chunks(PAIR_WINDOW))
        .for_each(|(out, window)| {
            let mut bits = vec![0u64; window.len() * words];
            for (b, &r) in bits.chunks_exact_mut(words.max(1)).zip(window) {
                for &k in m.row(r as usize).0 {
                    b[k as usize / 64] |= 1 << (k % 64);
                }
            }
            let set = |i: usize| &bits[i * words..(i + 1) * words];
            let counts: Vec<u32> = window
                .iter()
                .map(|&r| m.row(r as usize).0.len() as u32)
                .collect();
            let shared = |i: usize, j: usize| {
                set(i)
                    .iter()
                    .zip(set(j))
                    .map(|(a, b)| (a & b).count_ones())
                    .sum::<u32>()
            };
            let mut taken = vec![false; window.len()];
            let mut next = 0;
            for i in 0..window.len() {
                if taken[i] {
                    continue;
                }
                taken[i] = true;
                // Largest shared / union, compared as cross products.
                let mut best: Option<(usize, u64, u64)> = None;
                for j in (i + 1..window.len()).filter(|&j| !taken[j]) {
                    let s = shared(i, j) as u64;
                    let u = (counts[i] + counts[j]) as u64 - s;
                    if best.is_none_or(|(_, bs, bu)| s * bu > bs * u) {
                        best = Some((j, s, u));
                    }
                }
                out[next] = window[i];
                next += 1;
                if let Some((j, _, _)) = best {
                    taken[j] = true;
                    out[next] = window[j];
                    next += 1;
                }
            }
        });
    order
}

/// The transpose of a matrix, one [`PairRows`] per block of `block_rows`
/// rows: block `b` holds `X[b*block_rows.., :]ᵀ`, so `Xᵀ·D` is the sum over
/// blocks of the block times `D`'s rows of that block.
#[derive(Clone, Debug, Default)]
pub struct ColumnBlocks {
    pub(crate) block_rows: usize,
    blocks: Vec<PairRows>,
    /// Scratch of each block: its entries per column pair, counted by
    /// each part of its rows.
    counts: Vec<Vec<usize>>,
}

impl ColumnBlocks {
    /// Rebuilds from `m`, blocks in parallel, reusing buffers (no
    /// allocation once grown).
    pub fn fill(&mut self, m: impl Rows, block_rows: usize) {
        let block_rows = block_rows.max(1);
        let n_blocks = m.rows().div_ceil(block_rows);
        self.block_rows = block_rows;
        self.blocks.resize_with(n_blocks, PairRows::default);
        self.counts.resize_with(n_blocks, Vec::new);
        // Fewer blocks than threads (a minibatch): each block's columns are
        // split among the threads too.
        let threads = rayon::current_num_threads();
        let parts = if n_blocks < threads { threads } else { 1 };
        self.blocks
            .par_iter_mut()
            .zip(&mut self.counts)
            .enumerate()
            .for_each(|(b, (t, counts))| {
                let first = b * block_rows;
                let rows = m.slice(first..(first + block_rows).min(m.rows()));
                t.transpose_from(rows, counts, parts)
            });
    }

    /// A new [`ColumnBlocks::fill`]ed from `m`.
    pub fn new(m: impl Rows, block_rows: usize) -> ColumnBlocks {
        let mut c = ColumnBlocks::default();
        c.fill(m, block_rows);
        c
    }

    /// The transposed blocks, in row order.
    pub fn blocks(&self) -> &[PairRows] {
        &self.blocks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::sparse::tests::sparse_dense;
    use crate::tensor::sparse::SparseRows;
    use crate::tensor::transpose;

    #[test]
    fn pair_transposes_match_and_split_parts_agree() {
        // Odd and even column counts (a last pair of one), empty columns at
        // both ends and in the middle, more parts than pairs with entries.
        for (rows, cols, density) in [
            (300, 784, 0.19),
            (5, 9, 0.3),
            (40, 3, 0.9),
            (0, 4, 0.5),
            (7, 1, 0.8),
        ] {
            let mut dense = sparse_dense(rows, cols, density, 10);
            for r in 0..rows {
                dense[r * cols] = 0.0;
                dense[r * cols + cols / 2] = 0.0;
            }
            let x = SparseRows::from_dense(&dense, cols);
            let mut whole = PairRows::default();
            whole.transpose_from(x.view(), &mut Vec::new(), 1);
            let mut expect = vec![0.0; rows * cols];
            transpose(&mut expect, rows, &dense, cols, rows, cols);
            assert_eq!(whole.view().to_dense(), expect, "{rows}x{cols}");
            for parts in [2, 3, 7, 20] {
                let mut split = PairRows::default();
                split.transpose_from(x.view(), &mut Vec::new(), parts);
                assert_eq!(
                    (&split.ptr, &split.idx, &split.val),
                    (&whole.ptr, &whole.idx, &whole.val),
                    "{rows}x{cols} in {parts} parts"
                );
            }
        }
    }

    #[test]
    fn paired_rows_are_the_rows_in_pair_order() {
        // Odd and even row counts, empty rows, batch 1, more rows than a window.
        for (rows, cols, density) in [(300, 784, 0.19), (7, 13, 0.4), (1, 5, 0.9), (0, 4, 0.5)] {
            let mut dense = sparse_dense(rows, cols, density, 21);
            for r in (0..rows).step_by(5) {
                dense[r * cols..(r + 1) * cols].fill(0.0);
            }
            let x = SparseRows::from_dense(&dense, cols);
            let order = pair_order(x.view());
            let mut seen = order.clone();
            seen.sort_unstable();
            assert!(seen.iter().copied().eq(0..rows as u32), "not a permutation");
            assert_eq!(pair_order(x.view()), order, "not a function of the rows");
            let paired = PairRows::from_rows(x.view(), &order);
            let expect: Vec<f32> = order
                .iter()
                .flat_map(|&r| dense[r as usize * cols..][..cols].iter().copied())
                .collect();
            assert_eq!(paired.view().to_dense(), expect, "{rows}x{cols}");
            // Every slice on pair boundaries is those rows.
            for (a, b) in [(0, rows), (0, rows / 2 * 2), (rows / 4 * 2, rows)] {
                let part = paired.view().slice(a..b).to_dense();
                assert_eq!(part, expect[a * cols..b * cols], "rows {a}..{b}");
            }
            // Regrouped by column, the pairs are those rows regrouped.
            let ordered = SparseRows::from_dense(&expect, cols);
            for block_rows in [2, 64, 512] {
                let from_pairs = ColumnBlocks::new(paired.view(), block_rows);
                let from_rows = ColumnBlocks::new(ordered.view(), block_rows);
                assert_eq!(from_pairs.blocks().len(), from_rows.blocks().len());
                for (a, b) in from_pairs.blocks().iter().zip(from_rows.blocks()) {
                    assert_eq!((&a.ptr, &a.idx, &a.val), (&b.ptr, &b.idx, &b.val));
                }
            }
        }
    }
}
