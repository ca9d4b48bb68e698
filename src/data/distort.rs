//! Distorted training images: each a random affine map (rotation, scale,
//! shear, translation) about the image's centre plus a smooth random
//! displacement field (an elastic distortion, after Simard, Steinkraus and
//! Platt 2003). Each inked pixel is moved by the map and its ink split
//! bilinearly among the four pixels around where it lands: the work is
//! per inked pixel (about a fifth of an MNIST image), the ink's mass is
//! kept, and the compressed images are moved without a dense copy. Every
//! draw comes from the counter-based generator, so an image's distortion
//! depends only on (seed, step, position in the batch): runs stay
//! reproducible on any thread count, and a checkpoint needs no generator
//! state.

use crate::nn::dropout::uniform;
use serde::{Deserialize, Serialize};

/// How strongly training images are distorted; all zero is none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Distortion {
    /// Largest rotation, in degrees either way.
    pub rotate: f32,
    /// Largest change of size, as a fraction (0.1: 90% to 110%), drawn
    /// for each axis.
    pub scale: f32,
    /// Largest shear, as a fraction of the other coordinate.
    pub shear: f32,
    /// Largest displacement of the elastic field's control points, in
    /// pixels.
    pub elastic: f32,
}

/// Control points of the elastic field per side: a displacement drawn at
/// each, interpolated between them, makes a field as smooth as Simard's
/// Gaussian-filtered noise at a fraction of the cost.
const GRID: usize = 4;
/// Draws per image: the affine map's six, then two per control point.
const DRAWS: u64 = 6 + 2 * (GRID * GRID) as u64;

/// The map of one image: source pixel `p` lands at
/// `m·(p − c) + c + t + e(p)`, `c` the image's centre, `e` the elastic
/// field.
#[derive(Clone, Debug, PartialEq)]
pub struct Warp {
    m: [f32; 4],
    t: (f32, f32),
    field: [[f32; 2]; GRID * GRID],
}

/// `v.floor()` as an integer. (`f32::floor` is a library call on the
/// baseline x86-64 target; a cast truncates towards zero, one too far up
/// for negative non-integers.)
#[inline(always)]
fn floor(v: f32) -> isize {
    let t = v as isize;
    t - ((t as f32) > v) as isize
}

impl Distortion {
    pub fn is_none(&self) -> bool {
        *self == Distortion::default()
    }

    /// Image `i`'s warp in stream `key`, with a translation of up to
    /// `shift` pixels on each axis.
    pub fn warp(&self, shift: usize, key: u64, i: u64) -> Warp {
        let u = |k: u64| 2.0 * uniform(key, i * DRAWS + k) - 1.0;
        let angle = (self.rotate * u(0)).to_radians();
        let (sx, sy) = (1.0 + self.scale * u(1), 1.0 + self.scale * u(2));
        let shear = self.shear * u(3);
        let (cos, sin) = (angle.cos(), angle.sin());
        // Rotation · shear · scale.
        let m = [
            cos * sx,
            (cos * shear - sin) * sy,
            sin * sx,
            (sin * shear + cos) * sy,
        ];
        let t = (shift as f32 * u(4), shift as f32 * u(5));
        let field = std::array::from_fn(|g| {
            let k = 6 + 2 * g as u64;
            [self.elastic * u(k), self.elastic * u(k + 1)]
        });
        Warp { m, t, field }
    }
}

impl Warp {
    /// The identity.
    pub fn identity() -> Warp {
        Warp::affine([1.0, 0.0, 0.0, 1.0], (0.0, 0.0))
    }

    /// A plain affine map (`m` row by row, then `t`), no elastic field.
    pub fn affine(m: [f32; 4], t: (f32, f32)) -> Warp {
        Warp {
            m,
            t,
            field: [[0.0; 2]; GRID * GRID],
        }
    }

    /// `src`, an `h x w` image, moved into `dst`.
    pub fn apply(&self, src: &[f32], dst: &mut [f32], shape: (usize, usize)) {
        let ink = src.iter().enumerate().filter(|(_, &v)| v != 0.0);
        self.move_ink(ink.map(|(k, &v)| (k as u32, v)), dst, shape);
    }

    /// Moves an image given by its inked pixels (index row-major in an
    /// `h x w` image, and value) into `dst`: each pixel's ink lands where
    /// the map takes it and is split among the four pixels around, in
    /// proportion to nearness; ink landing outside is lost, and pixels that
    /// many land on are capped at 1.
    pub fn move_ink(
        &self,
        ink: impl Iterator<Item = (u32, f32)>,
        dst: &mut [f32],
        (h, w): (usize, usize),
    ) {
        assert_eq!(dst.len(), h * w, "an image of {h}x{w}");
        dst.fill(0.0);
        let (cx, cy) = ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
        let [a, b, c, d] = self.m;
        let elastic = self.field != [[0.0; 2]; GRID * GRID];
        // Pixels to the field's grid: its control points span the image.
        let grid = |n: usize| (GRID - 1) as f32 / (n.max(2) - 1) as f32;
        let (gx, gy) = (grid(w), grid(h));
        // k / w as a multiply and a shift: exact while k < 2³² / w.
        let inv = (1u64 << 32) / w as u64 + 1;
        for (k, v) in ink {
            let y = ((k as u64 * inv) >> 32) as usize;
            let (x, y) = ((k as usize - y * w) as f32, y as f32);
            let (fx, fy) = (x - cx, y - cy);
            let (mut qx, mut qy) = (
                a * fx + b * fy + cx + self.t.0,
                c * fx + d * fy + cy + self.t.1,
            );
            if elastic {
                let [ex, ey] = self.field_at(x * gx, y * gy);
                (qx, qy) = (qx + ex, qy + ey);
            }
            let (x0, y0) = (floor(qx), floor(qy));
            let (rx, ry) = (qx - x0 as f32, qy - y0 as f32);
            for (dx, dy, weight) in [
                (0, 0, (1.0 - rx) * (1.0 - ry)),
                (1, 0, rx * (1.0 - ry)),
                (0, 1, (1.0 - rx) * ry),
                (1, 1, rx * ry),
            ] {
                let (px, py) = (x0 + dx, y0 + dy);
                if px >= 0 && py >= 0 && (px as usize) < w && (py as usize) < h {
                    dst[py as usize * w + px as usize] += v * weight;
                }
            }
        }
        dst.iter_mut().for_each(|v| *v = v.min(1.0));
    }

    /// The elastic displacement at `(gx, gy)` in the field's grid (control
    /// point `(i, j)` at `(i, j)`), bilinear between control points.
    #[inline(always)]
    fn field_at(&self, gx: f32, gy: f32) -> [f32; 2] {
        let (i, j) = ((gx as usize).min(GRID - 2), (gy as usize).min(GRID - 2));
        let (fx, fy) = (gx - i as f32, gy - j as f32);
        let at = |i: usize, j: usize| self.field[j * GRID + i];
        let (a, b, c, d) = (at(i, j), at(i + 1, j), at(i, j + 1), at(i + 1, j + 1));
        std::array::from_fn(|k| {
            let top = a[k] * (1.0 - fx) + b[k] * fx;
            let bottom = c[k] * (1.0 - fx) + d[k] * fx;
            top * (1.0 - fy) + bottom * fy
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::shift_image;

    /// A 28x28 digit-like image: a bright ring.
    fn ring() -> Vec<f32> {
        (0..784)
            .map(|k| {
                let (x, y) = ((k % 28) as f32 - 13.5, (k / 28) as f32 - 13.5);
                let r = (x * x + y * y).sqrt();
                (1.0 - (r - 7.0).abs() / 2.5).clamp(0.0, 1.0)
            })
            .collect()
    }

    #[test]
    fn the_identity_gives_the_image_back() {
        let src = ring();
        let mut dst = vec![f32::NAN; 784];
        Warp::identity().apply(&src, &mut dst, (28, 28));
        assert_eq!(dst, src);
        // Zero distortion draws the identity, whatever the stream.
        let w = Distortion::default().warp(0, 12345, 7);
        assert_eq!(w, Warp::identity());
    }

    #[test]
    fn known_answers_for_simple_affine_maps() {
        let src = ring();
        let mut dst = vec![0.0; 784];
        // A whole-pixel translation is the shift.
        for (dx, dy) in [(2, 0), (-3, 1), (0, -4)] {
            Warp::affine([1.0, 0.0, 0.0, 1.0], (dx as f32, dy as f32)).apply(
                &src,
                &mut dst,
                (28, 28),
            );
            let mut shifted = vec![0.0; 784];
            shift_image(&src, &mut shifted, (28, 28), dx, dy);
            assert_eq!(dst, shifted, "({dx}, {dy})");
        }
        // A half-pixel move splits each pixel between two.
        let line: Vec<f32> = (0..12).map(|k| k as f32 / 16.0).collect(); // 3 x 4
        let mut out = vec![0.0; 12];
        Warp::affine([1.0, 0.0, 0.0, 1.0], (0.5, 0.0)).apply(&line, &mut out, (3, 4));
        let want: Vec<f32> = [0., 0.5, 1.5, 2.5, 2., 4.5, 5.5, 6.5, 4., 8.5, 9.5, 10.5]
            .iter()
            .map(|v| v / 16.0)
            .collect();
        assert_eq!(out, want);
        // A half turn about the centre reverses the pixels.
        Warp::affine([-1.0, 0.0, 0.0, -1.0], (0.0, 0.0)).apply(&line, &mut out, (3, 4));
        let reversed: Vec<f32> = line.iter().rev().copied().collect();
        assert_eq!(out, reversed);
        // Halving about the centre of a 5 x 5 image: (x, y) lands at
        // ((x + 2) / 2, (y + 2) / 2); a corner pixel exactly on a pixel,
        // an edge one split in two.
        let mut one = vec![0.0; 25];
        one[0] = 0.8;
        let mut out = vec![0.0; 25];
        Warp::affine([0.5, 0.0, 0.0, 0.5], (0.0, 0.0)).apply(&one, &mut out, (5, 5));
        assert_eq!(out[5 + 1], 0.8);
        one.fill(0.0);
        one[1] = 0.8; // (1, 0) lands at (1.5, 1)
        Warp::affine([0.5, 0.0, 0.0, 0.5], (0.0, 0.0)).apply(&one, &mut out, (5, 5));
        assert_eq!((out[5 + 1], out[5 + 2]), (0.4, 0.4));
        // Ink landing on one pixel from several is capped at 1.
        let full = vec![1.0; 25];
        Warp::affine([0.5, 0.0, 0.0, 0.5], (0.0, 0.0)).apply(&full, &mut out, (5, 5));
        assert!(out.iter().all(|&v| v <= 1.0) && out[12] == 1.0);
    }

    #[test]
    fn distorted_images_keep_their_ink_in_range_and_finite() {
        let src = ring();
        let mass: f32 = src.iter().sum();
        let d = Distortion {
            rotate: 15.0,
            scale: 0.1,
            shear: 0.2,
            elastic: 2.0,
        };
        let mut dst = vec![0.0; 784];
        for i in 0..200 {
            d.warp(2, 99, i).apply(&src, &mut dst, (28, 28));
            assert!(
                dst.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)),
                "image {i}"
            );
            let m: f32 = dst.iter().sum();
            // Scale changes the area by (1 ± 0.1)²; shear and the field a little more.
            assert!(
                (m / mass - 1.0).abs() < 0.35,
                "image {i}: ink {m} of {mass}"
            );
        }
        // Different images of a stream get different warps; the same image
        // the same one.
        assert_ne!(d.warp(2, 99, 1), d.warp(2, 99, 2));
        assert_eq!(d.warp(2, 99, 1), d.warp(2, 99, 1));
    }
}
