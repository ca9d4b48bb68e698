//! Adam, with or without bias correction (the notebook used none).

use multiversion::multiversion;
use rayon::prelude::*;

/// Elements per parallel chunk: an update is cheap, so chunks are large.
const CHUNK: usize = 1 << 14;

/// Adam's state: first and second moments of every parameter.
#[derive(Clone, Debug)]
pub struct Adam {
    pub v: Vec<f32>,
    pub s: Vec<f32>,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub bias_correction: bool,
    /// Steps taken so far.
    pub t: u64,
}

impl Adam {
    pub fn new(len: usize, beta1: f32, beta2: f32, eps: f32, bias_correction: bool) -> Adam {
        Adam {
            v: vec![0.0; len],
            s: vec![0.0; len],
            beta1,
            beta2,
            eps,
            bias_correction,
            t: 0,
        }
    }

    /// `v = b1 v + (1-b1) g; s = b2 s + (1-b2) g²; p -= lr v̂ / (sqrt(ŝ) + eps)`,
    /// where v̂ = v and ŝ = s without bias correction, else divided by (1 - bᵗ).
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], lr: f32) {
        self.t += 1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let (c1, c2) = if self.bias_correction {
            (
                1.0 - (b1 as f64).powi(self.t as i32),
                1.0 - (b2 as f64).powi(self.t as i32),
            )
        } else {
            (1.0, 1.0)
        };
        // lr·v/c1 / (sqrt(s/c2) + eps), with the corrections folded into two scalars.
        let step = (lr as f64 / c1) as f32;
        let inv_sqrt_c2 = (1.0 / c2.sqrt()) as f32;
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(
                self.v
                    .par_chunks_mut(CHUNK)
                    .zip(self.s.par_chunks_mut(CHUNK)),
            )
            .for_each(|((p, g), (v, s))| update(p, g, v, s, [b1, b2, eps, step, inv_sqrt_c2]));
    }
}

#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn update(p: &mut [f32], g: &[f32], v: &mut [f32], s: &mut [f32], k: [f32; 5]) {
    let [b1, b2, eps, step, inv_sqrt_c2] = k;
    for (((p, &g), v), s) in p.iter_mut().zip(g).zip(v).zip(s) {
        *v = b1 * *v + (1.0 - b1) * g;
        *s = b2 * *s + (1.0 - b2) * g * g;
        *p -= step * *v / (s.sqrt() * inv_sqrt_c2 + eps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps worked by hand in f64 from the formulas in SPEC.md.
    #[test]
    fn known_answer_without_bias_correction() {
        let mut a = Adam::new(2, 0.9, 0.999, 1e-7, false);
        let mut p = vec![1.0f32, -2.0];
        a.step(&mut p, &[0.5, -0.1], 0.001);
        // v = 0.05, s = 0.00025 -> p -= 0.001 * 0.05 / (0.0158113883 + 1e-7)
        let want0 = 1.0 - 0.001 * 0.05 / (0.000_25f64.sqrt() + 1e-7);
        let want1 = -2.0 + 0.001 * 0.01 / (0.000_01f64.sqrt() + 1e-7);
        assert!((p[0] as f64 - want0).abs() < 1e-7, "{} vs {want0}", p[0]);
        assert!((p[1] as f64 - want1).abs() < 1e-7, "{} vs {want1}", p[1]);
        a.step(&mut p, &[0.5, -0.1], 0.001);
        let (v, s) = (0.9 * 0.05 + 0.1 * 0.5, 0.999 * 0.000_25 + 0.001 * 0.25);
        let want0 = want0 - 0.001 * v / (f64::sqrt(s) + 1e-7);
        assert!((p[0] as f64 - want0).abs() < 1e-7, "{} vs {want0}", p[0]);
    }

    #[test]
    fn known_answer_with_bias_correction() {
        // With correction the first step is lr * sign(g) (up to eps), whatever |g|.
        let mut a = Adam::new(3, 0.9, 0.999, 1e-8, true);
        let mut p = vec![0.0f32; 3];
        a.step(&mut p, &[3.0, -0.02, 0.0], 0.01);
        assert!(
            (p[0] + 0.01).abs() < 1e-6 && (p[1] - 0.01).abs() < 1e-6 && p[2] == 0.0,
            "{p:?}"
        );
        // Second step, same gradient: v̂ = g, ŝ = g², so again lr * sign(g).
        a.step(&mut p, &[3.0, -0.02, 0.0], 0.01);
        assert!(
            (p[0] + 0.02).abs() < 1e-6 && (p[1] - 0.02).abs() < 1e-6,
            "{p:?}"
        );
    }
}
