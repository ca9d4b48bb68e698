//! Stochastic gradient descent with momentum.

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

    /// `u = μ u + g; p -= lr u` (PyTorch's form).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        let mu = self.momentum;
        for ((p, &g), u) in params.iter_mut().zip(grads).zip(&mut self.velocity) {
            *u = mu * *u + g;
            *p -= lr * *u;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer_with_momentum() {
        let mut s = Sgd::new(1, 0.9);
        let mut p = vec![1.0f32];
        s.step(&mut p, &[0.5], 0.1); // u = 0.5, p = 0.95
        s.step(&mut p, &[0.5], 0.1); // u = 0.95, p = 0.855
        assert!((p[0] - 0.855).abs() < 1e-6, "{}", p[0]);
    }
}
