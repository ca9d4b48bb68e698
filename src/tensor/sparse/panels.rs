//! A dense matrix stored as column panels, the form in which the sparse
//! kernels read their dense operand.

use crate::tensor::transpose::{copy_short, transpose};
use crate::tensor::Aligned;
use rayon::prelude::*;
use std::ops::Range;

/// Output columns per pass: one AVX-512 register.
pub const TILE: usize = 16;

/// A dense `rows x cols` matrix stored as column panels: panel `t` holds
/// columns `t*TILE..(t+1)*TILE` of every row contiguously (zero-padded), so
/// one panel (50 KB for MNIST's first layer) is contiguous. With plain
/// row-major storage the 768-byte row stride mapped a tile onto a quarter of
/// L1's sets, and the kernel ran no faster than the dense product. The data
/// starts on a cache line, so each panel row is one line (see [`Aligned`]).
#[derive(Clone, Debug, Default)]
pub struct Panels {
    rows: usize,
    cols: usize,
    data: Aligned,
}

/// A borrowed matrix in [`Panels`] layout, as the kernels read it: from a
/// [`Panels`], or straight from a first-layer weight stored this way (see
/// [`crate::nn::first_layer`]).
#[derive(Clone, Copy, Debug)]
pub struct PanelView<'a> {
    rows: usize,
    cols: usize,
    data: &'a [f32],
}

/// Floats a `rows x cols` matrix takes in panels (the last one padded).
pub fn panels_len(rows: usize, cols: usize) -> usize {
    cols.div_ceil(TILE) * rows * TILE
}

fn assert_panels(buf: &[f32], rows: usize, cols: usize) {
    assert_eq!(
        buf.len(),
        panels_len(rows, cols),
        "not {rows} x {cols} in panels"
    );
}

impl Panels {
    /// Repacks `rows x cols` from `src`, whose row `r` starts at
    /// `r * stride` (a column range of a wider matrix), reusing the buffer.
    pub fn pack(&mut self, src: &[f32], rows: usize, cols: usize, stride: usize) {
        self.resize(rows, cols);
        pack_into(&mut self.data, src, rows, cols, stride);
    }

    /// Packs the transpose of row-major `src` (`cols x rows`), as a layer's
    /// `[out, in]` weight becomes the `[in, out]` operand; panels in parallel.
    pub fn pack_transposed(&mut self, src: &[f32], rows: usize, cols: usize) {
        self.resize(rows, cols);
        pack_transposed_into(&mut self.data, src, rows, cols);
    }

    /// Sizes the buffer; padding columns are zeroed when the shape changes
    /// and never written after.
    fn resize(&mut self, rows: usize, cols: usize) {
        if (rows, cols) != (self.rows, self.cols) || self.data.is_empty() {
            self.rows = rows;
            self.cols = cols;
            self.data.resize(0);
            self.data.resize(panels_len(rows, cols));
        }
    }

    pub fn view(&self) -> PanelView<'_> {
        PanelView::new(&self.data, self.rows, self.cols)
    }
}

/// [`Panels::pack`] into `dst` (`panels_len(rows, cols)` floats; padding
/// columns are left as they are).
fn pack_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize, stride: usize) {
    assert_panels(dst, rows, cols);
    if rows == 0 {
        return;
    }
    for (t, panel) in dst.chunks_exact_mut(rows * TILE).enumerate() {
        let (c0, w) = (t * TILE, TILE.min(cols - t * TILE));
        for (r, dst) in panel.chunks_exact_mut(TILE).enumerate() {
            let at = r * stride + c0;
            copy_short(&mut dst[..w], &src[at..at + w]);
        }
    }
}

/// [`Panels::pack_transposed`] into `dst` (`panels_len(rows, cols)`
/// floats; padding columns are left as they are).
pub fn pack_transposed_into(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert_panels(dst, rows, cols);
    assert_eq!(src.len(), rows * cols, "source is not {cols} x {rows}");
    if rows == 0 {
        return;
    }
    dst.par_chunks_mut(rows * TILE)
        .enumerate()
        .for_each(|(t, panel)| {
            let (c0, w) = (t * TILE, TILE.min(cols - t * TILE));
            transpose(panel, TILE, &src[c0 * rows..(c0 + w) * rows], rows, w, rows);
        });
}

/// The inverse of [`pack_transposed_into`]: row-major `cols x rows` into
/// `dst` from `rows x cols` in panels.
pub fn unpack_transposed(dst: &mut [f32], src: &[f32], rows: usize, cols: usize) {
    assert_panels(src, rows, cols);
    assert_eq!(dst.len(), rows * cols, "destination is not {cols} x {rows}");
    if rows == 0 {
        return;
    }
    for (t, panel) in src.chunks_exact(rows * TILE).enumerate() {
        let (c0, w) = (t * TILE, TILE.min(cols - t * TILE));
        transpose(
            &mut dst[c0 * rows..(c0 + w) * rows],
            rows,
            panel,
            TILE,
            rows,
            w,
        );
    }
}

impl<'a> PanelView<'a> {
    /// `rows x cols` in panels in `data` ([`panels_len`] floats).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> PanelView<'a> {
        assert_panels(data, rows, cols);
        PanelView { rows, cols, data }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Columns `range`, which starts on a panel.
    pub fn columns(&self, range: Range<usize>) -> PanelView<'a> {
        assert!(
            range.start.is_multiple_of(TILE) && range.start <= range.end && range.end <= self.cols,
            "columns {range:?} of {} in panels of {TILE}",
            self.cols
        );
        let p = self.rows * TILE;
        PanelView {
            rows: self.rows,
            cols: range.len(),
            data: &self.data[range.start / TILE * p..range.end.div_ceil(TILE) * p],
        }
    }

    pub(crate) fn panel(&self, t: usize) -> &'a [f32] {
        &self.data[t * self.rows * TILE..(t + 1) * self.rows * TILE]
    }
}
