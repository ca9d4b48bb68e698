//! Compressed sparse rows (CSR): a mostly-zero matrix with only its
//! non-zero entries stored, row by row.

use rayon::prelude::*;
use std::ops::Range;

/// Rows of a matrix with only the non-zero entries stored (CSR).
#[derive(Clone, Debug, Default)]
pub struct SparseRows {
    cols: usize,
    /// Row `r` is entries `ptr[r]..ptr[r + 1]`.
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f32>,
}

/// A borrowed range of rows of a [`SparseRows`] (slicing rows is free).
#[derive(Clone, Copy, Debug)]
pub struct SparseView<'a> {
    cols: usize,
    /// `rows + 1` absolute offsets into `idx` and `val`.
    ptr: &'a [usize],
    idx: &'a [u32],
    val: &'a [f32],
}

/// Below this fraction of non-zeros, [`super::spmm`] beats the dense product
/// (MNIST is at 0.19; measured with `cargo bench -- sparse`).
pub const SPARSE_BELOW: f64 = 0.3;

/// Where each `cols`-wide row's non-zero entries start in its compressed
/// form, and (last) how many there are; counted in parallel. Zero-width
/// data has no rows.
fn row_starts<T: Copy + Sync>(
    data: &[T],
    cols: usize,
    value: impl Fn(T) -> f32 + Sync,
) -> Vec<usize> {
    let rows = data.len().checked_div(cols).unwrap_or(0);
    let mut ptr = vec![0; rows + 1];
    ptr[1..]
        .par_iter_mut()
        .zip(data.par_chunks_exact(cols.max(1)))
        .for_each(|(p, row)| *p = row.iter().filter(|&&v| value(v) != 0.0).count());
    for r in 1..ptr.len() {
        ptr[r] += ptr[r - 1];
    }
    ptr
}

impl SparseRows {
    /// The compressed form of `cols`-wide rows whose entries are
    /// `value(x)` for each `x` of `data`, if few enough are non-zero for it
    /// to pay ([`SPARSE_BELOW`]).
    pub fn compress_if_sparse<T: Copy + Sync>(
        data: &[T],
        cols: usize,
        value: impl Fn(T) -> f32 + Sync + Copy,
    ) -> Option<SparseRows> {
        let ptr = row_starts(data, cols, value);
        let nonzero = ptr[ptr.len() - 1];
        ((nonzero as f64) < SPARSE_BELOW * data.len() as f64)
            .then(|| SparseRows::compress(data, cols, ptr, value))
    }

    /// Compresses `rows x cols` row-major `dense` data; runs in parallel.
    pub fn from_dense(dense: &[f32], cols: usize) -> SparseRows {
        let value = |v: f32| v;
        SparseRows::compress(dense, cols, row_starts(dense, cols, value), value)
    }

    /// [`SparseRows::compress_if_sparse`] given where each row's entries
    /// start: the entries are allocated once, exactly, and each block of
    /// rows written in place by its own task (no regrowth, no
    /// concatenation).
    fn compress<T: Copy + Sync>(
        data: &[T],
        cols: usize,
        ptr: Vec<usize>,
        value: impl Fn(T) -> f32 + Sync,
    ) -> SparseRows {
        let nnz = ptr[ptr.len() - 1];
        let (mut idx, mut val) = (vec![0u32; nnz], vec![0.0f32; nnz]);
        const BLOCK: usize = 4096;
        let mut tasks = Vec::new();
        let (mut idx_rest, mut val_rest) = (&mut idx[..], &mut val[..]);
        let rows = &data[..(ptr.len() - 1) * cols];
        for (b, rows) in rows.chunks(BLOCK * cols.max(1)).enumerate() {
            let n = ptr[b * BLOCK + rows.len() / cols] - ptr[b * BLOCK];
            let (i, i_rest) = std::mem::take(&mut idx_rest).split_at_mut(n);
            let (v, v_rest) = std::mem::take(&mut val_rest).split_at_mut(n);
            (idx_rest, val_rest) = (i_rest, v_rest);
            tasks.push((rows, i, v));
        }
        tasks.into_par_iter().for_each(|(rows, idx, val)| {
            let mut m = 0;
            for row in rows.chunks_exact(cols) {
                for (k, v) in row.iter().map(|&x| value(x)).enumerate() {
                    if v != 0.0 {
                        idx[m] = k as u32;
                        val[m] = v;
                        m += 1;
                    }
                }
            }
        });
        SparseRows {
            cols,
            ptr,
            idx,
            val,
        }
    }

    /// Empties `self` to zero rows of `cols` columns, keeping its buffers.
    pub fn clear(&mut self, cols: usize) {
        assert!(cols <= u32::MAX as usize, "{cols} columns do not fit u32");
        self.cols = cols;
        self.ptr.clear();
        self.idx.clear();
        self.val.clear();
        self.ptr.push(0);
    }

    /// Appends a row that `fill` writes into room for `max` entries
    /// (columns, values), returning how many it wrote, in column order.
    /// Branch-free writers can write every candidate and advance past the
    /// kept ones; buffers grow only to the entries plus `max`.
    pub fn push_row_with(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u32], &mut [f32]) -> usize,
    ) {
        let n = self.idx.len();
        self.idx.resize(n + max, 0);
        self.val.resize(n + max, 0.0);
        let m = fill(&mut self.idx[n..], &mut self.val[n..]).min(max);
        self.idx.truncate(n + m);
        self.val.truncate(n + m);
        self.end_row(m);
    }

    /// Appends the rows of `other` (same width).
    pub fn append(&mut self, other: &SparseRows) {
        assert_eq!(self.cols, other.cols, "appending rows of another width");
        let base = self.idx.len();
        self.idx.extend_from_slice(&other.idx);
        self.val.extend_from_slice(&other.val);
        self.ptr.extend(other.ptr.iter().skip(1).map(|&p| base + p));
    }

    /// Closes the row of the last `m` entries, checking the bound `spmm`
    /// relies on (it reads without checks).
    fn end_row(&mut self, m: usize) {
        let n = self.idx.len();
        let max = self.idx[n - m..].iter().fold(0, |a, &k| a.max(k));
        assert!(
            m == 0 || (max as usize) < self.cols,
            "column {max} of {}",
            self.cols
        );
        self.ptr.push(n);
    }

    pub fn rows(&self) -> usize {
        self.ptr.len() - 1
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Stored (non-zero) entries.
    pub fn nnz(&self) -> usize {
        self.idx.len()
    }

    /// All rows.
    pub fn view(&self) -> SparseView<'_> {
        self.rows_view(0..self.rows())
    }

    /// Rows `range`.
    pub fn rows_view(&self, range: Range<usize>) -> SparseView<'_> {
        SparseView {
            cols: self.cols,
            ptr: &self.ptr[range.start..=range.end],
            idx: &self.idx,
            val: &self.val,
        }
    }
}

impl<'a> SparseView<'a> {
    pub fn rows(&self) -> usize {
        self.ptr.len() - 1
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Rows `range` of this view.
    pub fn slice(&self, range: Range<usize>) -> SparseView<'a> {
        SparseView {
            ptr: &self.ptr[range.start..=range.end],
            ..*self
        }
    }

    /// Stored entries of these rows.
    pub fn entries(&self) -> usize {
        self.ptr[self.rows()] - self.ptr[0]
    }

    /// Column indices and values of row `r`.
    pub fn row(&self, r: usize) -> (&'a [u32], &'a [f32]) {
        let span = self.ptr[r]..self.ptr[r + 1];
        (&self.idx[span.clone()], &self.val[span])
    }

    /// The rows as a dense row-major matrix (for tests and references).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows() * self.cols];
        for r in 0..self.rows() {
            let (idx, val) = self.row(r);
            for (&k, &v) in idx.iter().zip(val) {
                out[r * self.cols + k as usize] = v;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::sparse::tests::sparse_dense;

    #[test]
    fn compressing_round_trips_and_slices() {
        assert_eq!(SparseRows::from_dense(&[1.0, 2.0], 0).rows(), 0);
        for (rows, cols) in [(0, 5), (1, 1), (7, 13), (5000, 33)] {
            let dense = sparse_dense(rows, cols, 0.2, 1);
            let s = SparseRows::from_dense(&dense, cols);
            assert_eq!(s.rows(), rows);
            assert_eq!(s.nnz(), dense.iter().filter(|&&v| v != 0.0).count());
            assert_eq!(s.view().to_dense(), dense);
            if rows > 3 {
                let part = s.view().slice(2..rows - 1);
                assert_eq!(part.to_dense(), dense[2 * cols..(rows - 1) * cols]);
                let mut joined = SparseRows::from_dense(&dense[..3 * cols], cols);
                joined.append(&SparseRows::from_dense(&dense[3 * cols..], cols));
                assert_eq!(joined.view().to_dense(), dense);
                assert_eq!(joined.nnz(), s.nnz());
            }
            let sparse_enough = (s.nnz() as f64) < SPARSE_BELOW * dense.len() as f64;
            let c = SparseRows::compress_if_sparse(&dense, cols, |v| v);
            assert_eq!(
                c.map(|c| c.view().to_dense()),
                sparse_enough.then(|| dense.clone())
            );
        }
    }
}
