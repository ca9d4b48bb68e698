//! Adam, with or without bias correction (the notebook used none).

use super::{for_each_piece, Decay, CHUNK};
use crate::tensor::kernels::per_isa;
use rayon::prelude::*;

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
    /// where v̂ = v and ŝ = s without bias correction, else divided by (1 - bᵗ),
    /// and `g` includes `decay`. False if some parameter is not finite after.
    pub fn step(&mut self, params: &mut [f32], grads: &[f32], decay: &[Decay], lr: f32) -> bool {
        self.t += 1;
        let (b1, b2, eps) = (self.beta1, self.beta2, self.eps);
        let [step, inv_sqrt_c2] = self.scalars(lr);
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(
                self.v
                    .par_chunks_mut(CHUNK)
                    .zip(self.s.par_chunks_mut(CHUNK)),
            )
            .enumerate()
            .map(|(i, ((p, g), (v, s)))| {
                let mut finite = true;
                for_each_piece(i * CHUNK, p.len(), decay, |r, k| {
                    let consts = [b1, b2, eps, step, inv_sqrt_c2, k];
                    let (p, g) = (&mut p[r.clone()], &g[r.clone()]);
                    finite &= update(p, g, &mut v[r.clone()], &mut s[r], consts);
                });
                finite
            })
            .reduce(|| true, |a, b| a & b)
    }
}

impl Adam {
    /// The update's two scalars at step `t` (the steps taken, this one
    /// included): `lr / c1` and `1 / sqrt(c2)`, so that
    /// `lr·v/c1 / (sqrt(s/c2) + eps)` is `step·v / (sqrt(s)·inv_sqrt_c2 + eps)`,
    /// where `c = 1 - βᵗ` with bias correction and 1 without. The CUDA
    /// kernel takes the same two.
    pub fn scalars(&self, lr: f32) -> [f32; 2] {
        let (c1, c2) = if self.bias_correction {
            (
                1.0 - (self.beta1 as f64).powi(self.t as i32),
                1.0 - (self.beta2 as f64).powi(self.t as i32),
            )
        } else {
            (1.0, 1.0)
        };
        [(lr as f64 / c1) as f32, (1.0 / c2.sqrt()) as f32]
    }
}

per_isa! {
    /// One piece of [`Adam::step`]; true if every updated parameter is finite
    /// (Σ p·0 is 0 unless some p is infinite or NaN, summed in 16 lanes).
    fn update(p: &mut [f32], g: &[f32], v: &mut [f32], s: &mut [f32], c: [f32; 6]) -> bool {
        let [b1, b2, eps, step, inv_sqrt_c2, k] = c;
        let one = |p: &mut f32, g: f32, v: &mut f32, s: &mut f32| {
            let g = g + k * *p;
            *v = b1 * *v + (1.0 - b1) * g;
            *s = b2 * *s + (1.0 - b2) * g * g;
            *p -= step * *v / (s.sqrt() * inv_sqrt_c2 + eps);
            *p * 0.0
        };
        // Whole groups of 16 (fixed-size, so they vectorise), then the rest.
        let whole = p.len() / 16 * 16;
        let (p, p_rest) = p.split_at_mut(whole);
        let (v, v_rest) = v.split_at_mut(whole);
        let (s, s_rest) = s.split_at_mut(whole);
        let mut lanes = [0.0f32; 16];
        let groups = p.chunks_exact_mut(16).zip(g.chunks_exact(16));
        for ((p, g), (v, s)) in groups.zip(v.chunks_exact_mut(16).zip(s.chunks_exact_mut(16))) {
            for j in 0..16 {
                lanes[j] += one(&mut p[j], g[j], &mut v[j], &mut s[j]);
            }
        }
        let mut rest = 0.0;
        for (j, p) in p_rest.iter_mut().enumerate() {
            rest += one(p, g[whole + j], &mut v_rest[j], &mut s_rest[j]);
        }
        lanes.iter().sum::<f32>() + rest == 0.0
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
        assert!(a.step(&mut p, &[0.5, -0.1], &[], 0.001));
        // v = 0.05, s = 0.00025 -> p -= 0.001 * 0.05 / (0.0158113883 + 1e-7)
        let want0 = 1.0 - 0.001 * 0.05 / (0.000_25f64.sqrt() + 1e-7);
        let want1 = -2.0 + 0.001 * 0.01 / (0.000_01f64.sqrt() + 1e-7);
        assert!((p[0] as f64 - want0).abs() < 1e-7, "{} vs {want0}", p[0]);
        assert!((p[1] as f64 - want1).abs() < 1e-7, "{} vs {want1}", p[1]);
        assert!(a.step(&mut p, &[0.5, -0.1], &[], 0.001));
        let (v, s) = (0.9 * 0.05 + 0.1 * 0.5, 0.999 * 0.000_25 + 0.001 * 0.25);
        let want0 = want0 - 0.001 * v / (f64::sqrt(s) + 1e-7);
        assert!((p[0] as f64 - want0).abs() < 1e-7, "{} vs {want0}", p[0]);
    }

    #[test]
    fn known_answer_with_bias_correction() {
        // With correction the first step is lr * sign(g) (up to eps), whatever |g|.
        let mut a = Adam::new(3, 0.9, 0.999, 1e-8, true);
        let mut p = vec![0.0f32; 3];
        assert!(a.step(&mut p, &[3.0, -0.02, 0.0], &[], 0.01));
        assert!(
            (p[0] + 0.01).abs() < 1e-6 && (p[1] - 0.01).abs() < 1e-6 && p[2] == 0.0,
            "{p:?}"
        );
        // Second step, same gradient: v̂ = g, ŝ = g², so again lr * sign(g).
        assert!(a.step(&mut p, &[3.0, -0.02, 0.0], &[], 0.01));
        assert!(
            (p[0] + 0.02).abs() < 1e-6 && (p[1] - 0.02).abs() < 1e-6,
            "{p:?}"
        );
    }
}
