//! The notebook's L2 regularisation: per-weight-matrix factors, biases free.

use super::layout::Layout;
use crate::optim::Decay;

/// The term added to J: `Σ l_i · mean(W_i²) / 2`, as the notebook reports it.
pub fn penalty(params: &[f32], layout: &Layout, factors: &[f32]) -> f64 {
    layout
        .weights
        .iter()
        .zip(factors)
        .map(|(w, &l)| {
            let v = &params[w.range.clone()];
            l as f64 * v.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / v.len() as f64
        })
        .sum::<f64>()
        / 2.0
}

/// The notebook's gradient term `l_i · W_i / n`, as `(range of W_i, l_i / n)`
/// for each weight tensor, written into `out` (reused between steps); the
/// optimiser adds it to the gradient in its own pass ([`crate::optim::Decay`]).
/// `n` is the training-set size (the batch size in the notebook's full-batch
/// runs; the same strength per epoch in minibatch runs). Note it is not the
/// derivative of [`penalty`], which would divide by the matrix size.
pub fn decay(layout: &Layout, factors: &[f32], n: usize, out: &mut Vec<Decay>) {
    out.clear();
    out.extend(layout.weights.iter().zip(factors).map(|(w, &l)| Decay {
        range: w.range.clone(),
        k: l / n as f32,
    }));
}
