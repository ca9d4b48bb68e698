//! Turning a picture of a digit, as people make them, into an MNIST-like
//! 28x28 input: a photo of a digit written on paper (uneven light, a
//! shadow, coloured ink on tinted paper), a drawing exported from a canvas
//! (transparent), a scan, or an MNIST image itself. The steps:
//!
//! 1. transparency composited onto white; colour to grey by the darkest
//!    channel, in which coloured ink on tinted paper stands out most;
//! 2. scaled down so its longer side is at most [`WORK`] pixels;
//! 3. light ink on a dark ground turned dark on light (the ground is what
//!    most of the picture is, nearer one extreme of its values than the
//!    other);
//! 4. the paper's brightness estimated at a large scale (a small copy with
//!    the ink closed over, scaled back up) and divided out, so gradients and
//!    shadows leave the paper at 1 and only ink below it;
//! 5. what is ink decided by Otsu's threshold; the ink's connected groups
//!    found, those touching the border dropped (a shadow's edge, the
//!    sheet's edge) unless nothing else is left, and the digit taken as the
//!    group with the most ink and the groups near it;
//! 6. then as MNIST was made: cropped to the ink, fitted into 20x20 keeping
//!    the aspect ratio, placed so that its centre of mass is at the centre
//!    of the 28x28 field.

use anyhow::{bail, Context, Result};
use image::imageops::{resize, FilterType};
use image::{DynamicImage, GrayImage, ImageBuffer, Luma};
use imageproc::contrast::otsu_level;
use imageproc::morphology::{dilate, grayscale_close, Mask};
use imageproc::region_labelling::{connected_components, Connectivity};
use std::path::Path;

/// MNIST's field and the box the digit is fitted into.
pub const SIDE: usize = 28;
const FIT: f32 = 20.0;
/// Fraction of the ink's full strength above which a pixel counts as ink
/// for cropping.
const INK: f32 = 0.15;
/// The longer side pictures are worked at: a digit needs a few dozen
/// pixels to reach 20x20 well, and a phone's photo has thousands.
pub const WORK: u32 = 320;
/// The paper's brightness is estimated on copies of the picture at most
/// this many pixels on their longer side, closed (a maximum, then a
/// minimum, over a square of this radius) so that dark features narrower
/// than the square vanish: on the first copy, those under 13/96 of the
/// picture (a digit's strokes) while a shadow stays; on the second, those
/// under 11/32 (a digit's filled blob, too).
const PAPER: [(u32, u8); 2] = [(96, 6), (32, 5)];
/// How much darker the first estimate may be than the second before the
/// difference is something dark: a shadow where it reaches the border, the
/// digit's ink where it does not.
const SHADOW: u8 = 25;
/// Less contrast than this between the ink and the paper is no digit.
const BLANK: f32 = 0.05;

type Grey = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Largest picture accepted, per side, and the decoder's memory budget: a
/// hostile header cannot make us allocate more.
const MAX_SIDE: u32 = 8_192;
const MAX_ALLOC: u64 = 1 << 28;

/// Loads an image file (PNG, JPEG, PGM/PPM, BMP; any size, grey or colour,
/// transparent or not) and prepares it as 28x28 pixels in [0, 1], row-major.
pub fn load_digit(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    digit_from_bytes(&bytes).with_context(|| format!("{}", path.display()))
}

/// [`load_digit`] for an encoded image in memory.
pub fn digit_from_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    if bytes.is_empty() {
        bail!("the file is empty (0 bytes); expected a PNG, JPEG, PGM/PPM or BMP image");
    }
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
    digit_from_image(&img)
}

/// [`load_digit`] for a decoded image.
pub fn digit_from_image(img: &DynamicImage) -> Result<Vec<f32>> {
    prepare(&grey(img))
}

/// The picture in grey (0 black, 1 white), transparency composited onto
/// white, each pixel the darkest of its channels, at most [`WORK`] pixels
/// on its longer side.
pub fn grey(img: &DynamicImage) -> Grey {
    let small;
    let img = match img.width().max(img.height()) > WORK {
        true => {
            small = img.resize(WORK, WORK, FilterType::Triangle);
            &small
        }
        false => img,
    };
    let rgba = img.to_rgba32f();
    Grey::from_fn(img.width(), img.height(), |x, y| {
        let [r, g, b, a] = rgba.get_pixel(x, y).0;
        Luma([1.0 - a + a * r.min(g).min(b)])
    })
}

/// Prepares a grey picture (values in [0, 1]) as an MNIST digit.
pub fn prepare(grey: &Grey) -> Result<Vec<f32>> {
    let (w, h) = grey.dimensions();
    if w == 0 || h == 0 {
        bail!("the image is empty");
    }
    let ink = ink(grey);
    let top = ink.pixels().map(|p| p[0]).fold(0.0f32, f32::max);
    check_ink(top)?;
    let digit = main_strokes(&ink, top);
    fit(&digit)
}

/// Refuses a picture whose most inked pixel holds `top` (0 paper, 1 ink)
/// when that is too little to be a digit: one rule for images and for
/// pixels given as they are.
pub fn check_ink(top: f32) -> Result<()> {
    if top < BLANK {
        bail!("no digit found: the image is blank");
    }
    Ok(())
}

/// How much ink each pixel holds, 0 (paper) to 1: light on dark turned
/// dark on light, the paper's brightness divided out.
fn ink(grey: &Grey) -> Grey {
    let (w, h) = grey.dimensions();
    // The ground is what most of the picture is, the ink the other extreme:
    // a dim photo's paper is still nearer its brightest than its darkest.
    let mut values: Vec<f32> = grey.pixels().map(|p| p[0]).collect();
    values.sort_by(f32::total_cmp);
    let at = |q: f32| values[((values.len() - 1) as f32 * q) as usize];
    let dark_ground = at(0.5) < (at(0.001) + at(0.999)) / 2.0;
    let paper_of = |v: f32| if dark_ground { 1.0 - v } else { v };
    let page = GrayImage::from_fn(w, h, |x, y| {
        Luma([(paper_of(grey.get_pixel(x, y)[0]) * 255.0).round() as u8])
    });
    let paper = paper_brightness(&page);
    Grey::from_fn(w, h, |x, y| {
        let (v, p) = (
            page.get_pixel(x, y)[0] as f32,
            paper.get_pixel(x, y)[0] as f32,
        );
        Luma([(1.0 - v / p.max(1.0)).clamp(0.0, 1.0)])
    })
}

/// The paper's brightness under the ink, at the picture's size: the
/// closings of [`PAPER`], the first kept where it is darker than the second
/// in a region that reaches the border (a shadow), the second elsewhere (a
/// filled stroke is not paper).
fn paper_brightness(page: &GrayImage) -> GrayImage {
    let (w, h) = page.dimensions();
    let [(fine_side, _), _] = PAPER;
    let at = |side: u32| {
        let scale = (side as f32 / w.max(h) as f32).min(1.0);
        (
            ((w as f32 * scale).round() as u32).max(1),
            ((h as f32 * scale).round() as u32).max(1),
        )
    };
    let (fw, fh) = at(fine_side);
    let [fine, coarse] = PAPER.map(|(side, radius)| {
        let (sw, sh) = at(side);
        let radius = ((radius as u32 * sw.max(sh)).div_ceil(side) as u8).max(1);
        let small = resize(page, sw, sh, FilterType::Triangle);
        let closed = grayscale_close(&small, &Mask::square(radius));
        resize(&closed, fw, fh, FilterType::Triangle)
    });
    let darker = GrayImage::from_fn(fw, fh, |x, y| {
        let (f, c) = (fine.get_pixel(x, y)[0], coarse.get_pixel(x, y)[0]);
        Luma([u8::from(c.saturating_sub(f) > SHADOW)])
    });
    let regions = connected_components(&darker, Connectivity::Eight, Luma([0]));
    let mut shadow = vec![false; regions.pixels().map(|p| p[0] as usize).max().unwrap_or(0) + 1];
    for (x, y, p) in regions.enumerate_pixels() {
        shadow[p[0] as usize] |= x == 0 || y == 0 || x == fw - 1 || y == fh - 1;
    }
    let paper = GrayImage::from_fn(fw, fh, |x, y| {
        let l = regions.get_pixel(x, y)[0] as usize;
        match l == 0 || shadow[l] {
            true => *fine.get_pixel(x, y),
            false => *coarse.get_pixel(x, y),
        }
    });
    resize(&paper, w, h, FilterType::Triangle)
}

/// The digit's ink alone: ink above Otsu's threshold, in connected groups;
/// those touching the border dropped while others remain; the group
/// holding the most ink and those near it kept, with the soft edges around
/// them, scaled so their strokes reach 1. `top` is the strongest ink.
fn main_strokes(ink: &Grey, top: f32) -> Grey {
    let (w, h) = ink.dimensions();
    let bytes = GrayImage::from_fn(w, h, |x, y| Luma([(ink.get_pixel(x, y)[0] * 255.0) as u8]));
    // Otsu's level, and never below a quarter of the strongest ink: faint
    // remains of a shadow's edge are not strokes.
    let level = (otsu_level(&bytes) as f32 / 255.0).max(0.25 * top);
    let mask = GrayImage::from_fn(w, h, |x, y| {
        Luma([u8::from(ink.get_pixel(x, y)[0] > level)])
    });
    let labels = connected_components(&mask, Connectivity::Eight, Luma([0]));
    let groups = Groups::of(&labels, ink);
    let keep = groups.digit();
    let chosen = GrayImage::from_fn(w, h, |x, y| {
        let l = labels.get_pixel(x, y)[0] as usize;
        Luma([if l > 0 && keep[l] { 255 } else { 0 }])
    });
    // The strokes' soft edges lie just outside the threshold.
    let near = dilate(&chosen, imageproc::distance_transform::Norm::LInf, 2);
    let mut strong: Vec<f32> = chosen
        .enumerate_pixels()
        .filter(|(_, _, p)| p[0] > 0)
        .map(|(x, y, _)| ink.get_pixel(x, y)[0])
        .collect();
    strong.sort_by(f32::total_cmp);
    let full = strong
        .get(strong.len() * 9 / 10)
        .copied()
        .unwrap_or(top)
        .max(1e-3);
    Grey::from_fn(w, h, |x, y| match near.get_pixel(x, y)[0] > 0 {
        true => Luma([(ink.get_pixel(x, y)[0] / full).min(1.0)]),
        false => Luma([0.0]),
    })
}

/// The connected groups of ink: each one's box, ink and whether it
/// touches the border (index 0 is the background).
struct Groups {
    boxes: Vec<[u32; 4]>,
    ink: Vec<f32>,
    edge: Vec<bool>,
}

impl Groups {
    fn of(labels: &ImageBuffer<Luma<u32>, Vec<u32>>, ink: &Grey) -> Groups {
        let (w, h) = labels.dimensions();
        let n = labels.pixels().map(|p| p[0] as usize).max().unwrap_or(0) + 1;
        let mut g = Groups {
            boxes: vec![[u32::MAX, u32::MAX, 0, 0]; n],
            ink: vec![0.0; n],
            edge: vec![false; n],
        };
        for (x, y, p) in labels.enumerate_pixels() {
            let l = p[0] as usize;
            let b = &mut g.boxes[l];
            *b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            g.ink[l] += ink.get_pixel(x, y)[0];
            g.edge[l] |= x == 0 || y == 0 || x == w - 1 || y == h - 1;
        }
        g
    }

    /// Which groups make the digit: the one holding the most ink among
    /// those off the border (all of them, if every one touches it), and
    /// those within a third of its size of it, then of them, ...
    fn digit(&self) -> Vec<bool> {
        let n = self.ink.len();
        let inner = (1..n).any(|l| !self.edge[l]);
        let candidate = |l: usize| l > 0 && (!inner || !self.edge[l]);
        let mut keep = vec![false; n];
        let Some(main) = (1..n)
            .filter(|&l| candidate(l))
            .max_by(|&a, &b| self.ink[a].total_cmp(&self.ink[b]))
        else {
            return keep;
        };
        keep[main] = true;
        let b = self.boxes[main];
        let reach = ((b[2] - b[0]).max(b[3] - b[1]) / 3).max(2);
        // Specks (under 2% of the main group's ink) do not join.
        let joins = |l: usize| candidate(l) && self.ink[l] >= 0.02 * self.ink[main];
        let mut grown = true;
        while grown {
            grown = false;
            for l in 1..n {
                if !keep[l]
                    && joins(l)
                    && (1..n).any(|k| keep[k] && near(self.boxes[k], self.boxes[l], reach))
                {
                    keep[l] = true;
                    grown = true;
                }
            }
        }
        keep
    }
}

/// Whether two boxes `[x0, y0, x1, y1]` lie within `reach` pixels.
fn near(a: [u32; 4], b: [u32; 4], reach: u32) -> bool {
    let gap = |lo0: u32, hi0: u32, lo1: u32, hi1: u32| {
        lo1.saturating_sub(hi0).max(lo0.saturating_sub(hi1))
    };
    gap(a[0], a[2], b[0], b[2]) <= reach && gap(a[1], a[3], b[1], b[3]) <= reach
}

/// The digit's ink (0..1) cropped to the ink, fitted into 20x20 keeping
/// its aspect ratio, and placed with its centre of mass at the centre of
/// the 28x28 field.
fn fit(norm: &Grey) -> Result<Vec<f32>> {
    let (w, h) = norm.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    for (x, y, p) in norm.enumerate_pixels() {
        if p[0] > INK {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    if x0 > x1 {
        bail!("no digit found: the image is blank");
    }
    let crop = image::imageops::crop_imm(norm, x0, y0, x1 - x0 + 1, y1 - y0 + 1).to_image();
    let (cw, ch) = crop.dimensions();
    let scale = FIT / cw.max(ch) as f32;
    let (nw, nh) = (
        ((cw as f32 * scale).round() as u32).max(1),
        ((ch as f32 * scale).round() as u32).max(1),
    );
    let small = resize(&crop, nw, nh, FilterType::CatmullRom);

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

    /// A thick ring (a "0") of ink coverage 0..1 at `(cx, cy)`, radius `r`.
    fn ring(x: u32, y: u32, (cx, cy, r): (f32, f32, f32)) -> f32 {
        let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt();
        (1.0 - ((d - r).abs() - r * 0.2).max(0.0) / 1.5).clamp(0.0, 1.0)
    }

    /// How far apart two prepared digits are: the mean absolute difference.
    fn apart(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).sum::<f32>() / a.len() as f32
    }

    /// The same ring on white paper, as a canvas export (black ink on a
    /// transparent background), and photographed (blue ink on tinted paper,
    /// light falling off across the sheet, a shadow band along one edge and
    /// the dark edge of the table along another): the same digit comes out.
    #[test]
    fn photos_and_canvas_exports_give_the_clean_digit() {
        let at = (150.0, 100.0, 40.0);
        let clean = image::DynamicImage::ImageLuma8(GrayImage::from_fn(300, 220, |x, y| {
            Luma([(255.0 * (1.0 - ring(x, y, at))) as u8])
        }));
        let canvas =
            image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(300, 220, |x, y| {
                image::Rgba([0, 0, 0, (255.0 * ring(x, y, at)) as u8])
            }));
        let photo = image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(300, 220, |x, y| {
            let (paper, ink) = ([240.0, 230.0, 205.0], [30.0, 40.0, 150.0]);
            let a = ring(x, y, at);
            let light = (1.0 - 0.4 * x as f32 / 300.0)
                * if x < 60 { 0.5 } else { 1.0 }
                * if y > 200 { 0.2 } else { 1.0 };
            let c = |k: usize| ((paper[k] * (1.0 - a) + ink[k] * a) * light) as u8;
            image::Rgb([c(0), c(1), c(2)])
        }));
        let want = digit_from_image(&clean).unwrap();
        assert!(
            want.iter().filter(|&&v| v > 0.5).count() > 60,
            "the ring is drawn"
        );
        for (what, img) in [("canvas", canvas), ("photo", photo)] {
            let got = digit_from_image(&img).unwrap();
            let d = apart(&got, &want);
            // Seen (2026-12-06): canvas 0.0002, photo 0.0033.
            println!("{what}: {d:.4} apart from the clean digit");
            assert!(d < 0.03, "{what}: {d} apart from the clean digit");
        }
    }

    /// A speck of dust beside the digit and a dark stripe along the border
    /// are not the digit; a stroke broken in two is.
    #[test]
    fn the_digit_is_the_main_group_of_strokes() {
        let stroke = |x: u32, y: u32| {
            (60..70).contains(&x) && ((20..45).contains(&y) || (48..75).contains(&y))
        };
        let with_noise = GrayImage::from_fn(140, 100, |x, y| {
            let speck = (110..112).contains(&x) && (20..22).contains(&y);
            let stripe = x < 6;
            Luma([if stroke(x, y) || speck || stripe {
                20
            } else {
                235
            }])
        });
        let plain =
            GrayImage::from_fn(140, 100, |x, y| Luma([if stroke(x, y) { 20 } else { 235 }]));
        let got = digit_from_image(&image::DynamicImage::ImageLuma8(with_noise)).unwrap();
        let want = digit_from_image(&image::DynamicImage::ImageLuma8(plain)).unwrap();
        assert!(apart(&got, &want) < 1e-6, "{}", apart(&got, &want));
        // Both halves of the stroke are in: 20 rows tall.
        let rows = (0..SIDE).filter(|r| want[r * SIDE..][..SIDE].iter().any(|&v| v > 0.5));
        assert!(rows.count() >= 19);
    }

    #[test]
    fn a_blank_image_is_refused() {
        let e = prepare(&Grey::from_pixel(30, 30, Luma([1.0])))
            .unwrap_err()
            .to_string();
        assert!(e.contains("blank"), "{e}");
    }
}
