//! Row-parallel loops whose results do not depend on the thread count.
//!
//! Work is cut into fixed blocks of rows and per-block results come back in
//! block order, so a reduction over them gives bit-identical sums on 1 or 16
//! threads.

use rayon::prelude::*;
use std::marker::PhantomData;
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

/// Runs `f(rows)` for the blocks of [`BLOCK_ROWS`] rows of `0..n` in
/// parallel, for work that carries a block through several buffers.
pub fn for_blocks<F>(n: usize, f: F)
where
    F: Fn(Range<usize>) + Sync + Send,
{
    (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .for_each(|b| f(block(n, b)));
}

/// The rows of block `b` of `0..n` (blocks of [`BLOCK_ROWS`]).
pub fn block(n: usize, b: usize) -> Range<usize> {
    b * BLOCK_ROWS..n.min((b + 1) * BLOCK_ROWS)
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

/// A buffer written by parallel tasks, each through its own rows: what
/// [`for_row_blocks`] does for one buffer, for a task that needs the same
/// rows of several (every layer's activations of one block).
#[derive(Clone, Copy)]
pub struct Disjoint<'a> {
    ptr: *mut f32,
    len: usize,
    _buf: PhantomData<&'a mut [f32]>,
}

// SAFETY: a `Disjoint` hands out only ranges its callers promise not to
// share between threads (the contract of `range`).
unsafe impl Send for Disjoint<'_> {}
unsafe impl Sync for Disjoint<'_> {}

impl<'a> Disjoint<'a> {
    pub fn new(buf: &'a mut [f32]) -> Disjoint<'a> {
        Disjoint {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _buf: PhantomData,
        }
    }

    /// Elements `r` of the buffer.
    ///
    /// # Safety
    /// While the slice lives, no other slice from this buffer may overlap
    /// `r`.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, r: Range<usize>) -> &'a mut [f32] {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "range {r:?} outside a buffer of {}",
            self.len
        );
        // SAFETY: in bounds (checked above); unshared (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.len()) }
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
}
