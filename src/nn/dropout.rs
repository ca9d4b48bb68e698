//! Inverted dropout masks, drawn from a counter-based generator.
//!
//! A mask value is a pure function of (seed, step, layer, index): masks do not
//! depend on the thread count or on the order rows are processed, and a
//! resumed run draws exactly the masks an uninterrupted one would.

use super::layout::LayerLayout;
use crate::tensor::kernels::per_isa;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// Whether a mask value is shared by the whole batch or drawn per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DropoutMode {
    /// The notebook's form: one value per unit per iteration (`rand(units, 1) < keep`).
    Unit,
    /// The usual form: one value per unit and per sample.
    Sample,
}

/// SplitMix64's finaliser: a strong 64-bit mixer, the core of the generator.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A key for one stream of draws (e.g. one layer's mask at one step).
pub fn stream_key(seed: u64, step: u64, stream: u64) -> u64 {
    mix64(mix64(mix64(seed) ^ step) ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03))
}

/// Uniform in [0, 1) for draw `i` of stream `key`.
#[inline(always)]
pub fn uniform(key: u64, i: u64) -> f32 {
    (mix64(key ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// Fills `scale` (row-major rows of `width`, the first being row `first_row`
/// of the whole mask) with `1/keep` where a unit is kept and 0 where it is
/// dropped, in columns `cols`. For [`DropoutMode::Unit`] there is one row.
pub fn fill_mask(
    scale: &mut [f32],
    first_row: usize,
    width: usize,
    cols: std::ops::Range<usize>,
    keep: f32,
    key: u64,
) {
    for (r, row) in scale.chunks_exact_mut(width).enumerate() {
        let row = &mut row[cols.clone()];
        if keep >= 1.0 {
            row.fill(1.0);
        } else {
            let first = ((first_row + r) * width + cols.start) as u64;
            fill_draws(row, first, keep, key);
        }
    }
}

per_isa! {
    /// `1/keep` or 0 for draws `first..` of stream `key`. The loop vectorises
    /// where the CPU multiplies 64-bit lanes (AVX-512DQ): scalar, drawing a
    /// minibatch's masks took longer than its first layer's product
    /// (docs/PERFORMANCE.md, "Dropout masks vectorised"). The same integer and exact
    /// float operations either way, so the same masks.
    fn fill_draws(row: &mut [f32], first: u64, keep: f32, key: u64) {
        let kept = 1.0 / keep;
        for (j, v) in row.iter_mut().enumerate() {
            *v = if uniform(key, first + j as u64) < keep {
                kept
            } else {
                0.0
            };
        }
    }
}

/// Dropout for one training step.
#[derive(Clone, Copy, Debug)]
pub struct Dropout<'a> {
    pub mode: DropoutMode,
    /// Keep probability of each hidden branch, in order.
    pub keeps: &'a [f32],
    /// Where this step's masks come from.
    pub draws: Draws<'a>,
}

/// Where a step's dropout masks come from.
#[derive(Clone, Copy, Debug)]
pub enum Draws<'a> {
    /// The counter-based generator, with this stream key (see [`stream_key`]).
    Key(u64),
    /// Given as data (a replay).
    Given(&'a GivenMasks),
}

/// Dropout masks of one step given as data: for each hidden layer,
/// `[rows, outputs]` of 1 (kept) or 0 (dropped), one row per sample (one
/// for the whole batch per unit).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GivenMasks {
    pub layers: Vec<Vec<u8>>,
}

/// The dropout scales (0 or 1/keep) that apply to a block of rows.
#[derive(Clone, Copy, Debug)]
pub enum MaskRows<'a> {
    /// No dropout (evaluation, or keep = 1 everywhere).
    Off,
    /// One row of scales shared by every sample (the notebook's per-unit mode).
    Unit(&'a [f32]),
    /// One row of scales per sample, for exactly this block's rows.
    Sample(&'a [f32]),
}

impl<'a> MaskRows<'a> {
    /// The scales of row `r` of the block, `width` wide.
    pub fn row(&self, r: usize, width: usize) -> Option<&'a [f32]> {
        match *self {
            MaskRows::Off => None,
            MaskRows::Unit(s) => Some(s),
            MaskRows::Sample(s) => Some(&s[r * width..(r + 1) * width]),
        }
    }
}

/// The dropout scales of every hidden layer for one pass (grown on the
/// first pass, then reused), and what the backward pass needs to know of
/// them.
#[derive(Debug)]
pub struct Masks {
    scales: Vec<Vec<f32>>,
    /// Which layers the last forward pass masked, and in which mode.
    masked: Vec<bool>,
    mode: Option<DropoutMode>,
}

/// A forward pass's dropout: the scales each block of rows gets.
#[derive(Debug)]
pub struct PassMasks<'a> {
    dropout: Option<Dropout<'a>>,
    masked: &'a [bool],
    /// Per unit: one row of scales per hidden layer, drawn before the pass.
    unit: Option<&'a [Vec<f32>]>,
}

impl Masks {
    /// Scales for `hidden` hidden layers.
    pub fn new(hidden: usize) -> Masks {
        Masks {
            scales: vec![Vec::new(); hidden],
            masked: vec![false; hidden],
            mode: None,
        }
    }

    /// Sets up the dropout of a forward pass over `rows` rows: marks the
    /// hidden layers that `dropout` masks and sizes their scales, draws
    /// those shared by all rows (per unit) now; returns the pass's masks,
    /// and, per sample, each hidden layer's scales with their row width,
    /// for the pass to cut into blocks of rows (a width of 0 where a layer
    /// is not masked).
    pub fn prepare<'a>(
        &'a mut self,
        hidden: &[LayerLayout],
        rows: usize,
        dropout: Option<&Dropout<'a>>,
    ) -> (PassMasks<'a>, Vec<(&'a mut [f32], usize)>) {
        self.mode = dropout.map(|d| d.mode);
        for (l, layer) in hidden.iter().enumerate() {
            self.masked[l] =
                dropout.is_some_and(|d| layer.branches.iter().any(|b| d.keeps[b.index] < 1.0));
            let Some(d) = dropout.filter(|_| self.masked[l]) else {
                continue;
            };
            let mask_rows = if d.mode == DropoutMode::Unit { 1 } else { rows };
            let scales = &mut self.scales[l];
            if scales.len() < mask_rows * layer.outputs {
                scales.resize(mask_rows * layer.outputs, 0.0);
            }
            if d.mode == DropoutMode::Unit {
                fill_layer(&mut scales[..layer.outputs], 0, l, layer, d);
            }
        }
        let Masks {
            scales,
            masked,
            mode,
        } = self;
        let pass = |unit| PassMasks {
            dropout: dropout.copied(),
            masked,
            unit,
        };
        match mode {
            Some(DropoutMode::Sample) => {
                let per_sample = scales
                    .iter_mut()
                    .zip(hidden)
                    .zip(masked.iter())
                    .map(|((s, layer), &on)| match on {
                        true => (&mut s[..rows * layer.outputs], layer.outputs),
                        false => (&mut s[..0], 0),
                    })
                    .collect();
                (pass(None), per_sample)
            }
            _ => (pass(Some(scales)), Vec::new()),
        }
    }

    /// Hidden layer `l`'s scales for rows `r`, as the last forward pass
    /// drew them (`width`: the layer's outputs).
    pub fn rows(&self, l: usize, width: usize, r: &Range<usize>) -> MaskRows<'_> {
        match (self.masked[l], self.mode) {
            (true, Some(DropoutMode::Unit)) => MaskRows::Unit(&self.scales[l][..width]),
            (true, Some(DropoutMode::Sample)) => {
                MaskRows::Sample(&self.scales[l][r.start * width..r.end * width])
            }
            _ => MaskRows::Off,
        }
    }
}

impl PassMasks<'_> {
    /// Layer `l`'s scales for a block of rows whose first is `first_row`
    /// (none for the output layer): shared by every row (per unit), or
    /// drawn now into `own`, the block's rows of the layer's per-sample
    /// scales.
    pub fn block<'b>(
        &'b self,
        l: usize,
        layer: &LayerLayout,
        first_row: usize,
        own: Option<&'b mut [f32]>,
    ) -> MaskRows<'b> {
        if !self.masked.get(l).copied().unwrap_or(false) {
            return MaskRows::Off;
        }
        match (self.unit, own, &self.dropout) {
            (Some(unit), _, _) => MaskRows::Unit(&unit[l][..layer.outputs]),
            (None, Some(own), Some(d)) => {
                fill_layer(own, first_row, l, layer, d);
                MaskRows::Sample(own)
            }
            _ => unreachable!("per-sample scales come with the pass's dropout"),
        }
    }
}

/// Draws hidden layer `l`'s scales for `scale`'s rows, the first being row
/// `first_row` of the batch (or copies them, where given).
fn fill_layer(scale: &mut [f32], first_row: usize, l: usize, layer: &LayerLayout, d: &Dropout<'_>) {
    let width = layer.outputs;
    for b in &layer.branches {
        let keep = d.keeps[b.index];
        match d.draws {
            Draws::Key(key) => {
                let key = mix64(key ^ l as u64);
                fill_mask(scale, first_row, width, b.cols.clone(), keep, key)
            }
            Draws::Given(given) => {
                let kept = &given.layers[l][first_row * width..][..scale.len()];
                for (row, kept) in scale.chunks_exact_mut(width).zip(kept.chunks_exact(width)) {
                    for c in b.cols.clone() {
                        row[c] = if kept[c] != 0 { 1.0 / keep } else { 0.0 };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_about_keep_and_scales_by_its_inverse() {
        let mut s = vec![0.0; 100_000];
        fill_mask(&mut s, 0, 100, 0..100, 0.8, stream_key(1, 2, 3));
        let kept = s.iter().filter(|&&v| v > 0.0).count() as f64 / s.len() as f64;
        assert!((kept - 0.8).abs() < 0.01, "kept {kept}");
        assert!(s.iter().all(|&v| v == 0.0 || v == 1.25));
        let mut t = vec![0.0; 100_000];
        fill_mask(&mut t, 0, 100, 0..100, 0.8, stream_key(1, 2, 3));
        assert_eq!(s, t);
        fill_mask(&mut t, 0, 100, 0..100, 0.8, stream_key(1, 3, 3));
        assert_ne!(s, t);
        // Filling in two row blocks gives the same mask as one pass.
        let (top, bottom) = t.split_at_mut(30 * 100);
        fill_mask(top, 0, 100, 0..100, 0.8, stream_key(1, 2, 3));
        fill_mask(bottom, 30, 100, 0..100, 0.8, stream_key(1, 2, 3));
        assert_eq!(s, t);
    }

    #[test]
    fn vectorised_mask_is_the_definition() {
        // Rows of odd widths and column ranges, so vectors end part-filled.
        for (width, cols, first_row) in [(192, 0..192, 0), (37, 5..36, 3), (48, 16..48, 129)] {
            let key = stream_key(9, width as u64, 1);
            let mut s = vec![-1.0; 7 * width];
            fill_mask(&mut s, first_row, width, cols.clone(), 0.7, key);
            for (r, row) in s.chunks_exact(width).enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    let want = if !cols.contains(&c) {
                        -1.0
                    } else if uniform(key, ((first_row + r) * width + c) as u64) < 0.7 {
                        1.0 / 0.7
                    } else {
                        0.0
                    };
                    assert_eq!(v, want, "row {r} column {c} of width {width}");
                }
            }
        }
    }

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let key = stream_key(7, 0, 0);
        let mut hist = [0usize; 10];
        for i in 0..100_000 {
            let u = uniform(key, i);
            assert!((0.0..1.0).contains(&u));
            hist[(u * 10.0) as usize] += 1;
        }
        assert!(
            hist.iter().all(|&h| (9_500..10_500).contains(&h)),
            "{hist:?}"
        );
    }
}
