//! Out-of-place transpose in square tiles, for the two copies the sparse
//! first layer needs (its weight into column panels, its gradient back).

use crate::tensor::kernels::{Isa, Kernels};

/// Side of the tiles copied at a time (a source and a destination tile fit L1).
const TILE: usize = 16;

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for `r < rows`,
/// `c < cols`.
pub fn transpose(
    dst: &mut [f32],
    dst_stride: usize,
    src: &[f32],
    src_stride: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    // The extent each side needs (an overflow needs more than any slice).
    let extent = |lines: usize, stride: usize, width: usize| {
        (lines - 1)
            .checked_mul(stride)
            .and_then(|e| e.checked_add(width))
            .unwrap_or(usize::MAX)
    };
    assert!(
        src.len() >= extent(rows, src_stride, cols),
        "source too short"
    );
    assert!(
        dst.len() >= extent(cols, dst_stride, rows),
        "destination too short"
    );
    #[cfg(target_arch = "x86_64")]
    let avx512 = Kernels::current().isa() == Isa::Avx512;
    // Through a local tile, so each row copy is one bounds check and the
    // compiler sees fixed-size loops.
    let mut tile = [[0.0f32; TILE]; TILE];
    for r0 in (0..rows).step_by(TILE) {
        let h = TILE.min(rows - r0);
        for c0 in (0..cols).step_by(TILE) {
            let w = TILE.min(cols - c0);
            #[cfg(target_arch = "x86_64")]
            if avx512 && h == TILE && w == TILE {
                let (d, s) = (c0 * dst_stride + r0, r0 * src_stride + c0);
                // SAFETY: the CPU has AVX-512F, and the asserts above put
                // the whole tile inside both slices.
                unsafe {
                    avx512::tile(
                        dst[d..].as_mut_ptr(),
                        dst_stride,
                        src[s..].as_ptr(),
                        src_stride,
                    )
                };
                continue;
            }
            for (i, t) in tile[..h].iter_mut().enumerate() {
                let at = (r0 + i) * src_stride + c0;
                copy_short(&mut t[..w], &src[at..at + w]);
            }
            for j in 0..w {
                let at = (c0 + j) * dst_stride + r0;
                for (d, t) in dst[at..at + h].iter_mut().zip(&tile) {
                    *d = t[j];
                }
            }
        }
    }
}

/// A full 16 x 16 tile transposed in registers: a scalar copy of its
/// columns cost a load and a store per float.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// `dst[j * ds + i] = src[i * ss + j]` for `i, j < 16`.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; both tiles must lie in their buffers.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn tile(dst: *mut f32, ds: usize, src: *const f32, ss: usize) {
        let mut r = [_mm512_setzero_ps(); 16];
        for (i, r) in r.iter_mut().enumerate() {
            *r = unsafe { _mm512_loadu_ps(src.add(i * ss)) };
        }
        // Pairs of rows interleaved by float: t[2i], t[2i+1] hold rows 2i, 2i+1.
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        // Groups of four rows by pairs: u[4g + m], lane l, is column 4l + m
        // of rows 4g..4g + 4.
        let mut u = [_mm512_setzero_ps(); 16];
        for g in 0..4 {
            for m in 0..4 {
                let a = _mm512_castps_pd(t[4 * g + m / 2]);
                let b = _mm512_castps_pd(t[4 * g + 2 + m / 2]);
                u[4 * g + m] = _mm512_castpd_ps(if m % 2 == 0 {
                    _mm512_unpacklo_pd(a, b)
                } else {
                    _mm512_unpackhi_pd(a, b)
                });
            }
        }
        // Lanes gathered across the four groups: column 4l + m is lane l of
        // u[m], u[4 + m], u[8 + m], u[12 + m].
        for m in 0..4 {
            let v = _mm512_shuffle_f32x4::<0x44>(u[m], u[4 + m]);
            let w = _mm512_shuffle_f32x4::<0xEE>(u[m], u[4 + m]);
            let x = _mm512_shuffle_f32x4::<0x44>(u[8 + m], u[12 + m]);
            let y = _mm512_shuffle_f32x4::<0xEE>(u[8 + m], u[12 + m]);
            let cols = [
                _mm512_shuffle_f32x4::<0x88>(v, x),
                _mm512_shuffle_f32x4::<0xDD>(v, x),
                _mm512_shuffle_f32x4::<0x88>(w, y),
                _mm512_shuffle_f32x4::<0xDD>(w, y),
            ];
            for (l, c) in cols.into_iter().enumerate() {
                unsafe { _mm512_storeu_ps(dst.add((4 * l + m) * ds), c) };
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for at most 16 floats, inline (a
/// `memcpy` call per 64 bytes cost more than the copy).
#[inline(always)]
pub fn copy_short(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (
        <&mut [f32; TILE]>::try_from(&mut *dst),
        <&[f32; TILE]>::try_from(src),
    ) {
        *d = *s;
    } else {
        dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_odd_shapes_between_strides() {
        for (rows, cols) in [(1, 1), (1, 17), (17, 1), (33, 65), (192, 784)] {
            let (ss, ds) = (cols + 3, rows + 2);
            let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
            let mut dst = vec![-1.0; cols * ds];
            transpose(&mut dst, ds, &src, ss, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        dst[c * ds + r],
                        src[r * ss + c],
                        "{rows}x{cols} at ({r},{c})"
                    );
                }
            }
            assert!(dst.chunks(ds).all(|d| d[rows..].iter().all(|&v| v == -1.0)));
        }
    }
}
