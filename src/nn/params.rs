//! The parameter buffer: every parameter of a network in one buffer on a
//! cache line, laid out by a [`Layout`], going in and out as the notebook's
//! `out x in` rows whatever the first layer's storage.

use super::first_layer::{FirstLayer, Input, InputKind, Prepared, Scratch};
use super::layout::Layout;
use crate::tensor::Aligned;
use std::ops::Range;

/// A network's parameters, laid out by a [`Layout`], in one buffer on a
/// cache line. They go in and out as the notebook's `out x in` rows
/// ([`Params::from_rows`], [`Params::rows`]); inside, the first layer's
/// weight may be stored as its input's product reads it fastest
/// ([`FirstLayer`]). Each tensor's range still holds exactly that tensor's
/// values, so elementwise passes over the buffer (the optimiser, L2) need
/// not know: they read [`Params::in_storage_order`], and
/// [`Params::to_rows`] reorders any buffer shaped like it (a gradient, the
/// optimiser's state).
#[derive(Clone, Debug)]
pub struct Params {
    data: Aligned,
    first: FirstLayer,
}

impl Params {
    /// `rows` (every weight `out x in`, as files hold them), stored for
    /// input of `kind`.
    pub fn from_rows(layout: &Layout, rows: &[f32], kind: InputKind) -> Params {
        assert_eq!(rows.len(), layout.len, "parameters of another network");
        let first = FirstLayer::new(layout, kind);
        let mut data = Aligned::from(rows);
        first.from_rows(&mut data);
        Params { data, first }
    }

    /// The parameters, every weight `out x in`.
    pub fn rows(&self) -> Vec<f32> {
        self.to_rows(&self.data)
    }

    /// `buf`, shaped like the parameters and in their storage order (a
    /// gradient, the optimiser's state), in rows.
    pub fn to_rows(&self, buf: &[f32]) -> Vec<f32> {
        let mut rows = buf.to_vec();
        self.first.to_rows(&mut rows);
        rows
    }

    /// The inverse of [`Params::to_rows`].
    pub fn from_rows_like(&self, rows: &[f32]) -> Vec<f32> {
        let mut buf = rows.to_vec();
        self.first.from_rows(&mut buf);
        buf
    }

    /// How the first layer's weight is stored, and its weight gradient.
    pub fn first(&self) -> &FirstLayer {
        &self.first
    }

    /// `x` paired with the first layer's weight as its form reads it (see
    /// [`FirstLayer::prepare`]).
    pub fn prepare_first<'a>(&'a self, x: Input<'a>, scratch: &'a mut Scratch) -> Prepared<'a> {
        self.first.prepare(&self.data, x, scratch)
    }

    /// The tensor in `range`, in rows: any but the first layer's weight
    /// when that is stored in panels.
    pub fn tensor(&self, range: Range<usize>) -> &[f32] {
        let w1 = self.first.weight_range();
        assert!(
            !self.first.in_panels() || range.end <= w1.start || range.start >= w1.end,
            "the first layer's weight is stored in panels: read it through prepare_first"
        );
        &self.data[range]
    }

    /// Every parameter, in the storage order (the first layer's weight
    /// possibly in panels): for passes that treat each value alike.
    pub fn in_storage_order(&self) -> &[f32] {
        &self.data
    }

    /// [`Params::in_storage_order`], to update in place.
    pub fn in_storage_order_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Number of parameters.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::arch::{Arch, NOTEBOOK_ARCH};

    /// Rows go in and come out unchanged, whatever the storage; for the
    /// notebook's first layer in panels each branch's range holds exactly
    /// that branch's weights (what L2 reads), and other buffers shaped like
    /// the parameters are reordered alike.
    #[test]
    fn parameters_go_in_and_out_as_rows() {
        let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
        let rows: Vec<f32> = (0..layout.len).map(|i| i as f32).collect();
        for kind in [InputKind::Dense, InputKind::Sparse] {
            let p = Params::from_rows(&layout, &rows, kind);
            assert_eq!(p.rows(), rows, "{kind:?}");
            assert_eq!(p.to_rows(&p.from_rows_like(&rows)), rows, "{kind:?}");
            let stored = p.in_storage_order();
            let w0 = layout.layers[0].w.clone();
            assert_eq!(stored[w0.end..], rows[w0.end..], "only layer 0 may move");
            assert_eq!(p.tensor(w0.end..layout.len), &rows[w0.end..]);
            for w in &layout.weights[..2] {
                let mut a = stored[w.range.clone()].to_vec();
                a.sort_by(f32::total_cmp);
                assert_eq!(a, rows[w.range.clone()], "{kind:?} {}", w.name);
            }
            assert_eq!(stored != &rows[..], kind == InputKind::Sparse, "{kind:?}");
        }
    }
}
