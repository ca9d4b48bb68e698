//! Turning an arbitrary picture of a digit into an MNIST-like 28x28 input,
//! the way MNIST itself was made: grey levels, ink bright on dark, cropped
//! to the ink, fitted into 20x20 keeping the aspect ratio, then placed so
//! that its centre of mass is at the centre of the 28x28 field.

use anyhow::{bail, Context, Result};
use image::imageops::{resize, FilterType};
use image::{ImageBuffer, Luma};
use std::path::Path;

/// MNIST's field and the box the digit is fitted into.
pub const SIDE: usize = 28;
const FIT: f32 = 20.0;
/// Fraction of the ink's range above which a pixel counts as ink for cropping.
const INK: f32 = 0.15;

type Grey = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Largest picture accepted, per side, and the decoder's memory budget: a
/// hostile header cannot make us allocate more.
const MAX_SIDE: u32 = 8_192;
const MAX_ALLOC: u64 = 1 << 28;

/// Loads an image file (PNG, JPEG, PGM/PPM, BMP; any size, grey or colour)
/// and prepares it as 28x28 pixels in [0, 1], row-major.
pub fn load_digit(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    digit_from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// [`load_digit`] for an encoded image in memory.
pub fn digit_from_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("cannot read as an image")?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader
        .decode()
        .context("cannot read as an image (PNG, JPEG, PGM/PPM or BMP)")?;
    prepare(&img.to_luma32f())
}

/// Prepares a grey image (values in [0, 1]) as an MNIST digit.
pub fn prepare(grey: &Grey) -> Result<Vec<f32>> {
    let (w, h) = grey.dimensions();
    if w == 0 || h == 0 {
        bail!("the image is empty");
    }
    // The background is what the border mostly is: light paper gets inverted.
    let border: Vec<f32> = (0..w)
        .flat_map(|x| [grey.get_pixel(x, 0)[0], grey.get_pixel(x, h - 1)[0]])
        .chain((0..h).flat_map(|y| [grey.get_pixel(0, y)[0], grey.get_pixel(w - 1, y)[0]]))
        .collect();
    let background = median(border);
    let invert = background > 0.5;
    let ink = |v: f32| if invert { 1.0 - v } else { v };
    let bg = ink(background);
    let top = grey.pixels().map(|p| ink(p[0])).fold(f32::MIN, f32::max);
    if top - bg < 0.05 {
        bail!("no digit found: the image is blank");
    }
    let norm = Grey::from_fn(w, h, |x, y| {
        Luma([((ink(grey.get_pixel(x, y)[0]) - bg) / (top - bg)).clamp(0.0, 1.0)])
    });

    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in norm.enumerate_pixels() {
        if p[0] > INK {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    let crop = image::imageops::crop_imm(&norm, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let (cw, ch) = crop.dimensions();
    let scale = FIT / cw.max(ch) as f32;
    let (nw, nh) = (
        ((cw as f32 * scale).round() as u32).max(1),
        ((ch as f32 * scale).round() as u32).max(1),
    );
    let small = resize(&crop, nw, nh, FilterType::Triangle);

    // Centre of mass to the field's centre.
    let (mut m, mut mx, mut my) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y, p) in small.enumerate_pixels() {
        m += p[0];
        mx += p[0] * (x as f32 + 0.5);
        my += p[0] * (y as f32 + 0.5);
    }
    let (cx, cy) = if m > 0.0 {
        (mx / m, my / m)
    } else {
        (nw as f32 / 2.0, nh as f32 / 2.0)
    };
    let (ox, oy) = (
        (SIDE as f32 / 2.0 - cx).round() as i64,
        (SIDE as f32 / 2.0 - cy).round() as i64,
    );
    let mut out = vec![0.0f32; SIDE * SIDE];
    for (x, y, p) in small.enumerate_pixels() {
        let (tx, ty) = (x as i64 + ox, y as i64 + oy);
        if (0..SIDE as i64).contains(&tx) && (0..SIDE as i64).contains(&ty) {
            out[ty as usize * SIDE + tx as usize] = p[0].clamp(0.0, 1.0);
        }
    }
    Ok(out)
}

fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dark_bar_on_light_paper_is_inverted_cropped_and_centred() {
        // A 10 x 40 dark vertical bar, off-centre on a 100 x 80 white page.
        let img = Grey::from_fn(100, 80, |x, y| {
            Luma([if (70..80).contains(&x) && (5..45).contains(&y) {
                0.1
            } else {
                0.95
            }])
        });
        let d = prepare(&img).unwrap();
        let ink: Vec<(usize, usize)> = (0..SIDE * SIDE)
            .filter(|&i| d[i] > 0.5)
            .map(|i| (i % SIDE, i / SIDE))
            .collect();
        let (xs, ys): (Vec<_>, Vec<_>) = ink.iter().copied().unzip();
        // 40 tall -> 20 tall; 10 wide -> 5 wide; centred on (14, 14).
        assert_eq!(ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1, 20);
        assert!((4..=6).contains(&(xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1)));
        let cx = xs.iter().sum::<usize>() as f32 / xs.len() as f32 + 0.5;
        let cy = ys.iter().sum::<usize>() as f32 / ys.len() as f32 + 0.5;
        assert!(
            (cx - 14.0).abs() <= 1.0 && (cy - 14.0).abs() <= 1.0,
            "centre ({cx}, {cy})"
        );
        // The border is background.
        assert!(d[..SIDE].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_blank_image_is_refused() {
        let e = prepare(&Grey::from_pixel(30, 30, Luma([1.0])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("blank"), "{e}");
    }
}
