//! The product on AVX512-BF16 vectors: `vdpbf16ps` multiplies 16 pairs of
//! bfloat16 by 16 pairs and adds each pair's two products into a float32
//! lane. For a 16x32 tile of A against a panel of B: sixteen accumulators,
//! one per row of A, each the row's 16 outputs; per pair of k, one load
//! of B's 16 columns and a broadcast of each row's pair of A.

use super::layout::{PairsView, Part, TiledView, CHUNK, PANEL, TILE_ROWS};
use std::arch::x86_64::*;

/// `part = Σ_t a · b[t]` for its rows of A and panels of B, a tile of A
/// against a panel at a time, k in chunks of [`CHUNK`] tiles. Tiles of A
/// that hold only zeros are skipped.
///
/// # Safety
/// The CPU must have AVX512-F and AVX512-BF16; `a`, `b` and `part` must
/// agree in shape (checked by [`super::product`]).
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn product(mut part: Part<'_>, a: TiledView<'_>, b: &[PairsView<'_>]) {
    let kt = a.k_tiles();
    let (r0, r1) = (
        part.rows.start / TILE_ROWS,
        part.rows.end.div_ceil(TILE_ROWS),
    );
    for rt in r0..r1 {
        for p in part.panels.clone() {
            let mut sums = [_mm512_setzero_ps(); TILE_ROWS];
            for k0 in (0..kt).step_by(CHUNK) {
                let mut acc = [_mm512_setzero_ps(); TILE_ROWS];
                for j in k0..kt.min(k0 + CHUNK) {
                    let (tile, nonzero) = a.tile(rt, j);
                    if !nonzero {
                        continue;
                    }
                    for t in b {
                        let bt = t.tile(p, j);
                        for q in 0..16 {
                            // SAFETY: the tile holds 16 rows of 32 values.
                            let bv = unsafe { _mm512_loadu_si512(bt[q * 32..].as_ptr().cast()) };
                            let bv: __m512bh = unsafe { std::mem::transmute(bv) };
                            for (r, acc) in acc.iter_mut().enumerate() {
                                let pair = u32::from(tile[r * 32 + 2 * q])
                                    | u32::from(tile[r * 32 + 2 * q + 1]) << 16;
                                let av: __m512bh =
                                    unsafe { std::mem::transmute(_mm512_set1_epi32(pair as i32)) };
                                *acc = _mm512_dpbf16_ps(*acc, av, bv);
                            }
                        }
                    }
                }
                for (s, a) in sums.iter_mut().zip(acc) {
                    *s = _mm512_add_ps(*s, a);
                }
            }
            store(&mut part, rt, p, &sums);
        }
    }
}

/// Writes the 16 rows of sums of row tile `rt` and panel `p` into the
/// part of the result, where they fall inside it.
#[target_feature(enable = "avx512f")]
fn store(part: &mut Part<'_>, rt: usize, p: usize, acc: &[__m512; TILE_ROWS]) {
    let first = rt * TILE_ROWS;
    let rows = TILE_ROWS.min(part.rows.end.saturating_sub(first));
    let mut row = [0.0f32; PANEL];
    for (r, v) in acc.iter().enumerate().take(rows) {
        // SAFETY: `row` holds 16 floats.
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), *v) };
        let (out, _, cols) = part.at(first + r, p);
        out[..cols].copy_from_slice(&row[..cols]);
    }
}
