//! Row-parallel loops whose results do not depend on the thread count.
//!
//! Work is cut into fixed blocks of rows and per-block results come back in
//! block order, so a reduction over them gives bit-identical sums on 1 or 16
//! threads.

use rayon::prelude::*;

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
