//! The first layer's units as pictures: each unit's weights on the input
//! pixels drawn as an image, so one sees strokes emerge as a network learns
//! (the live page and TensorBoard both draw them).

use crate::nn::Layout;
use anyhow::{Context, Result};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

/// Tiles in a row of a grid.
const COLUMNS: usize = 16;
/// Pixels between tiles.
const GAP: usize = 1;

/// One branch of the first layer drawn as a grid of its units.
#[derive(Clone, Debug, PartialEq)]
pub struct Grid {
    /// The branch, as `relu 128` (its activation and width).
    pub label: String,
    pub width: usize,
    pub height: usize,
    /// The picture, RGB, row by row.
    pub rgb: Vec<u8>,
}

/// The units of each branch of the first layer, as grids of square tiles
/// (one tile a unit, its weights on the input pixels); `None` where the
/// inputs are not a square image. `params` hold every weight in rows.
pub fn grids(layout: &Layout, params: &[f32]) -> Option<Vec<Grid>> {
    let layer = layout.layers.first()?;
    let side = (layer.inputs as f64).sqrt() as usize;
    if side * side != layer.inputs {
        return None;
    }
    let w = &params[layer.w.clone()];
    let grids = layer.branches.iter().map(|b| {
        let units = b.cols.len();
        let act = b.act.map_or("linear", |a| a.name());
        let rows = units.div_ceil(COLUMNS);
        let cols = units.min(COLUMNS);
        let (width, height) = (cols * (side + GAP) - GAP, rows * (side + GAP) - GAP);
        let mut rgb = vec![255u8; width * height * 3];
        for (k, unit) in b.cols.clone().enumerate() {
            let weights = &w[unit * layer.inputs..(unit + 1) * layer.inputs];
            let (x0, y0) = ((k % COLUMNS) * (side + GAP), (k / COLUMNS) * (side + GAP));
            // Each unit on its own scale: its pattern, not its size, is what shows.
            let scale = weights.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (i, &v) in weights.iter().enumerate() {
                let at = ((y0 + i / side) * width + x0 + i % side) * 3;
                let t = if scale > 0.0 { v / scale } else { 0.0 };
                rgb[at..at + 3].copy_from_slice(&diverging(t));
            }
        }
        Grid {
            label: format!("{act} {units}"),
            width,
            height,
            rgb,
        }
    });
    Some(grids.collect())
}

/// A colour for `t` in -1..1: blue below zero, white at zero, red above.
pub fn diverging(t: f32) -> [u8; 3] {
    let t = t.clamp(-1.0, 1.0);
    let fade = |a: f32| (255.0 * (1.0 - a)).round() as u8;
    match t >= 0.0 {
        true => [255, fade(t), fade(t)],
        false => [fade(-t), fade(-t), 255],
    }
}

impl Grid {
    /// The picture as PNG bytes (compressed fast: it is made at each
    /// evaluation while a run trains).
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
            .write_image(
                &self.rgb,
                self.width as u32,
                self.height as u32,
                ExtendedColorType::Rgb8,
            )
            .context("cannot encode the first layer's picture as PNG")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::Arch;

    #[test]
    fn each_branch_gets_a_grid_and_each_unit_its_weights() {
        let arch = Arch::parse("relu:3|tanh:17,relu:4", 784, 10).unwrap();
        let layout = Layout::new(&arch);
        let mut params = vec![0.0f32; layout.len];
        // Unit 1 (the relu branch's second): +1 at pixel (row 2, col 5), -0.5 at (0, 0).
        let w = layout.layers[0].w.start;
        params[w + 784 + 2 * 28 + 5] = 1.0;
        params[w + 784] = -0.5;
        let g = grids(&layout, &params).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(
            (g[0].label.as_str(), g[0].width, g[0].height),
            ("relu 3", 86, 28)
        );
        assert_eq!(
            (g[1].label.as_str(), g[1].width, g[1].height),
            ("tanh 17", 463, 57)
        );
        let px = |g: &Grid, x: usize, y: usize| {
            let at = (y * g.width + x) * 3;
            [g.rgb[at], g.rgb[at + 1], g.rgb[at + 2]]
        };
        // The second tile starts at x = 29; its own largest weight is 1.
        assert_eq!(px(&g[0], 29 + 5, 2), [255, 0, 0]);
        assert_eq!(px(&g[0], 29, 0), [128, 128, 255]);
        assert_eq!(px(&g[0], 29 + 1, 0), [255, 255, 255]);
        // A unit of zeros is white; so is the gap between tiles.
        assert_eq!(px(&g[0], 0, 0), [255, 255, 255]);
        assert_eq!(px(&g[0], 28, 0), [255, 255, 255]);
        let png = g[1].png().unwrap();
        let back = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!((back.width(), back.height()), (463, 57));
        assert_eq!(back.into_raw(), g[1].rgb);
    }

    #[test]
    fn inputs_that_are_no_square_image_get_no_pictures() {
        let layout = Layout::new(&Arch::parse("relu:8", 10, 3).unwrap());
        assert_eq!(grids(&layout, &vec![0.0; layout.len]), None);
    }
}
