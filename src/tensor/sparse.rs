//! Mostly-zero matrices in compressed rows, and their product with a dense
//! matrix.
//!
//! An MNIST image is about 81% zeros, and the first layer does 90% of the
//! network's arithmetic, so skipping the zeros is the largest speed-up there
//! is: the forward product `X·W1ᵀ` is [`spmm`] ([`spmm_by_columns`] for a
//! minibatch), reading the weight in column panels, and the weight gradient
//! `dW1 = dZ1ᵀ·X` is [`spmm_t`](super::spmm_t), a kernel of the same form run
//! on [`ColumnBlocks`](super::ColumnBlocks) (the transpose of `X` cut into row
//! blocks so each block's `dZ1` stays in cache, its rows merged in pairs).

use super::par::for_row_blocks;
use super::transpose::{copy_short, transpose};
use super::Aligned;
use multiversion::multiversion;
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

/// Below this fraction of non-zeros, [`spmm`] beats the dense product
/// (MNIST is at 0.19; measured with `cargo bench -- sparse`).
pub const SPARSE_BELOW: f64 = 0.3;

/// Where each `cols`-wide row's non-zero entries start in its compressed
/// form, and (last) how many there are; counted in parallel. Zero-width
/// data has no rows.
fn row_starts(dense: &[f32], cols: usize) -> Vec<usize> {
    let rows = dense.len().checked_div(cols).unwrap_or(0);
    let mut ptr = vec![0; rows + 1];
    ptr[1..]
        .par_iter_mut()
        .zip(dense.par_chunks_exact(cols.max(1)))
        .for_each(|(p, row)| *p = row.iter().filter(|&&v| v != 0.0).count());
    for r in 1..ptr.len() {
        ptr[r] += ptr[r - 1];
    }
    ptr
}

impl SparseRows {
    /// The compressed form of `dense`, if few enough entries are non-zero
    /// for it to pay ([`SPARSE_BELOW`]).
    pub fn compress_if_sparse(dense: &[f32], cols: usize) -> Option<SparseRows> {
        let ptr = row_starts(dense, cols);
        let nonzero = ptr[ptr.len() - 1];
        ((nonzero as f64) < SPARSE_BELOW * dense.len() as f64)
            .then(|| SparseRows::compress(dense, cols, ptr))
    }

    /// Compresses `rows x cols` row-major `dense` data; runs in parallel.
    pub fn from_dense(dense: &[f32], cols: usize) -> SparseRows {
        SparseRows::compress(dense, cols, row_starts(dense, cols))
    }

    /// [`SparseRows::from_dense`] given where each row's entries start: the
    /// entries are allocated once, exactly, and each block of rows written
    /// in place by its own task (no regrowth, no concatenation).
    fn compress(dense: &[f32], cols: usize, ptr: Vec<usize>) -> SparseRows {
        let nnz = ptr[ptr.len() - 1];
        let (mut idx, mut val) = (vec![0u32; nnz], vec![0.0f32; nnz]);
        const BLOCK: usize = 4096;
        let mut tasks = Vec::new();
        let (mut idx_rest, mut val_rest) = (&mut idx[..], &mut val[..]);
        let rows = &dense[..(ptr.len() - 1) * cols];
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
                for (k, &v) in row.iter().enumerate().filter(|(_, &v)| v != 0.0) {
                    idx[m] = k as u32;
                    val[m] = v;
                    m += 1;
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

/// Output columns per pass: one AVX-512 register.
pub const TILE: usize = 16;
/// Rows per chunk: their entries (about 150 per MNIST image) stay in L2
/// while every column tile re-reads them.
pub(super) const CHUNK_ROWS: usize = 64;

/// A dense `rows x cols` matrix stored as column panels: panel `t` holds
/// columns `t*TILE..(t+1)*TILE` of every row contiguously (zero-padded), so
/// one panel (50 KB for MNIST's first layer) is contiguous. With plain
/// row-major storage the 768-byte row stride mapped a tile onto a quarter of
/// L1's sets, and the kernel ran no faster than the dense product. The data
/// starts on a cache line, so each panel row is one line (see [`Aligned`]).
#[derive(Clone, Debug, Default)]
pub struct Panels {
    rows: usize,
    cols: usize,
    data: Aligned,
}

/// A borrowed matrix in [`Panels`] layout, as the kernels read it: from a
/// [`Panels`], or straight from a first-layer weight kept in this layout
/// (see [`crate::nn::Layout::w0_panels`]).
#[derive(Clone, Copy, Debug)]
pub struct PanelView<'a> {
    rows: usize,
    cols: usize,
    data: &'a [f32],
}

/// Floats a `rows x cols` matrix takes in panels (the last one padded).
pub fn panels_len(rows: usize, cols: usize) -> usize {
    cols.div_ceil(TILE) * rows * TILE
}

fn assert_panels(buf: &[f32], rows: usize, cols: usize) {
    assert_eq!(
        buf.len(),
        panels_len(rows, cols),
        "not {rows} x {cols} in panels"
    );
}

impl Panels {
    /// Repacks `rows x cols` from `src`, whose row `r` starts at
    /// `r * stride` (a column range of a wider matrix), reusing the buffer.
    pub fn pack(&mut self, src: &[f32], rows: usize, cols: usize, stride: usize) {
        self.resize(rows, cols);
        pack_into(&mut self.data, src, rows, cols, stride);
    }

    /// Packs the transpose of row-major `src` (`cols x rows`), as a layer's
    /// `[out, in]` weight becomes the `[in, out]` operand; panels in parallel.
    pub fn pack_transposed(&mut self, src: &[f32], rows: usize, cols: usize) {
        self.resize(rows, cols);
        pack_transposed_into(&mut self.data, src, rows, cols);
    }

    /// Sizes the buffer; padding columns are zeroed when the shape changes
    /// and never written after.
    fn resize(&mut self, rows: usize, cols: usize) {
        if (rows, cols) != (self.rows, self.cols) || self.data.is_empty() {
            self.rows = rows;
            self.cols = cols;
            self.data.resize(0);
            self.data.resize(panels_len(rows, cols));
        }
    }

    /// A copy of `src`, on a cache line.
    pub fn copy_from(&mut self, src: PanelView<'_>) {
        self.resize(src.rows, src.cols);
        self.data.copy_from_slice(src.data);
    }

    pub fn view(&self) -> PanelView<'_> {
        PanelView::new(&self.data, self.rows, self.cols)
    }
}

/// [`Panels::pack`] into `dst` (`panels_len(rows, cols)` floats; padding
/// columns are left as they are).
pub(super) fn pack_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize, stride: usize) {
    assert_panels(dst, rows, cols);
    for (t, panel) in dst.chunks_exact_mut(rows * TILE).enumerate() {
        let (c0, w) = (t * TILE, TILE.min(cols - t * TILE));
        for (r, dst) in panel.chunks_exact_mut(TILE).enumerate() {
            let at = r * stride + c0;
            copy_short(&mut dst[..w], &src[at..at + w]);
        }
    }
}

/// [`Panels::pack_transposed`] into `dst` (`panels_len(rows, cols)`
/// floats; padding columns are left as they are).
pub fn pack_transposed_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert_panels(dst, rows, cols);
    assert_eq!(src.len(), rows * cols, "source is not {cols} x {rows}");
    if rows == 0 {
        return;
    }
    dst.par_chunks_mut(rows * TILE)
        .enumerate()
        .for_each(|(t, panel)| {
            let (c0, w) = (t * TILE, TILE.min(cols - t * TILE));
            transpose(panel, TILE, &src[c0 * rows..(c0 + w) * rows], rows, w, rows);
        });
}

/// The inverse of [`pack_transposed_into`]: row-major `cols x rows` into
/// `dst` from `rows x cols` in panels.
pub fn unpack_transposed(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert_panels(src, rows, cols);
    assert_eq!(dst.len(), rows * cols, "destination is not {cols} x {rows}");
    if rows == 0 {
        return;
    }
    for (t, panel) in src.chunks_exact(rows * TILE).enumerate() {
        let (c0, w) = (t * TILE, TILE.min(cols - t * TILE));
        transpose(
            &mut dst[c0 * rows..(c0 + w) * rows],
            rows,
            panel,
            TILE,
            rows,
            w,
        );
    }
}

impl<'a> PanelView<'a> {
    /// `rows x cols` in panels in `data` ([`panels_len`] floats).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> PanelView<'a> {
        assert_panels(data, rows, cols);
        PanelView { rows, cols, data }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Columns `range`, which starts on a panel.
    pub fn columns(&self, range: Range<usize>) -> PanelView<'a> {
        assert!(
            range.start.is_multiple_of(TILE) && range.start <= range.end && range.end <= self.cols,
            "columns {range:?} of {} in panels of {TILE}",
            self.cols
        );
        let p = self.rows * TILE;
        PanelView {
            rows: self.rows,
            cols: range.len(),
            data: &self.data[range.start / TILE * p..range.end.div_ceil(TILE) * p],
        }
    }

    pub(super) fn panel(&self, t: usize) -> &'a [f32] {
        &self.data[t * self.rows * TILE..(t + 1) * self.rows * TILE]
    }
}

/// Below this many rows, [`spmm_by_columns`] splits the output columns
/// among the threads (a minibatch); above it, the rows ([`spmm`]).
pub const COLUMN_SPLIT_ROWS: usize = 512;

/// The threads' columns of the product in [`spmm_by_columns`] (kept, so
/// steps do not allocate).
#[derive(Clone, Debug, Default)]
pub struct ColumnParts {
    parts: Vec<Aligned>,
}

/// How many of `n` output columns each thread takes when threads split them
/// ([`spmm_by_columns`], [`spmm_t`]): whole groups of tiles where possible
/// (the AVX-512 kernel runs [`GROUP`] tiles per pass).
pub(super) fn columns_per_thread(n: usize) -> usize {
    let per_thread = n.div_ceil(TILE).div_ceil(rayon::current_num_threads());
    (per_thread.div_ceil(GROUP) * GROUP * TILE).min(n)
}

/// `out = a · b` for few rows of `a` (a minibatch), the threads splitting
/// `b`'s columns: each writes its columns of the product into its own
/// buffer (one cache's worth), and the parts are then copied into the rows of
/// `out`. Each output is summed as [`spmm`] sums it, so the results are the
/// same bits.
pub fn spmm_by_columns(
    out: &mut [f32],
    a: SparseView<'_>,
    b: PanelView<'_>,
    parts: &mut ColumnParts,
) {
    let (rows, n) = (a.rows(), b.cols());
    assert_eq!(out.len(), rows * n, "output is not rows x n");
    assert_eq!(b.rows(), a.cols(), "inner dimensions differ");
    if n == 0 {
        return;
    }
    let width = columns_per_thread(n);
    parts.parts.resize_with(n.div_ceil(width), Default::default);
    parts
        .parts
        .par_iter_mut()
        .enumerate()
        .for_each(|(p, product)| {
            let c0 = p * width;
            let b = b.columns(c0..(c0 + width).min(n));
            product.resize(rows * b.cols());
            spmm_rows(product, a, b, false);
        });
    let parts = &parts.parts;
    out.par_chunks_mut(CHUNK_ROWS * n)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (i, row) in chunk.chunks_exact_mut(n).enumerate() {
                let r = c * CHUNK_ROWS + i;
                for (p, product) in parts.iter().enumerate() {
                    let cols = width.min(n - p * width);
                    row[p * width..][..cols].copy_from_slice(&product[r * cols..][..cols]);
                }
            }
        });
}

/// `out[r, :] (+)= Σ_{(k, v) in row r of a} v · b[k, :]`: `out` is
/// `a.rows() x b.cols()` row-major. Blocks of rows are split among threads
/// (one block runs on the calling thread), and each row's sum has a fixed
/// order, so the result does not depend on the thread count.
pub fn spmm(out: &mut [f32], a: SparseView<'_>, b: PanelView<'_>, accumulate: bool) {
    let n = b.cols();
    assert_eq!(out.len(), a.rows() * n, "output is not rows x n");
    assert_eq!(b.rows(), a.cols(), "inner dimensions differ");
    if n == 0 {
        return;
    }
    for_row_blocks(out, n, |first, block| {
        let rows = a.slice(first..first + block.len() / n);
        spmm_rows(block, rows, b, accumulate);
    });
}

/// [`spmm`] on one thread: AVX-512 where the CPU has it, else portable code
/// (vectorised for AVX2 where available). Both sum in the same order with
/// fused multiply-adds, so they give the same bits.
fn spmm_rows(out: &mut [f32], a: SparseView<'_>, b: PanelView<'_>, accumulate: bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { avx512::spmm_rows(out, a, b, accumulate) };
    }
    spmm_rows_portable(out, a, b, accumulate)
}

/// Portable [`spmm_rows`], a chunk of rows and a panel at a time.
#[multiversion(targets("x86_64+avx2+fma"))]
fn spmm_rows_portable(out: &mut [f32], a: SparseView<'_>, b: PanelView<'_>, accumulate: bool) {
    let n = b.cols();
    for (c, out_chunk) in out.chunks_mut(CHUNK_ROWS * n).enumerate() {
        for t in 0..n.div_ceil(TILE) {
            let (panel, c0) = (b.panel(t), t * TILE);
            for (r, out_row) in out_chunk.chunks_exact_mut(n).enumerate() {
                let (idx, val) = a.row(c * CHUNK_ROWS + r);
                store(out_row, c0, &[row_tile(idx, val, panel)], accumulate);
            }
        }
    }
}

/// Writes (or, when `accumulate`, adds) consecutive tiles of sums into `row`
/// from column `c0`, dropping the panels' zero padding past the row's end.
#[inline(always)]
pub(super) fn store(row: &mut [f32], c0: usize, sums: &[[f32; TILE]], accumulate: bool) {
    for (i, sum) in sums.iter().enumerate() {
        let c = c0 + i * TILE;
        let w = TILE.min(row.len() - c);
        for (d, &s) in row[c..c + w].iter_mut().zip(sum) {
            *d = if accumulate { *d + s } else { s };
        }
    }
}

/// `Σ v · panel[k]` over one row's entries, in four interleaved partial
/// sums so consecutive FMAs do not wait on each other.
#[inline(always)]
fn row_tile(idx: &[u32], val: &[f32], panel: &[f32]) -> [f32; TILE] {
    let mut acc = [[0.0f32; TILE]; 4];
    let src = |k: u32| -> &[f32; TILE] {
        panel[k as usize * TILE..][..TILE]
            .try_into()
            .expect("a panel row is TILE wide")
    };
    let (ki, vi) = (idx.chunks_exact(4), val.chunks_exact(4));
    let (k_rest, v_rest) = (ki.remainder(), vi.remainder());
    for (ks, vs) in ki.zip(vi) {
        for u in 0..4 {
            let s = src(ks[u]);
            for j in 0..TILE {
                acc[u][j] = vs[u].mul_add(s[j], acc[u][j]);
            }
        }
    }
    for (&k, &v) in k_rest.iter().zip(v_rest) {
        let s = src(k);
        for j in 0..TILE {
            acc[0][j] = v.mul_add(s[j], acc[0][j]);
        }
    }
    let mut sum = [0.0f32; TILE];
    for j in 0..TILE {
        sum[j] = (acc[0][j] + acc[1][j]) + (acc[2][j] + acc[3][j]);
    }
    sum
}

/// Panels per pass of the AVX-512 kernel (12 accumulators). Measured against
/// 2 in one process, alternating, 2 threads: forward 128 rows 113 -> 109 µs,
/// 2,048 rows 1.66 -> 1.63 ms; weight gradient 128 rows 211 -> 184 µs, 2,048
/// rows 2.14 -> 2.01 ms; a default-preset training step 1.22 -> 1.17 ms. A
/// minibatch's gradient rows (one per pixel, ~24 entries for 128 images) are
/// short, so the per-row work of each pass counts, and fewer passes do less.
pub(super) const GROUP: usize = 3;
// `avx512::spmm_rows` dispatches groups of 1 to 3 panels.
const _: () = assert!(GROUP == 3);

/// The AVX-512 kernel: [`GROUP`] panels per pass, so each entry's index and
/// broadcast value feed several FMAs (the portable kernel spends most of its
/// instructions on them; the compiler would not keep a wider set of
/// accumulators in registers).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{store, PanelView, SparseView, CHUNK_ROWS, GROUP, TILE};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn spmm_rows(
        out: &mut [f32],
        a: SparseView<'_>,
        b: PanelView<'_>,
        accumulate: bool,
    ) {
        let (n, panels) = (b.cols(), b.cols().div_ceil(TILE));
        for (c, out_chunk) in out.chunks_mut(CHUNK_ROWS * n).enumerate() {
            let mut t = 0;
            while t < panels {
                let g = (panels - t).min(GROUP);
                for (r, out_row) in out_chunk.chunks_exact_mut(n).enumerate() {
                    let (idx, val) = a.row(c * CHUNK_ROWS + r);
                    let mut sums = [[0.0f32; TILE]; GROUP];
                    match g {
                        3 => row_tiles::<3>(idx, val, b, t, &mut sums),
                        2 => row_tiles::<2>(idx, val, b, t, &mut sums),
                        _ => row_tiles::<1>(idx, val, b, t, &mut sums),
                    }
                    store(out_row, t * TILE, &sums[..g], accumulate);
                }
                t += g;
            }
        }
    }

    /// Panels `t..t + G` of one row, summed as the portable `row_tile` does.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn row_tiles<const G: usize>(
        idx: &[u32],
        val: &[f32],
        b: PanelView<'_>,
        t: usize,
        sums: &mut [[f32; TILE]; GROUP],
    ) {
        let base: [*const f32; G] = std::array::from_fn(|g| b.panel(t + g).as_ptr());
        let rows = b.rows();
        let mut acc = [[_mm512_setzero_ps(); G]; 4];
        let mut add = |u: usize, k: u32, v: f32| {
            // Row indices of a `SparseRows` are below its `cols`, which
            // `spmm` checked equals the panels' rows.
            debug_assert!((k as usize) < rows);
            let v = _mm512_set1_ps(v);
            for g in 0..G {
                // SAFETY: k < rows, so the 16 floats at k * TILE lie in panel g.
                let s = unsafe { _mm512_loadu_ps(base[g].add(k as usize * TILE)) };
                acc[u][g] = _mm512_fmadd_ps(v, s, acc[u][g]);
            }
        };
        let (ki, vi) = (idx.chunks_exact(4), val.chunks_exact(4));
        let (k_rest, v_rest) = (ki.remainder(), vi.remainder());
        for (ks, vs) in ki.zip(vi) {
            for u in 0..4 {
                add(u, ks[u], vs[u]);
            }
        }
        for (&k, &v) in k_rest.iter().zip(v_rest) {
            add(0, k, v);
        }
        for g in 0..G {
            let s = _mm512_add_ps(
                _mm512_add_ps(acc[0][g], acc[1][g]),
                _mm512_add_ps(acc[2][g], acc[3][g]),
            );
            // SAFETY: sums[g] holds 16 floats.
            unsafe { _mm512_storeu_ps(sums[g].as_mut_ptr(), s) };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::tensor::{matmul_reference, spmm_t, ColumnBlocks, Mat, MatMut};

    /// `rows x cols` with about `density` of the entries non-zero.
    pub(crate) fn sparse_dense(rows: usize, cols: usize, density: f64, seed: u64) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let h = crate::nn::dropout::mix64(seed ^ i as u64);
                if (h >> 11) as f64 / (1u64 << 53) as f64 <= density {
                    (h % 1000) as f32 / 500.0 - 1.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    pub(crate) fn assert_close(fast: &[f32], slow: &[f32], what: &str) {
        assert_eq!(fast.len(), slow.len());
        let worst = fast
            .iter()
            .zip(slow)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: worst relative difference {worst}");
    }

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
            let c = SparseRows::compress_if_sparse(&dense, cols);
            assert_eq!(
                c.map(|c| c.view().to_dense()),
                sparse_enough.then(|| dense.clone())
            );
        }
    }

    #[test]
    fn spmm_matches_dense_reference() {
        // Widths below, at and above a tile; batch 1; odd sizes; all-zero rows.
        for (m, k, n, density) in [
            (1, 784, 192, 0.19),
            (7, 13, 5, 0.5),
            (130, 29, 64, 0.3),
            (257, 100, 131, 0.1),
            (40, 50, 192, 0.0),
        ] {
            let x = sparse_dense(m, k, density, 3);
            let b = sparse_dense(k, n, 1.0, 4);
            let sx = SparseRows::from_dense(&x, k);
            for accumulate in [false, true] {
                let mut fast = sparse_dense(m, n, 1.0, 5);
                let mut slow = fast.clone();
                let mut panels = Panels::default();
                panels.pack(&b, k, n, n);
                spmm(&mut fast, sx.view(), panels.view(), accumulate);
                matmul_reference(
                    MatMut::new(&mut slow, m, n),
                    Mat::new(&x, m, k),
                    Mat::new(&b, k, n),
                    accumulate,
                );
                assert_close(&fast, &slow, &format!("{m}x{k}·{k}x{n} acc={accumulate}"));
            }
        }
    }

    #[test]
    fn column_split_product_is_the_row_split_one() {
        // One part, several, a last part of one partial tile; batch 1; reused parts.
        let mut parts = ColumnParts::default();
        for (m, k, n) in [
            (1, 784, 192),
            (128, 784, 192),
            (7, 13, 5),
            (300, 29, 131),
            (9, 50, 33),
        ] {
            let x = SparseRows::from_dense(&sparse_dense(m, k, 0.2, 11), k);
            let w = sparse_dense(n, k, 1.0, 12);
            let mut panels = Panels::default();
            panels.pack_transposed(&w, k, n);
            let mut by_rows = vec![0.0; m * n];
            spmm(&mut by_rows, x.view(), panels.view(), false);
            let mut by_columns = vec![f32::NAN; m * n];
            spmm_by_columns(&mut by_columns, x.view(), panels.view(), &mut parts);
            assert_eq!(by_columns, by_rows, "{m}x{k}·{k}x{n}");
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (m, k, n) = (3000, 784, 192);
        let x = sparse_dense(m, k, 0.19, 8);
        let w = sparse_dense(n, k, 1.0, 9);
        let sx = SparseRows::from_dense(&x, k);
        let xt = ColumnBlocks::new(sx.view(), 512);
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut z = vec![0.0; m * n];
                let mut panels = Panels::default();
                panels.pack_transposed(&w, k, n);
                spmm(&mut z, sx.view(), panels.view(), false);
                let mut g = vec![0.0; k * n];
                spmm_t(&mut g, &xt, &z, n, false);
                (z, g)
            })
        };
        assert_eq!(run(1), run(3));
    }
}
