//! Light data augmentation: each training image moved by a small random
//! shift (zero-filled), drawn from the counter-based generator so a batch's
//! shifts depend only on (seed, step, position in the batch).

use crate::nn::dropout::uniform;
use crate::tensor::kernels::{Isa, Kernels};
use crate::tensor::sparse::SparseRows;

/// Copies `src` (an `h x w` image) into `dst` moved by `(dx, dy)` pixels.
pub fn shift_image(src: &[f32], dst: &mut [f32], (h, w): (usize, usize), dx: isize, dy: isize) {
    dst.fill(0.0);
    let (h, w) = (h as isize, w as isize);
    for y in 0.max(dy)..h.min(h + dy) {
        let sy = y - dy;
        let (x0, x1) = (0.max(dx), w.min(w + dx));
        if x0 >= x1 {
            continue;
        }
        let d = (y * w + x0) as usize..(y * w + x1) as usize;
        let s = (sy * w + x0 - dx) as usize..(sy * w + x1 - dx) as usize;
        dst[d].copy_from_slice(&src[s]);
    }
}

/// [`shift_image`] for an image given by its non-zero pixels: appends the
/// moved pixels that stay inside as a row of `out`.
pub fn shift_entries(
    idx: &[u32],
    val: &[f32],
    out: &mut SparseRows,
    (h, w): (usize, usize),
    dx: isize,
    dy: isize,
) {
    let mv = Move {
        h,
        w,
        dx,
        dy,
        inv: (1u64 << 32) / w.max(1) as u64 + 1,
    };
    out.push_row_with(idx.len(), |dst_idx, dst_val| {
        #[cfg(target_arch = "x86_64")]
        if Kernels::current().isa() == Isa::Avx512
            && w >= 2
            && h.checked_mul(w).is_some_and(|n| n <= i32::MAX as usize)
        {
            // SAFETY: the CPU has AVX-512F; `dst_*` have room for every
            // entry (`push_row_with` gives `idx.len()`); `inv < 2³²` as
            // w >= 2, and pixel indices fit i32 (checked just above).
            return unsafe { avx512::shift((idx, val), (dst_idx, dst_val), mv) };
        }
        shift_portable((idx, val), (dst_idx, dst_val), mv)
    });
}

/// A row's column indices and values.
type Entries<'a> = (&'a [u32], &'a [f32]);
/// Room for a row's column indices and values.
type EntriesMut<'a> = (&'a mut [u32], &'a mut [f32]);

/// A shift of `h x w` images by `(dx, dy)`, with `inv` for dividing by `w`
/// as a multiply and shift (`k / w = (k · inv) >> 32`: exact while
/// `k < 2³² / w`, which every pixel index of an image that fits in memory is).
#[derive(Clone, Copy, Debug)]
struct Move {
    h: usize,
    w: usize,
    dx: isize,
    dy: isize,
    inv: u64,
}

/// The entries of [`shift_entries`] one at a time (branch-free: every entry
/// is written, and only the kept ones advance); returns how many it kept.
fn shift_portable((idx, val): Entries, (dst_idx, dst_val): EntriesMut, mv: Move) -> usize {
    let inv = mv.inv;
    let (hi, wi, dx, dy) = (mv.h as i64, mv.w as i64, mv.dx as i64, mv.dy as i64);
    let mut m = 0;
    for (&k, &v) in idx.iter().zip(val) {
        let y = ((k as u64 * inv) >> 32) as i64;
        let (ty, tx) = (y + dy, k as i64 - y * wi + dx);
        dst_idx[m] = (ty * wi + tx) as u32;
        dst_val[m] = v;
        m += ((0..hi).contains(&ty) & (0..wi).contains(&tx)) as usize;
    }
    m
}

/// [`shift_portable`] 16 entries at a time, the kept ones written with
/// compressing stores (the scalar loop was most of a minibatch's gather).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Entries, EntriesMut, Move};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX-512F; `dst_idx` and `dst_val` must hold
    /// `idx.len()` entries; `inv < 2³²`; `h·w` must fit i32.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn shift((idx, val): Entries, (dst_idx, dst_val): EntriesMut, mv: Move) -> usize {
        assert!(dst_idx.len() >= idx.len() && dst_val.len() >= idx.len() && val.len() == idx.len());
        let inv = _mm512_set1_epi64(mv.inv as i64);
        let (wv, hv) = (
            _mm512_set1_epi32(mv.w as i32),
            _mm512_set1_epi32(mv.h as i32),
        );
        let (dxv, dyv) = (
            _mm512_set1_epi32(mv.dx as i32),
            _mm512_set1_epi32(mv.dy as i32),
        );
        let mut m = 0;
        for i in (0..idx.len()).step_by(16) {
            let n = (idx.len() - i).min(16);
            let live: __mmask16 = if n == 16 { !0 } else { (1 << n) - 1 };
            // SAFETY: the mask keeps the loads inside `idx` and `val`.
            let (k, v) = unsafe {
                (
                    _mm512_maskz_loadu_epi32(live, idx.as_ptr().add(i).cast()),
                    _mm512_maskz_loadu_ps(live, val.as_ptr().add(i)),
                )
            };
            // y = (k · inv) >> 32, even lanes then odd, as 64-bit products.
            let even = _mm512_srli_epi64::<32>(_mm512_mul_epu32(k, inv));
            let odd = _mm512_srli_epi64::<32>(_mm512_mul_epu32(_mm512_srli_epi64::<32>(k), inv));
            let y = _mm512_or_si512(even, _mm512_slli_epi64::<32>(odd));
            let ty = _mm512_add_epi32(y, dyv);
            let tx = _mm512_add_epi32(_mm512_sub_epi32(k, _mm512_mullo_epi32(y, wv)), dxv);
            let to = _mm512_add_epi32(_mm512_mullo_epi32(ty, wv), tx);
            // Unsigned compares: a negative coordinate reads as huge.
            let keep = live & _mm512_cmplt_epu32_mask(ty, hv) & _mm512_cmplt_epu32_mask(tx, wv);
            // SAFETY: at most `live`'s lanes are kept, so m + kept <= i + n
            // <= idx.len(), which both destinations hold.
            unsafe {
                _mm512_mask_compressstoreu_epi32(dst_idx.as_mut_ptr().add(m).cast(), keep, to);
                _mm512_mask_compressstoreu_ps(dst_val.as_mut_ptr().add(m), keep, v);
            }
            m += keep.count_ones() as usize;
        }
        m
    }
}

/// A shift in `-max..=max` on each axis for sample `i` of stream `key`.
pub fn random_shift(key: u64, i: u64, max: usize) -> (isize, isize) {
    let span = (2 * max + 1) as f32;
    let pick = |u: f32| ((u * span) as isize).min(2 * max as isize) - max as isize;
    (pick(uniform(key, 2 * i)), pick(uniform(key, 2 * i + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_move_pixels_and_fill_with_zero() {
        let src: Vec<f32> = (0..12).map(|v| v as f32 + 1.0).collect(); // 3 x 4
        let mut dst = vec![9.0; 12];
        shift_image(&src, &mut dst, (3, 4), 1, 0);
        assert_eq!(dst, [0., 1., 2., 3., 0., 5., 6., 7., 0., 9., 10., 11.]);
        shift_image(&src, &mut dst, (3, 4), -1, 1);
        assert_eq!(dst, [0., 0., 0., 0., 2., 3., 4., 0., 6., 7., 8., 0.]);
        shift_image(&src, &mut dst, (3, 4), 0, 0);
        assert_eq!(dst, src);
        shift_image(&src, &mut dst, (3, 4), 5, 0);
        assert!(dst.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn shifting_entries_matches_shifting_the_image() {
        let src: Vec<f32> = (0..35)
            .map(|v| if v % 3 == 0 { 0.0 } else { v as f32 })
            .collect();
        let compressed = SparseRows::from_dense(&src, 35);
        let (idx, val) = compressed.view().row(0);
        for (dx, dy) in [(0, 0), (1, 0), (-2, 1), (3, -4), (7, 0), (0, -5)] {
            let mut dense = vec![0.0; 35];
            shift_image(&src, &mut dense, (5, 7), dx, dy);
            let mut out = SparseRows::default();
            out.clear(35);
            shift_entries(idx, val, &mut out, (5, 7), dx, dy);
            assert_eq!(out.view().to_dense(), dense, "shift ({dx}, {dy})");
        }
    }

    #[test]
    fn vector_and_scalar_shifts_agree() {
        // Rows of 0 to 40 entries (partial vectors), shapes with w not 28.
        for (h, w) in [(28, 28), (5, 7), (3, 2), (40, 33)] {
            let n = h * w;
            for len in [0, 1, 15, 16, 17, 40] {
                let mut idx: Vec<u32> = (0..len).map(|i| ((i * 7919 + 13) % n) as u32).collect();
                idx.sort();
                idx.dedup();
                let val: Vec<f32> = idx.iter().map(|&k| k as f32 + 0.5).collect();
                for (dx, dy) in [
                    (0, 0),
                    (2, -1),
                    (-3, 2),
                    (w as isize, 0),
                    (1, h as isize - 1),
                ] {
                    let inv = (1u64 << 32) / w as u64 + 1;
                    let mv = Move { h, w, dx, dy, inv };
                    let mut a = (vec![0u32; idx.len()], vec![0.0f32; idx.len()]);
                    let ka = shift_portable((&idx, &val), (&mut a.0, &mut a.1), mv);
                    let mut out = SparseRows::default();
                    out.clear(n);
                    shift_entries(&idx, &val, &mut out, (h, w), dx, dy);
                    let (bi, bv) = out.view().row(0);
                    assert_eq!(
                        (&a.0[..ka], &a.1[..ka]),
                        (bi, bv),
                        "{h}x{w} {len} ({dx},{dy})"
                    );
                }
            }
        }
    }

    #[test]
    fn random_shifts_cover_the_range() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            let (dx, dy) = random_shift(3, i, 2);
            assert!((-2..=2).contains(&dx) && (-2..=2).contains(&dy));
            seen.insert((dx, dy));
        }
        assert_eq!(seen.len(), 25);
    }
}
