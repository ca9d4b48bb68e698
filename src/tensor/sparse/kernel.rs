//! The product of sparse rows with a dense matrix in column panels: one core
//! for compressed rows and for rows merged in pairs, compiled for AVX-512
//! where the CPU has it and as portable code (vectorised for AVX2) where not,
//! and the ways threads share it (by rows, by columns, the transposed product
//! of a weight gradient).

use super::pairs::{ColumnBlocks, PairView};
use super::panels::{panels_len, PanelView, Panels, TILE};
use super::rows::SparseView;
use crate::tensor::kernels::{per_isa, Isa, Kernels};
use crate::tensor::par::{for_row_blocks, BLOCK_ROWS};
use crate::tensor::transpose::transpose;
use crate::tensor::Aligned;
use rayon::prelude::*;

/// Rows per chunk: their entries (about 150 per MNIST image) stay in L2
/// while every panel re-reads them.
const CHUNK_ROWS: usize = 64;

/// Panels per pass of the AVX-512 form: each entry's index and broadcast
/// value then feed three FMAs, and its twelve accumulators still fit in
/// registers (docs/PERFORMANCE.md, "Three panels per pass"). The portable form
/// takes one panel per pass, as the compiler would not keep more
/// accumulators in registers.
const GROUP: usize = 3;
// `product` dispatches groups of 1 to 3 panels.
const _: () = assert!(GROUP == 3);

/// Below this many rows, [`spmm_by_columns`] splits the output columns
/// among the threads (a minibatch); above it, the rows ([`spmm`]).
pub const COLUMN_SPLIT_ROWS: usize = 512;

/// A sparse operand as the kernel reads it: units of `H` rows that share one
/// list of columns (a compressed row, `H = 1`, or a pair of rows merged,
/// `H = 2`), each entry holding the `H` rows' values. Columns are below
/// [`Units::cols`], which the kernel relies on (it loads without checks).
trait Units<const H: usize>: Copy + Sync {
    /// Number of units.
    fn units(&self) -> usize;
    /// Number of columns.
    fn cols(&self) -> usize;
    /// Columns and values of unit `j`.
    fn unit(&self, j: usize) -> (&[u32], &[[f32; H]]);
}

impl Units<1> for SparseView<'_> {
    fn units(&self) -> usize {
        self.rows()
    }

    fn cols(&self) -> usize {
        SparseView::cols(self)
    }

    fn unit(&self, j: usize) -> (&[u32], &[[f32; 1]]) {
        let (idx, val) = self.row(j);
        (idx, val.as_chunks().0)
    }
}

impl Units<2> for PairView<'_> {
    fn units(&self) -> usize {
        self.pairs()
    }

    fn cols(&self) -> usize {
        PairView::cols(self)
    }

    fn unit(&self, j: usize) -> (&[u32], &[[f32; 2]]) {
        self.pair(j)
    }
}

/// The 16 lanes of one panel row: an AVX-512 register, or an array the
/// compiler vectorises. Both forms compute each lane with the same fused
/// multiply-adds in the same order, so they give the same bits.
trait Lanes: Copy {
    fn zero() -> Self;
    fn splat(v: f32) -> Self;
    /// The 16 floats at `p`.
    ///
    /// # Safety
    /// `p..p + 16` must be readable.
    unsafe fn load(p: *const f32) -> Self;
    /// `self · b + c`, rounded once.
    fn fma(self, b: Self, c: Self) -> Self;
    fn add(self, b: Self) -> Self;
    fn store(self, out: &mut [f32; TILE]);
}

impl Lanes for [f32; TILE] {
    #[inline(always)]
    fn zero() -> Self {
        [0.0; TILE]
    }

    #[inline(always)]
    fn splat(v: f32) -> Self {
        [v; TILE]
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller's promise.
        unsafe { p.cast::<[f32; TILE]>().read_unaligned() }
    }

    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        std::array::from_fn(|j| self[j].mul_add(b[j], c[j]))
    }

    #[inline(always)]
    fn add(self, b: Self) -> Self {
        std::array::from_fn(|j| self[j] + b[j])
    }

    #[inline(always)]
    fn store(self, out: &mut [f32; TILE]) {
        *out = self;
    }
}

// Used only inside `product_avx512`, which runs after the CPU was found to
// have AVX-512F: that is the SAFETY of each intrinsic below.
#[cfg(target_arch = "x86_64")]
impl Lanes for std::arch::x86_64::__m512 {
    #[inline(always)]
    fn zero() -> Self {
        // SAFETY: see the impl.
        unsafe { std::arch::x86_64::_mm512_setzero_ps() }
    }

    #[inline(always)]
    fn splat(v: f32) -> Self {
        // SAFETY: see the impl.
        unsafe { std::arch::x86_64::_mm512_set1_ps(v) }
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: see the impl; `p..p + 16` is readable (the caller's promise).
        unsafe { std::arch::x86_64::_mm512_loadu_ps(p) }
    }

    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        // SAFETY: see the impl.
        unsafe { std::arch::x86_64::_mm512_fmadd_ps(self, b, c) }
    }

    #[inline(always)]
    fn add(self, b: Self) -> Self {
        // SAFETY: see the impl.
        unsafe { std::arch::x86_64::_mm512_add_ps(self, b) }
    }

    #[inline(always)]
    fn store(self, out: &mut [f32; TILE]) {
        // SAFETY: see the impl; `out` holds 16 floats.
        unsafe { std::arch::x86_64::_mm512_storeu_ps(out.as_mut_ptr(), self) }
    }
}

/// How the core lays out its output (`a`'s rows x `b.cols()`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Layout {
    /// Row-major.
    Rows,
    /// Column panels, as [`Panels`] stores a matrix (padding columns are
    /// left as they are).
    Panels,
}

impl Layout {
    /// Floats the output of `rows x n` takes.
    fn len(self, rows: usize, n: usize) -> usize {
        match self {
            Layout::Rows => rows * n,
            Layout::Panels => panels_len(rows, n),
        }
    }

    /// Rows of an output of `len` floats, `n` wide.
    fn rows(self, len: usize, n: usize) -> usize {
        match self {
            Layout::Rows => len / n,
            Layout::Panels => len / (n.div_ceil(TILE) * TILE),
        }
    }

    /// Where row `r`'s columns `t·TILE..` start in an output of `rows x n`.
    fn at(self, r: usize, t: usize, rows: usize, n: usize) -> usize {
        match self {
            Layout::Rows => r * n + t * TILE,
            Layout::Panels => (t * rows + r) * TILE,
        }
    }
}

/// The core: `out[H·j + h, :] (+)= Σ_{(k, v) in unit j} v[h] · b[k, :]` for
/// every unit of `a`; `out` is `a`'s rows x `b.cols()`, laid out as
/// `layout` says. A chunk of units is multiplied by `group` panels at a time
/// (the chunk's entries stay in cache while the panels go by).
#[inline(always)]
fn product<L: Lanes, const H: usize, const U: usize>(
    out: &mut [f32],
    layout: Layout,
    a: impl Units<H>,
    b: PanelView<'_>,
    accumulate: bool,
    group: usize,
) {
    let n = b.cols();
    assert_eq!(b.rows(), a.cols(), "inner dimensions differ");
    if n == 0 {
        return;
    }
    let (panels, per_chunk) = (n.div_ceil(TILE), CHUNK_ROWS / H);
    let rows = layout.rows(out.len(), n);
    for c in (0..a.units()).step_by(per_chunk) {
        let mut t = 0;
        while t < panels {
            let g = (panels - t).min(group);
            for j in c..(c + per_chunk).min(a.units()) {
                let (idx, val) = a.unit(j);
                let to = Tiles {
                    layout,
                    rows,
                    n,
                    t,
                    first: H * j,
                    accumulate,
                };
                match g {
                    3 => unit_tiles::<L, H, 3, U>(out, to, idx, val, b),
                    2 => unit_tiles::<L, H, 2, U>(out, to, idx, val, b),
                    _ => unit_tiles::<L, H, 1, U>(out, to, idx, val, b),
                }
            }
            t += g;
        }
    }
}

/// Where [`unit_tiles`] writes: rows `first..first + H` (those below
/// `rows`) of an output of `rows x n` laid out as `layout` says, from panel
/// `t` on.
#[derive(Clone, Copy)]
struct Tiles {
    layout: Layout,
    rows: usize,
    n: usize,
    t: usize,
    first: usize,
    accumulate: bool,
}

/// One unit's sums against panels `t..t + G` of `b`, for each of its `H`
/// rows, written (or, when `accumulate`, added) into those rows of `out`
/// (padding columns past `n` dropped, and the sums of a missing second row
/// of a last pair). The entries go round `U` partial sums (a remainder
/// into the first), so consecutive FMAs do not wait on each other, and the
/// partial sums are then added pairwise, `(0 + 1) + (2 + 3)`.
#[inline(always)]
fn unit_tiles<L: Lanes, const H: usize, const G: usize, const U: usize>(
    out: &mut [f32],
    to: Tiles,
    idx: &[u32],
    val: &[[f32; H]],
    b: PanelView<'_>,
) {
    const { assert!(U == 1 || U == 2 || U == 4) };
    let t = to.t;
    let base: [*const f32; G] = std::array::from_fn(|g| b.panel(t + g).as_ptr());
    let rows = b.rows();
    let mut acc = [[[L::zero(); G]; H]; U];
    let mut add = |u: usize, k: u32, v: &[f32; H]| {
        debug_assert!((k as usize) < rows);
        let v: [L; H] = std::array::from_fn(|h| L::splat(v[h]));
        for g in 0..G {
            // SAFETY: k is below the operand's columns, which `product`
            // checked equal the panels' rows, so the 16 floats at k * TILE
            // lie in panel t + g.
            let s = unsafe { L::load(base[g].add(k as usize * TILE)) };
            for h in 0..H {
                acc[u][h][g] = v[h].fma(s, acc[u][h][g]);
            }
        }
    };
    let (ki, vi) = (idx.chunks_exact(U), val.chunks_exact(U));
    let (k_rest, v_rest) = (ki.remainder(), vi.remainder());
    for (ks, vs) in ki.zip(vi) {
        for u in 0..U {
            add(u, ks[u], &vs[u]);
        }
    }
    for (&k, v) in k_rest.iter().zip(v_rest) {
        add(0, k, v);
    }
    // Constant bounds, so the loops unroll and the partial sums stay in
    // registers.
    let mut sums = [[[0.0f32; TILE]; G]; H];
    for h in 0..H {
        for g in 0..G {
            let part = |u: usize| acc[u][h][g];
            let sum = match U {
                1 => part(0),
                2 => part(0).add(part(1)),
                _ => part(0).add(part(1)).add(part(2).add(part(3))),
            };
            sum.store(&mut sums[h][g]);
        }
    }
    let put = |d: &mut f32, s: f32| *d = if to.accumulate { *d + s } else { s };
    // The unit's rows: H, or one for a last pair of an odd count.
    for (r, sums) in (to.first..to.rows).zip(&sums) {
        for (g, sum) in sums.iter().enumerate() {
            let at = to.layout.at(r, t + g, to.rows, to.n);
            let w = TILE.min(to.n - (t + g) * TILE);
            match <&mut [f32; TILE]>::try_from(&mut out[at..at + w]) {
                // A whole tile: fixed-size, so one vector operation (a
                // variable-length copy became a call to memcpy).
                Ok(dst) => dst.iter_mut().zip(sum).for_each(|(d, &s)| put(d, s)),
                Err(_) => out[at..at + w]
                    .iter_mut()
                    .zip(sum)
                    .for_each(|(d, &s)| put(d, s)),
            }
        }
    }
}

/// [`product`] on one thread: the AVX-512 form where the kernel family's
/// instruction set is AVX-512, else `portable` (the portable form, compiled
/// for the family's instruction set).
fn on_one_thread<A: Units<H>, const H: usize, const U: usize>(
    out: &mut [f32],
    layout: Layout,
    a: A,
    b: PanelView<'_>,
    accumulate: bool,
    portable: fn(&mut [f32], Layout, A, PanelView<'_>, bool),
) {
    #[cfg(target_arch = "x86_64")]
    if Kernels::current().isa() == Isa::Avx512 {
        // SAFETY: the CPU has AVX-512F (the family is one it can run).
        return unsafe { product_avx512::<A, H, U>(out, layout, a, b, accumulate) };
    }
    portable(out, layout, a, b, accumulate)
}

/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product_avx512<A: Units<H>, const H: usize, const U: usize>(
    out: &mut [f32],
    layout: Layout,
    a: A,
    b: PanelView<'_>,
    accumulate: bool,
) {
    product::<std::arch::x86_64::__m512, H, U>(out, layout, a, b, accumulate, GROUP)
}

per_isa! {
    fn portable_rows(
        out: &mut [f32],
        layout: Layout,
        a: SparseView<'_>,
        b: PanelView<'_>,
        accumulate: bool,
    ) {
        product::<[f32; TILE], 1, 4>(out, layout, a, b, accumulate, 1)
    }
}

per_isa! {
    fn portable_pairs(
        out: &mut [f32],
        layout: Layout,
        a: PairView<'_>,
        b: PanelView<'_>,
        accumulate: bool,
    ) {
        product::<[f32; TILE], 2, 2>(out, layout, a, b, accumulate, 1)
    }
}

/// The core for compressed rows on one thread (four partial sums per row),
/// row-major.
fn spmm_rows(out: &mut [f32], a: SparseView<'_>, b: PanelView<'_>, accumulate: bool) {
    assert_eq!(out.len(), a.rows() * b.cols(), "output is not rows x n");
    on_one_thread::<_, 1, 4>(out, Layout::Rows, a, b, accumulate, portable_rows)
}

/// The core for rows merged in pairs on one thread (two partial sums per
/// row of a pair), laid out as `layout` says.
fn spmm_pairs(
    out: &mut [f32],
    layout: Layout,
    a: PairView<'_>,
    b: PanelView<'_>,
    accumulate: bool,
) {
    let (rows, n) = (a.rows(), b.cols());
    assert_eq!(out.len(), layout.len(rows, n), "output is not rows x n");
    on_one_thread::<_, 2, 2>(out, layout, a, b, accumulate, portable_pairs)
}

/// `out[r, :] (+)= Σ_{(k, v) in row r of a} v · b[k, :]`: `out` is
/// `a.rows() x b.cols()` row-major. Blocks of rows are split among threads
/// (one block runs on the calling thread), and each row's sum has a fixed
/// order, so the result does not depend on the thread count.
pub fn spmm(out: &mut [f32], a: SparseView<'_>, b: PanelView<'_>, accumulate: bool) {
    let n = b.cols();
    assert_eq!(out.len(), a.rows() * n, "output is not rows x n");
    assert_eq!(b.rows(), a.cols(), "inner dimensions differ");
    for_row_blocks(out, n, |first, block| {
        let rows = a.slice(first..first + block.len() / n);
        spmm_rows(block, rows, b, accumulate);
    });
}

/// `out = a · b` (`a.rows() x b.cols()`, row-major) for rows merged in pairs:
/// pairs are split among threads, and each row's sum has a fixed order, so
/// the result does not depend on the thread count. Rows come out in `a`'s
/// (paired) order.
pub fn spmm_paired(out: &mut [f32], a: PairView<'_>, b: PanelView<'_>) {
    let n = b.cols();
    assert_eq!(out.len(), a.rows() * n, "output is not rows x n");
    // Blocks of an even number of rows start on a pair.
    const _: () = assert!(BLOCK_ROWS.is_multiple_of(2));
    for_row_blocks(out, n, |first, block| {
        let rows = a.slice(first..first + block.len() / n);
        spmm_pairs(block, Layout::Rows, rows, b, false);
    });
}

/// The threads' columns of the product in [`spmm_by_columns`] (kept, so
/// steps do not allocate).
#[derive(Clone, Debug, Default)]
pub struct ColumnParts {
    parts: Vec<Aligned>,
}

/// How many of `n` output columns each thread takes when threads split them
/// ([`spmm_by_columns`], [`spmm_t`]): whole groups of panels where possible.
fn columns_per_thread(n: usize) -> usize {
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

thread_local! {
    /// Each worker's packed columns of a block of `D` and its rows of the
    /// product before they are transposed, in [`spmm_t`] (kept, so steps do
    /// not allocate).
    static SPMM_T_SCRATCH: std::cell::RefCell<(Panels, Vec<f32>)> = Default::default();
}

/// `out = (Xᵀ·D)ᵀ = Dᵀ·X` (a layer's `[out, in]` weight gradient), `n x m`
/// row-major, or, with `panels`, `Xᵀ·D` (`m x n`) in [`Panels`] layout, as a
/// first-layer weight stored in panels is; for `X` given as [`ColumnBlocks`]
/// (`m` columns) and `D` row-major `rows x n`. Threads split `D`'s columns
/// (`out`'s rows, or its panels): each packs only its columns of each block
/// of `D`, right before multiplying them (so they are still in its cache),
/// and sums the blocks in order: straight into its panels of `out`, or into
/// its own `m x w` buffer, then transposed into its rows of `out`. Each
/// sum's order is fixed by the kernel, whatever the split.
pub fn spmm_t(out: &mut [f32], xt: &ColumnBlocks, d: &[f32], n: usize, panels: bool) {
    let Some(first) = xt.blocks().first() else {
        out.fill(0.0);
        return;
    };
    let m = first.rows();
    let len = if panels { panels_len(m, n) } else { m * n };
    assert_eq!(out.len(), len, "output is not n x cols");
    if n == 0 || m == 0 {
        return;
    }
    let per_task = columns_per_thread(n);
    let chunk = if panels {
        panels_len(m, per_task)
    } else {
        per_task * m
    };
    out.par_chunks_mut(chunk).enumerate().for_each(|(t, part)| {
        let c0 = t * per_task;
        let w = per_task.min(n - c0);
        SPMM_T_SCRATCH.with_borrow_mut(|(d_panels, acc)| {
            // Panels are summed in place; rows through `acc`, transposed after.
            let (sums, layout) = match panels {
                true => (&mut *part, Layout::Panels),
                false => {
                    acc.resize(m * w, 0.0);
                    (&mut acc[..], Layout::Rows)
                }
            };
            for (b, block) in xt.blocks().iter().enumerate() {
                let first = b * xt.block_rows;
                d_panels.pack(&d[first * n + c0..], block.cols(), w, n);
                spmm_pairs(sums, layout, block.view(), d_panels.view(), b > 0);
            }
            if !panels {
                transpose(part, m, acc, w, m, w);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::assert_close;
    use crate::tensor::sparse::tests::sparse_dense;
    use crate::tensor::sparse::{pair_order, unpack_transposed, PairRows, SparseRows};
    use crate::tensor::{matmul_reference, Mat, MatMut};

    /// The fast product against the reference triple loop.
    fn close(fast: &[f32], slow: &[f32], what: &str) {
        assert_close(what, fast, slow, 1.0, 1e-5);
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
                close(&fast, &slow, &format!("{m}x{k}·{k}x{n} acc={accumulate}"));
            }
        }
    }

    /// The portable form gives the AVX-512 form's bits (on a CPU without
    /// AVX-512 both calls run the portable form), for single rows and pairs,
    /// odd rows (a last pair of one), odd entry counts, widths below, at and
    /// above a tile and across groups, and all-zero input; and both match
    /// the reference.
    #[test]
    fn both_forms_of_the_core_give_the_same_bits() {
        for (rows, k, n, density) in [
            (784, 128, 96, 0.19),
            (9, 5, 5, 0.5),
            (30, 65, 131, 0.3),
            (1, 3, 16, 0.9),
            (12, 7, 48, 0.0),
        ] {
            let x = sparse_dense(k, rows, density, 3);
            let xt = SparseRows::from_dense(&x, rows);
            let mut pairs = PairRows::default();
            pairs.transpose_from(xt.view(), &mut Vec::new(), 1);
            let d = sparse_dense(k, n, 1.0, 4);
            let mut panels = Panels::default();
            panels.pack(&d, k, n, n);
            let mut dense_xt = vec![0.0; rows * k];
            transpose(&mut dense_xt, k, &x, rows, k, rows);
            let rows_of_xt = SparseRows::from_dense(&dense_xt, k);
            for accumulate in [false, true] {
                let start = sparse_dense(rows, n, 1.0, 5);
                let mut slow = start.clone();
                matmul_reference(
                    MatMut::new(&mut slow, rows, n),
                    Mat::new(&x, k, rows).t(),
                    Mat::new(&d, k, n),
                    accumulate,
                );
                let what = format!("{rows}x{k}·{k}x{n} acc={accumulate}");
                let mut portable = start.clone();
                portable_pairs(
                    &mut portable,
                    Layout::Rows,
                    pairs.view(),
                    panels.view(),
                    accumulate,
                );
                close(&portable, &slow, &format!("pairs {what}"));
                let mut fast = start.clone();
                spmm_pairs(
                    &mut fast,
                    Layout::Rows,
                    pairs.view(),
                    panels.view(),
                    accumulate,
                );
                assert_eq!(fast, portable, "pairs {what}: the forms differ");
                // In panels: the same bits in each form, padding lanes untouched.
                let at = |r: usize, c: usize| (c / TILE * rows + r) * TILE + c % TILE;
                let mut in_panels = vec![f32::NAN; panels_len(rows, n)];
                let mut want = in_panels.clone();
                for (r, c) in (0..rows).flat_map(|r| (0..n).map(move |c| (r, c))) {
                    in_panels[at(r, c)] = start[r * n + c];
                    want[at(r, c)] = fast[r * n + c];
                }
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                let mut portable_p = in_panels.clone();
                let (p, l) = (pairs.view(), Layout::Panels);
                portable_pairs(&mut portable_p, l, p, panels.view(), accumulate);
                assert_eq!(
                    bits(&portable_p),
                    bits(&want),
                    "pairs {what}: portable, panels"
                );
                spmm_pairs(&mut in_panels, l, p, panels.view(), accumulate);
                assert_eq!(bits(&in_panels), bits(&want), "pairs {what}: panels");
                let mut portable = start.clone();
                portable_rows(
                    &mut portable,
                    Layout::Rows,
                    rows_of_xt.view(),
                    panels.view(),
                    accumulate,
                );
                close(&portable, &slow, &format!("rows {what}"));
                let mut fast = start.clone();
                spmm_rows(&mut fast, rows_of_xt.view(), panels.view(), accumulate);
                assert_eq!(fast, portable, "rows {what}: the forms differ");
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
                let mut in_panels = vec![0.0; panels_len(k, n)];
                spmm_t(&mut in_panels, &xt, &z, n, true);
                (z, g, in_panels)
            })
        };
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn paired_product_matches_dense_reference_on_any_thread_count() {
        for (m, k, n) in [(1000, 784, 192), (7, 13, 5), (1, 50, 33), (130, 29, 131)] {
            let x = SparseRows::from_dense(&sparse_dense(m, k, 0.2, 22), k);
            let paired = PairRows::from_rows(x.view(), &pair_order(x.view()));
            let dense = paired.view().to_dense();
            let w = sparse_dense(k, n, 1.0, 23);
            let mut panels = Panels::default();
            panels.pack(&w, k, n, n);
            let mut slow = vec![0.0; m * n];
            matmul_reference(
                MatMut::new(&mut slow, m, n),
                Mat::new(&dense, m, k),
                Mat::new(&w, k, n),
                false,
            );
            let run = |threads| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                let mut fast = vec![f32::NAN; m * n];
                pool.install(|| spmm_paired(&mut fast, paired.view(), panels.view()));
                fast
            };
            let fast = run(2);
            close(&fast, &slow, &format!("{m}x{k}·{k}x{n}"));
            assert_eq!(run(1), fast, "{m}x{k}·{k}x{n}: one thread differs");
            assert_eq!(run(3), fast, "{m}x{k}·{k}x{n}: three threads differ");
        }
    }

    #[test]
    fn transposed_product_matches_dense_reference() {
        for (m, k, n, block_rows) in [
            (1, 784, 192, 512),
            (1000, 784, 192, 256),
            (37, 11, 70, 5),
            (12, 7, 3, 100),
        ] {
            let x = sparse_dense(m, k, 0.2, 6);
            let d = sparse_dense(m, n, 1.0, 7);
            let sx = SparseRows::from_dense(&x, k);
            let parallel = ColumnBlocks::new(sx.view(), block_rows);
            let mut reused = ColumnBlocks::default();
            reused.fill(SparseRows::from_dense(&x[..k], k).view(), 3);
            reused.fill(sx.view(), block_rows);
            let mut slow = vec![0.0; n * k];
            matmul_reference(
                MatMut::new(&mut slow, n, k),
                Mat::new(&d, m, n).t(),
                Mat::new(&x, m, k),
                false,
            );
            for xt in [&parallel, &reused] {
                let what = format!("{m}x{k} blocks of {block_rows}");
                let mut fast = vec![f32::NAN; n * k];
                spmm_t(&mut fast, xt, &d, n, false);
                close(&fast, &slow, &what);
                // In panels: the same sums, laid out as a first-layer weight in panels.
                let mut in_panels = vec![f32::NAN; panels_len(k, n)];
                spmm_t(&mut in_panels, xt, &d, n, true);
                let mut unpacked = vec![f32::NAN; n * k];
                unpack_transposed(&mut unpacked, &in_panels, k, n);
                assert_eq!(unpacked, fast, "{what}: in panels");
                // Padding lanes of a last partial panel are left as they were.
                let mut padding = in_panels.iter().enumerate().filter(|(i, _)| {
                    let (panel, lane) = (i / (k * TILE), i % TILE);
                    panel * TILE + lane >= n
                });
                assert!(padding.clone().count() == panels_len(k, n) - n * k);
                assert!(padding.all(|(_, v)| v.is_nan()), "{what}: padding written");
            }
        }
    }
}
