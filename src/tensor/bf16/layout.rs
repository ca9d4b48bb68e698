//! The operands of the bfloat16 products, laid out as the tiles read them,
//! and the rounding of float32 values to bfloat16.

use crate::tensor::kernels::per_isa;
use crate::tensor::sparse::SparseView;
use rayon::prelude::*;
use std::ops::Range;

/// Rows and columns of a tile of A (16 rows of 32 bfloat16, 64 bytes each),
/// and the columns of a panel of B and of the result.
pub const TILE_ROWS: usize = 16;
pub const TILE_K: usize = 32;
pub const PANEL: usize = 16;

/// Tiles of k each unit sums from zero before adding the chunk's sums to
/// the result: a long sum (50,000 images in a weight gradient) then rounds
/// as a sum of 512-term sums, not as one running float32 total, which
/// keeps the seed preset's trajectory as close to float64 as float32
/// multiply-adds keep it (docs/TESTING.md).
pub const CHUNK: usize = 16;

/// `x` to bfloat16, rounded to nearest (ties to even); NaN stays NaN.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// The float32 a bfloat16 stands for.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// 64 bytes of bfloat16: the buffers below are made of them, so every
/// tile and panel row starts on a cache line.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// A buffer of bfloat16 on cache lines.
#[derive(Clone, Default)]
struct Lines(Vec<Line>);

impl Lines {
    /// `len` values (rounded up to whole lines), all zero.
    fn zeroed(&mut self, len: usize) {
        self.0.clear();
        self.sized(len);
    }

    /// `len` values (rounded up to whole lines), those kept from before
    /// unchanged: for a caller that writes every one.
    fn sized(&mut self, len: usize) {
        self.0.resize(len.div_ceil(32), Line::default());
    }

    fn values(&self) -> &[u16] {
        let lines = &self.0[..];
        // SAFETY: `Line` is 32 `u16`s with no padding (repr(C), 64 bytes),
        // so the lines are that many `u16`s in a row.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast(), lines.len() * 32) }
    }

    fn values_mut(&mut self) -> &mut [u16] {
        let lines = &mut self.0[..];
        // SAFETY: as in `values`, through a unique borrow.
        unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast(), lines.len() * 32) }
    }
}

/// A `[rows, k]` matrix of bfloat16 in 16x32 tiles (the A operand): rows
/// padded with zeros to a multiple of 16, `k` to a multiple of 32; tile
/// `(i, j)`, rows `16i..` and columns `32j..`, is 512 values row by row,
/// at `(i * k_tiles + j) * 512`. Which tiles hold anything but zeros is
/// kept, so the units can skip the others (the borders of MNIST's images).
#[derive(Clone, Default)]
pub struct Tiled {
    rows: usize,
    k: usize,
    data: Lines,
    nonzero: Vec<bool>,
}

/// A borrowed [`Tiled`].
#[derive(Clone, Copy)]
pub struct TiledView<'a> {
    rows: usize,
    k: usize,
    data: &'a [u16],
    nonzero: &'a [bool],
}

impl std::fmt::Debug for Tiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tiled {{ rows: {}, k: {} }}", self.rows, self.k)
    }
}

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pairs {{ k: {}, n: {} }}", self.k, self.n)
    }
}

impl std::fmt::Debug for TiledView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TiledView {{ rows: {}, k: {} }}", self.rows, self.k)
    }
}

impl std::fmt::Debug for PairsView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PairsView {{ k: {}, n: {} }}", self.k, self.n)
    }
}

impl Tiled {
    /// Sizes the matrix for `rows x k`, all zero.
    fn reset(&mut self, rows: usize, k: usize) {
        self.rows = rows;
        self.k = k;
        let (rt, kt) = (rows.div_ceil(TILE_ROWS), k.div_ceil(TILE_K));
        self.data.zeroed(rt * kt * TILE_ROWS * TILE_K);
        self.nonzero.clear();
        self.nonzero.resize(rt * kt, false);
    }

    /// The buffer and the tiles' marks, to write values with [`set`].
    fn parts(&mut self) -> (&mut [u16], &mut [bool], usize) {
        let kt = self.k.div_ceil(TILE_K);
        (self.data.values_mut(), &mut self.nonzero, kt)
    }

    /// Dense rows `[rows, cols]`, each value rounded to bfloat16.
    pub fn from_rows(dense: &[f32], rows: usize, cols: usize) -> Tiled {
        assert_eq!(dense.len(), rows * cols, "not {rows} rows of {cols}");
        let mut t = Tiled::default();
        t.reset(rows, cols);
        let (data, nonzero, kt) = t.parts();
        for (r, row) in dense.chunks_exact(cols.max(1)).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                set((data, nonzero, kt), r, c, to_bf16(v));
            }
        }
        t
    }

    /// Compressed rows, each value rounded to bfloat16 (refilled in place:
    /// the buffers are kept).
    pub fn fill_from_sparse(&mut self, m: SparseView<'_>) {
        self.fill_sparse(m, false)
    }

    /// The transpose of compressed rows (`[cols, rows]`: A for the weight
    /// gradient `Xᵀ·dZ`, the samples along k), rounded to bfloat16.
    pub fn fill_transposed_from_sparse(&mut self, m: SparseView<'_>) {
        self.fill_sparse(m, true)
    }

    /// Compressed rows, or (`transposed`) their transpose, in bfloat16.
    fn fill_sparse(&mut self, m: SparseView<'_>, transposed: bool) {
        match transposed {
            false => self.reset(m.rows(), m.cols()),
            true => self.reset(m.cols(), m.rows()),
        }
        let (data, nonzero, kt) = self.parts();
        for r in 0..m.rows() {
            let (idx, val) = m.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                let (row, col) = match transposed {
                    false => (r, c as usize),
                    true => (c as usize, r),
                };
                set((data, nonzero, kt), row, col, to_bf16(v));
            }
        }
    }

    pub fn view(&self) -> TiledView<'_> {
        TiledView {
            rows: self.rows,
            k: self.k,
            data: self.data.values(),
            nonzero: &self.nonzero,
        }
    }
}

/// Writes `v` at `(r, c)` of a [`Tiled`]'s buffer (`kt` tiles along k),
/// marking its tile where `v` is not zero.
#[inline(always)]
fn set((data, nonzero, kt): (&mut [u16], &mut [bool], usize), r: usize, c: usize, v: u16) {
    let tile = (r / TILE_ROWS) * kt + c / TILE_K;
    data[tile * TILE_ROWS * TILE_K + (r % TILE_ROWS) * TILE_K + c % TILE_K] = v;
    nonzero[tile] |= v & 0x7fff != 0;
}

impl<'a> TiledView<'a> {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Tiles along k.
    pub fn k_tiles(&self) -> usize {
        self.k.div_ceil(TILE_K)
    }

    /// Rows `range` (starting on a tile: a multiple of 16).
    pub fn slice_rows(&self, range: Range<usize>) -> TiledView<'a> {
        assert!(
            range.start.is_multiple_of(TILE_ROWS),
            "rows cut between tiles"
        );
        assert!(
            range.start <= range.end && range.end <= self.rows,
            "rows {range:?} of {}",
            self.rows
        );
        let kt = self.k_tiles();
        let (t0, t1) = (
            range.start / TILE_ROWS * kt,
            range.end.div_ceil(TILE_ROWS) * kt,
        );
        TiledView {
            rows: range.len(),
            k: self.k,
            data: &self.data[t0 * 512..t1 * 512],
            nonzero: &self.nonzero[t0..t1],
        }
    }

    /// Tile `(i, j)`: 512 values, and whether any is not zero.
    #[inline(always)]
    pub fn tile(&self, i: usize, j: usize) -> (&'a [u16], bool) {
        let t = i * self.k_tiles() + j;
        (&self.data[t * 512..(t + 1) * 512], self.nonzero[t])
    }

    /// Value `(r, c)`, as a float32.
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let (tile, _) = self.tile(r / TILE_ROWS, c / TILE_K);
        from_bf16(tile[(r % TILE_ROWS) * TILE_K + c % TILE_K])
    }
}

/// A `[k, n]` matrix of bfloat16 in pairs of k (the B operand, the layout
/// the tiles read): `k` padded with zeros to a multiple of 32, `n` to a
/// multiple of 16; column panel `p` (columns `16p..`) holds, for each pair
/// of rows `(2j, 2j + 1)`, its 16 columns' two values side by side: value
/// `(r, c)` at `p * k * 16 + (r / 2) * 32 + (c % 16) * 2 + r % 2`.
#[derive(Clone, Default)]
pub struct Pairs {
    k: usize,
    n: usize,
    data: Lines,
}

/// A borrowed [`Pairs`].
#[derive(Clone, Copy)]
pub struct PairsView<'a> {
    k: usize,
    n: usize,
    data: &'a [u16],
}

/// Where the values of B come from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// `[k, n]` row-major.
    Rows(&'a [f32]),
    /// `[n, k]` row-major: B is its transpose.
    Transposed(&'a [f32]),
    /// `[k, n]` in column panels of 16 (value `(r, c)` at
    /// `(c / 16) * k * 16 + r * 16 + c % 16`): the first layer's weight
    /// stored in panels.
    Panels(&'a [f32]),
}

/// Pairs of k per job of [`Pairs::fill`]: 32 KB of a row-major source a
/// job.
const FILL_PAIRS: usize = 64;

impl Source<'_> {
    /// Row `r`'s 16 values of panel `p` of B `[k, n]`, zero past its edges.
    #[inline(always)]
    fn row16(&self, r: usize, p: usize, k: usize, n: usize) -> [f32; PANEL] {
        let mut v = [0.0; PANEL];
        let c0 = p * PANEL;
        if r >= k {
            return v;
        }
        let cols = PANEL.min(n - c0);
        match *self {
            Source::Rows(b) => v[..cols].copy_from_slice(&b[r * n + c0..][..cols]),
            Source::Panels(b) => v.copy_from_slice(&b[(p * k + r) * PANEL..][..PANEL]),
            Source::Transposed(b) => {
                for (c, v) in v[..cols].iter_mut().enumerate() {
                    *v = b[(c0 + c) * k + r];
                }
            }
        }
        v
    }
}

per_isa! {
    /// Pairs of k `pairs` of B (`[k, n]` from `src`) into `bufs`, one block
    /// of each panel: per pair and panel, the two rows' 16 values
    /// interleaved, rounded to bfloat16.
    fn fill_block(
        bufs: &mut [&mut [u16]],
        src: Source<'_>,
        kn: (usize, usize),
        pairs: Range<usize>,
    ) {
        let (k, n) = kn;
        for j in pairs.clone() {
            let at = (j - pairs.start) * 32;
            for (p, buf) in bufs.iter_mut().enumerate() {
                let rows = [2 * j, 2 * j + 1].map(|r| src.row16(r, p, k, n));
                let out: &mut [u16; 32] = (&mut buf[at..at + 32]).try_into().expect("32 values");
                for c in 0..PANEL {
                    for (h, row) in rows.iter().enumerate() {
                        out[2 * c + h] = to_bf16(row[c]);
                    }
                }
            }
        }
    }
}

impl Pairs {
    /// Fills it (buffers kept) with B `[k, n]` from `src`, rounded to
    /// bfloat16; blocks of pairs of k in parallel, each writing its range of
    /// every panel.
    pub fn fill(&mut self, src: Source<'_>, k: usize, n: usize) {
        let pairs = k.div_ceil(TILE_K) * TILE_K / 2;
        let panel = pairs * 2 * PANEL;
        let panels = n.div_ceil(PANEL);
        (self.k, self.n) = (k, n);
        if panel == 0 {
            return self.data.sized(0);
        }
        // Each job's share of every panel.
        let jobs = pairs.div_ceil(FILL_PAIRS);
        let mut shares: Vec<Vec<&mut [u16]>> =
            (0..jobs).map(|_| Vec::with_capacity(panels)).collect();
        // Every value is written below, padding included.
        self.data.sized(panels * panel);
        for p in self.data.values_mut().chunks_mut(panel) {
            for (share, block) in shares.iter_mut().zip(p.chunks_mut(FILL_PAIRS * 32)) {
                share.push(block);
            }
        }
        shares
            .into_par_iter()
            .enumerate()
            .for_each(|(job, mut bufs)| {
                let j0 = job * FILL_PAIRS;
                fill_block(&mut bufs, src, (k, n), j0..pairs.min(j0 + FILL_PAIRS));
            });
    }

    pub fn view(&self) -> PairsView<'_> {
        PairsView {
            k: self.k,
            n: self.n,
            data: self.data.values(),
        }
    }
}

impl<'a> PairsView<'a> {
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// The 16 pairs of rows `(32j..32j + 32)` of panel `p`: 512 values.
    #[inline(always)]
    pub fn tile(&self, p: usize, j: usize) -> &'a [u16] {
        let kp = self.k.div_ceil(TILE_K) * TILE_K;
        let at = p * kp * PANEL + j * 512;
        &self.data[at..at + 512]
    }
}

/// Where a product's float32 result `[rows, n]` goes.
pub enum Out<'a> {
    /// Row-major, `stride` floats from one row to the next.
    Rows {
        data: &'a mut [f32],
        rows: usize,
        n: usize,
        stride: usize,
    },
    /// In column panels of 16, value `(r, c)` at
    /// `(c / 16) * rows * 16 + r * 16 + c % 16` (the first layer's weight
    /// gradient, stored as its weight).
    Panels {
        data: &'a mut [f32],
        rows: usize,
        n: usize,
    },
}

impl Out<'_> {
    /// Sets every value of the result to `v`.
    pub(super) fn fill(self, v: f32) {
        let (rows, n) = (self.rows(), self.n());
        match self {
            Out::Rows { data, stride, .. } => {
                for r in 0..rows {
                    data[r * stride..][..n].fill(v);
                }
            }
            Out::Panels { data, .. } => data[..rows * n].fill(v),
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Out::Rows { rows, .. } | Out::Panels { rows, .. } => *rows,
        }
    }

    pub fn n(&self) -> usize {
        match self {
            Out::Rows { n, .. } | Out::Panels { n, .. } => *n,
        }
    }
}

/// One thread's share of a product: its rows of A and panels of B, and its
/// part of the result.
pub struct Part<'a> {
    pub rows: Range<usize>,
    pub panels: Range<usize>,
    share: Share<'a>,
}

/// A part of the result, as the result lays it out.
enum Share<'a> {
    /// The part's rows, row-major, `stride` floats apart, `n` columns.
    Rows {
        data: &'a mut [f32],
        n: usize,
        stride: usize,
    },
    /// Each of the part's panels' rows, 16 floats a row.
    Panels(Vec<&'a mut [f32]>),
}

impl Part<'_> {
    /// The result from row `r` and panel `p` (of the whole product, inside
    /// the part) on: the values, floats from one row to the next, and the
    /// panel's columns that the result has.
    pub fn at(&mut self, r: usize, p: usize) -> (&mut [f32], usize, usize) {
        let (r, q) = (r - self.rows.start, p - self.panels.start);
        match &mut self.share {
            Share::Rows { data, n, stride } => {
                let c = p * PANEL;
                (&mut data[r * *stride + c..], *stride, PANEL.min(*n - c))
            }
            Share::Panels(panels) => (&mut panels[q][r * PANEL..], PANEL, PANEL),
        }
    }
}

/// Runs `f` on shares of the result, in parallel on up to `threads`
/// threads, each share a block of rows of A and every panel: each thread reads only its rows of A. A result in panels
/// is cut into as many shares as threads (each share reads all of B, the
/// larger operand of a weight gradient), a row-major one into about four a
/// thread. Shares are disjoint parts of the result; each is summed in full
/// by one call, so the thread count changes nothing.
pub(super) fn split_work(out: Out<'_>, threads: usize, f: impl Fn(Part<'_>) + Sync + Send) {
    let threads = threads.max(1);
    let (rows, n) = (out.rows(), out.n());
    let panels = n.div_ceil(PANEL);
    // Row-major shares in whole pairs of row tiles, as the units go; in
    // panels, a share a thread in whole tiles, for an even load.
    let (shares, grain) = match out {
        Out::Rows { .. } => (threads * 4, 2 * TILE_ROWS),
        Out::Panels { .. } => (threads, TILE_ROWS),
    };
    let per = rows.div_ceil(shares).next_multiple_of(grain).max(grain);
    let part = |i: usize, share| Part {
        rows: i * per..rows.min((i + 1) * per),
        panels: 0..panels,
        share,
    };
    match out {
        Out::Rows {
            data, n, stride, ..
        } => data
            .par_chunks_mut(per * stride)
            .enumerate()
            .for_each(|(i, data)| f(part(i, Share::Rows { data, n, stride }))),
        Out::Panels { data, .. } => {
            let mut cut: Vec<Vec<&mut [f32]>> = Vec::new();
            for panel in data.chunks_mut(rows * PANEL) {
                for (i, rows) in panel.chunks_mut(per * PANEL).enumerate() {
                    match cut.get_mut(i) {
                        Some(share) => share.push(rows),
                        None => cut.push(vec![rows]),
                    }
                }
            }
            cut.into_par_iter()
                .enumerate()
                .for_each(|(i, panels)| f(part(i, Share::Panels(panels))));
        }
    }
}
