//! Light data augmentation: each training image moved by a small random
//! shift (zero-filled), drawn from the counter-based generator so a batch's
//! shifts depend only on (seed, step, position in the batch).

use crate::nn::dropout::uniform;
use crate::tensor::SparseRows;

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
    let (hi, wi) = (h as i64, w as i64);
    // k / w as a multiply and shift: exact while k < 2³² / w, which every
    // pixel index of an image that fits in memory is.
    let inv = (1u64 << 32) / w.max(1) as u64 + 1;
    let (dx, dy) = (dx as i64, dy as i64);
    out.push_row_with(idx.len(), |dst_idx, dst_val| {
        let mut m = 0;
        for (&k, &v) in idx.iter().zip(val) {
            let y = ((k as u64 * inv) >> 32) as i64;
            let (ty, tx) = (y + dy, k as i64 - y * wi + dx);
            dst_idx[m] = (ty * wi + tx) as u32;
            dst_val[m] = v;
            m += ((0..hi).contains(&ty) & (0..wi).contains(&tx)) as usize;
        }
        m
    });
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
