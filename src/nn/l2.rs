//! The notebook's L2 regularisation: per-weight-matrix factors, biases free.

use super::params::Layout;

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

/// Adds the notebook's gradient `l_i · W_i / n` to each weight gradient, with
/// `n` the training-set size (the batch size in the notebook's full-batch
/// runs; the same strength per epoch in minibatch runs). Note it is not the
/// derivative of [`penalty`], which would divide by the matrix size.
pub fn add_grad(grads: &mut [f32], params: &[f32], layout: &Layout, factors: &[f32], n: usize) {
    for (w, &l) in layout.weights.iter().zip(factors) {
        let k = l / n as f32;
        grads[w.range.clone()]
            .iter_mut()
            .zip(&params[w.range.clone()])
            .for_each(|(g, &p)| *g += k * p);
    }
}
