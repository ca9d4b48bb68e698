//! Row-parallel loops whose results do not depend on the thread count.
//!
//! Work is cut into fixed blocks of rows and per-block results come back in
//! block order, so a reduction over them gives bit-identical sums on 1 or 16
//! threads.

use rayon::prelude::*;
use std::ops::Range;

/// Rows per block: big enough to amortise scheduling, small enough to balance.
pub const BLOCK_ROWS: usize = 256;

/// Runs `f(first_row, block)` over blocks of `width`-wide rows in parallel.
pub fn for_row_blocks<F>(data: &mut [f32], width: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync + Send,
{
    map_row_blocks_mut(data, width, f);
}

/// Like [`for_row_blocks`], collecting each block's result in block order.
pub fn map_row_blocks_mut<R, F>(data: &mut [f32], width: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(usize, &mut [f32]) -> R + Sync + Send,
{
    if width == 0 {
        return Vec::new();
    }
    data.par_chunks_mut(BLOCK_ROWS * width)
        .enumerate()
        .map(|(i, block)| f(i * BLOCK_ROWS, block))
        .collect()
}

/// Read-only [`map_row_blocks_mut`].
pub fn map_row_blocks<R, F>(data: &[f32], width: usize, f: F) -> Vec<R>
where
    R: Send,
    F: Fn(usize, &[f32]) -> R + Sync + Send,
{
    if width == 0 {
        return Vec::new();
    }
    data.par_chunks(BLOCK_ROWS * width)
        .enumerate()
        .map(|(i, block)| f(i * BLOCK_ROWS, block))
        .collect()
}

/// `out[i] = Σ_b partials[b * out.len() + i]`, each block's partial sums
/// added in block order (in f64), so the result does not depend on which
/// thread computed which block.
pub fn sum_blocks(out: &mut [f32], partials: &[f32]) {
    let n = out.len();
    if n == 0 {
        return;
    }
    assert_eq!(partials.len() % n, 0, "partials are not whole blocks");
    const CHUNK: usize = 1024;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, out)| {
        let acc = &mut [0.0f64; CHUNK][..out.len()];
        for block in partials.chunks_exact(n) {
            let block = &block[c * CHUNK..c * CHUNK + out.len()];
            acc.iter_mut().zip(block).for_each(|(a, &p)| *a += p as f64);
        }
        out.iter_mut().zip(acc).for_each(|(o, a)| *o = *a as f32);
    });
}

/// One block of a pass over rows: its rows, the threads its products may
/// use, and its rows of each buffer the pass writes.
#[derive(Debug)]
pub struct RowBlock<'a> {
    pub rows: Range<usize>,
    pub threads: usize,
    /// The block's rows of each buffer, in the order given to [`RowBlocks::new`].
    pub bufs: Vec<&'a mut [f32]>,
}

/// A pass over `n` rows carried through several row-major buffers (every
/// layer's activations, say), cut into blocks: up to `few` rows go as one
/// block whose products use every thread; more go a block of [`BLOCK_ROWS`]
/// at a time, each on one thread while its rows are still in cache. Each
/// block gets its own rows of every buffer, so blocks run in parallel with
/// no sharing.
#[derive(Debug)]
pub struct RowBlocks<'a> {
    blocks: Vec<RowBlock<'a>>,
}

impl<'a> RowBlocks<'a> {
    /// Cuts `bufs` (each a buffer and its row width; a width of 0 gives
    /// every block an empty slice) for a pass over `n` rows on `threads`
    /// threads.
    pub fn new(
        n: usize,
        few: usize,
        threads: usize,
        bufs: Vec<(&'a mut [f32], usize)>,
    ) -> RowBlocks<'a> {
        let (count, rows_per, threads) = match n <= few {
            true => (1, n.max(1), threads),
            false => (n.div_ceil(BLOCK_ROWS), BLOCK_ROWS, 1),
        };
        let mut blocks: Vec<RowBlock<'a>> = (0..count)
            .map(|b| RowBlock {
                rows: b * rows_per..n.min((b + 1) * rows_per),
                threads,
                bufs: Vec::with_capacity(bufs.len()),
            })
            .collect();
        for (buf, width) in bufs {
            assert!(buf.len() >= n * width, "a buffer of fewer than {n} rows");
            let mut rest = &mut buf[..n * width];
            for b in &mut blocks {
                let (mine, after) = std::mem::take(&mut rest).split_at_mut(b.rows.len() * width);
                b.bufs.push(mine);
                rest = after;
            }
        }
        RowBlocks { blocks }
    }

    /// Runs `f` on every block, in parallel.
    pub fn for_each(self, f: impl Fn(RowBlock<'a>) + Sync + Send) {
        match self.blocks.len() {
            1 => self.blocks.into_iter().for_each(f),
            _ => self.blocks.into_par_iter().for_each(f),
        }
    }

    /// Runs `f` on every block, in parallel, each adding its share of a sum
    /// into a buffer shaped like `out`; the shares are added in block order
    /// ([`sum_blocks`]), so the thread count does not matter. One block
    /// writes into `out` itself. `partials` is scratch, kept between passes.
    pub fn sum(
        self,
        out: &mut [f32],
        partials: &mut Vec<f32>,
        f: impl Fn(RowBlock<'a>, &mut [f32]) + Sync + Send,
    ) {
        if self.blocks.len() == 1 {
            let block = self.blocks.into_iter().next().expect("one block");
            return f(block, out);
        }
        let per_block = out.len();
        if per_block == 0 {
            return self.blocks.into_par_iter().for_each(|b| f(b, &mut []));
        }
        partials.resize(self.blocks.len() * per_block, 0.0);
        self.blocks
            .into_par_iter()
            .zip(partials.par_chunks_mut(per_block))
            .for_each(|(block, part)| f(block, part));
        sum_blocks(out, partials);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_sums_add_every_block_whatever_the_width() {
        // Widths below, at and across the chunk of 1024; three blocks.
        for n in [1, 5, 1024, 2500] {
            let partials: Vec<f32> = (0..3 * n).map(|i| (i % 7) as f32 - 2.5).collect();
            let mut out = vec![f32::NAN; n];
            sum_blocks(&mut out, &partials);
            for (i, &o) in out.iter().enumerate() {
                let want: f32 = (0..3).map(|b| partials[b * n + i]).sum();
                assert_eq!(o, want, "width {n}, element {i}");
            }
        }
    }

    /// Few rows are one block on every thread; many are blocks of
    /// `BLOCK_ROWS` on one thread each; every block gets exactly its rows
    /// of every buffer, whatever the width (0 included).
    #[test]
    fn row_blocks_hand_each_block_its_rows_of_every_buffer() {
        for (n, few, blocks, threads) in [(5, 8, 1, 3), (0, 8, 1, 3), (600, 512, 3, 1)] {
            let mut a: Vec<f32> = (0..n * 3).map(|i| i as f32).collect();
            let mut b = vec![0.0f32; n * 2 + 7];
            let mut none: Vec<f32> = Vec::new();
            let cut = RowBlocks::new(n, few, 3, vec![(&mut a, 3), (&mut b, 2), (&mut none, 0)]);
            assert_eq!(cut.blocks.len(), blocks, "{n} rows");
            let seen = std::sync::Mutex::new(Vec::new());
            cut.for_each(|blk| {
                assert_eq!(blk.threads, threads);
                let [a, b, none] = &blk.bufs[..] else {
                    panic!("three buffers")
                };
                assert_eq!(a.len(), blk.rows.len() * 3);
                assert_eq!(
                    a.first().copied(),
                    (!blk.rows.is_empty()).then_some(blk.rows.start as f32 * 3.0)
                );
                assert_eq!((b.len(), none.len()), (blk.rows.len() * 2, 0));
                seen.lock().unwrap().push(blk.rows);
            });
            let mut seen = seen.into_inner().unwrap();
            seen.sort_by_key(|r| r.start);
            assert_eq!(seen.iter().map(|r| r.len()).sum::<usize>(), n);
            assert!(seen.windows(2).all(|w| w[0].end == w[1].start));
        }
    }

    /// Each block's share goes into its own buffer, added in block order:
    /// the same sums for any number of blocks.
    #[test]
    fn row_blocks_sum_every_blocks_share() {
        for (n, few) in [(700, 8), (300, 512)] {
            let mut out = vec![f32::NAN; 4];
            let mut partials = Vec::new();
            RowBlocks::new(n, few, 2, vec![]).sum(&mut out, &mut partials, |blk, part| {
                for (i, p) in part.iter_mut().enumerate() {
                    *p = blk.rows.clone().map(|r| (r * (i + 1)) as f32).sum();
                }
            });
            let want: Vec<f32> = (1..=4)
                .map(|i| (0..n).map(|r| (r * i) as f32).sum())
                .collect();
            assert_eq!(out, want, "{n} rows");
        }
    }
}
