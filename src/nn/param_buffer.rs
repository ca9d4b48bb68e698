//! The parameter buffer: every parameter of a network in one buffer on a
//! cache line, laid out by a [`Layout`], going in and out as the notebook's
//! `out x in` rows whatever the first layer's storage.

use super::first_layer::{FirstLayer, InputKind};
use super::params::Layout;
use crate::tensor::Aligned;

/// A network's parameters, laid out by a [`Layout`], in one buffer on a
/// cache line. They go in and out as the notebook's `out x in` rows
/// ([`Params::from_rows`], [`Params::rows`]); inside, the first layer's
/// weight may be stored as its input's product reads it fastest
/// ([`FirstLayer`]). Each tensor's range still holds exactly that tensor's
/// values, so elementwise passes over the buffer (the optimiser, L2) need
/// not know: the buffer is the parameters in their storage order, and
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

    /// How the first layer's weight is stored, and its product.
    pub fn first(&self) -> &FirstLayer {
        &self.first
    }
}

impl std::ops::Deref for Params {
    type Target = [f32];
    /// The parameters in their storage order.
    fn deref(&self) -> &[f32] {
        &self.data
    }
}

impl std::ops::DerefMut for Params {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.data
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
            let w0 = layout.layers[0].w.clone();
            assert_eq!(p[w0.end..], rows[w0.end..], "only layer 0 may move");
            for w in &layout.weights[..2] {
                let mut a = p[w.range.clone()].to_vec();
                a.sort_by(f32::total_cmp);
                assert_eq!(a, rows[w.range.clone()], "{kind:?} {}", w.name);
            }
            assert_eq!(p[..] != rows[..], kind == InputKind::Sparse, "{kind:?}");
        }
    }
}
