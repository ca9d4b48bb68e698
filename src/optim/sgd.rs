//! Stochastic gradient descent with momentum.

use super::{for_each_piece, Decay, CHUNK};
use rayon::prelude::*;

/// SGD state: the velocity of every parameter.
#[derive(Clone, Debug)]
pub struct Sgd {
    pub velocity: Vec<f32>,
    pub momentum: f32,
}

impl Sgd {
    pub fn new(len: usize, momentum: f32) -> Sgd {
        Sgd {
            velocity: vec![0.0; len],
            momentum,
        }
    }

    /// `u = μ u + g; p -= lr u` (PyTorch's form), `g` including `decay`.
    /// False if some parameter is not finite after.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], decay: &[Decay], lr: f32) -> bool {
        let mu = self.momentum;
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(self.velocity.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(i, ((p, g), u))| {
                let mut finite = true;
                for_each_piece(i * CHUNK, p.len(), decay, |r, k| {
                    let p = &mut p[r.clone()];
                    for ((p, &g), u) in p.iter_mut().zip(&g[r.clone()]).zip(&mut u[r]) {
                        *u = mu * *u + (g + k * *p);
                        *p -= lr * *u;
                    }
                    finite &= p.iter().all(|p| p.is_finite());
                });
                finite
            })
            .reduce(|| true, |a, b| a & b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_with_momentum() {
        let mut s = Sgd::new(1, 0.9);
        let mut p = vec![1.0f32];
        assert!(s.step(&mut p, &[0.5], &[], 0.1)); // u = 0.5, p = 0.95
        assert!(s.step(&mut p, &[0.5], &[], 0.1)); // u = 0.95, p = 0.855
        assert!((p[0] - 0.855).abs() < 1e-6, "{}", p[0]);
    }
}
