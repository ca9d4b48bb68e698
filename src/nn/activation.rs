//! Bias + activation + dropout, fused into one pass over a layer's output, and
//! its backward. Derivatives are taken from the output (relu' = a > 0,
//! tanh' = 1 - y²), so the forward pass keeps only A, not Z.

use super::arch::Activation;
use super::dropout::MaskRows;
use super::layout::BranchSlot;
use crate::tensor::kernels::per_isa;

/// tanh by Eigen's rational approximation (accurate to a few ulp in f32):
/// unlike libm's it vectorises, and the network evaluates millions per step.
#[inline(always)]
pub fn fast_tanh(x: f32) -> f32 {
    const CLAMP: f32 = 7.905_311;
    let x = x.clamp(-CLAMP, CLAMP);
    let x2 = x * x;
    let mut p = -2.760_768_5e-16f32;
    p = p * x2 + 2.000_188e-13;
    p = p * x2 - 8.604_672e-11;
    p = p * x2 + 5.122_297e-8;
    p = p * x2 + 1.485_722_4e-5;
    p = p * x2 + 6.372_619_3e-4;
    p = p * x2 + 4.893_524_6e-3;
    p *= x;
    let mut q = 1.198_258_4e-6f32;
    q = q * x2 + 1.185_347e-4;
    q = q * x2 + 2.268_434_7e-3;
    q = q * x2 + 4.893_525e-3;
    p / q
}

per_isa! {
    /// `z[r, c] = act(z[r, c] + bias[c]) * scale[r, c]` for a block of rows of
    /// `width` columns; branches pick the activation of their columns.
    pub fn forward_rows(
        z: &mut [f32],
        width: usize,
        bias: &[f32],
        branches: &[BranchSlot],
        mask: MaskRows<'_>,
    ) {
        for (r, row) in z.chunks_exact_mut(width).enumerate() {
            let scale = mask.row(r, width);
            for br in branches {
                let cols = br.cols.clone();
                let (zs, bs) = (&mut row[cols.clone()], &bias[cols.clone()]);
                match br.act {
                    None => zs.iter_mut().zip(bs).for_each(|(z, b)| *z += b),
                    Some(Activation::Relu) => zs
                        .iter_mut()
                        .zip(bs)
                        .for_each(|(z, b)| *z = (*z + b).max(0.0)),
                    Some(Activation::Tanh) => zs
                        .iter_mut()
                        .zip(bs)
                        .for_each(|(z, b)| *z = fast_tanh(*z + b)),
                }
                if let Some(s) = scale {
                    zs.iter_mut().zip(&s[cols]).for_each(|(z, s)| *z *= s);
                }
            }
        }
    }
}

per_isa! {
    /// Turns dA into dZ in place for a block of rows, given that block's outputs
    /// `a` (after dropout) and the branches' keep probabilities.
    ///
    /// With s = mask/keep and a = act(z)·s: relu gives dz = da·s where a > 0;
    /// tanh gives dz = da·s·(1 - (a/s)²) = da·(s - a²·keep), which is 0 when s is.
    pub fn backward_rows(
        dz: &mut [f32],
        a: &[f32],
        width: usize,
        branches: &[BranchSlot],
        keeps: &[f32],
        mask: MaskRows<'_>,
    ) {
        for (r, (drow, arow)) in dz
            .chunks_exact_mut(width)
            .zip(a.chunks_exact(width))
            .enumerate()
        {
            let scale = mask.row(r, width);
            for br in branches {
                let cols = br.cols.clone();
                let (ds, as_) = (&mut drow[cols.clone()], &arow[cols.clone()]);
                let keep = if scale.is_some() {
                    keeps[br.index]
                } else {
                    1.0
                };
                match (br.act, scale) {
                    (None, _) => {}
                    (Some(Activation::Relu), None) => ds
                        .iter_mut()
                        .zip(as_)
                        .for_each(|(d, &a)| *d = if a > 0.0 { *d } else { 0.0 }),
                    (Some(Activation::Relu), Some(s)) => ds
                        .iter_mut()
                        .zip(as_)
                        .zip(&s[cols])
                        .for_each(|((d, &a), &s)| *d = if a > 0.0 { *d * s } else { 0.0 }),
                    (Some(Activation::Tanh), None) => {
                        ds.iter_mut().zip(as_).for_each(|(d, &a)| *d *= 1.0 - a * a)
                    }
                    (Some(Activation::Tanh), Some(s)) => ds
                        .iter_mut()
                        .zip(as_)
                        .zip(&s[cols])
                        .for_each(|((d, &a), &s)| *d *= s - a * a * keep),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_tanh_matches_f64_tanh() {
        let mut worst = 0.0f64;
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((fast_tanh(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst < 5e-7, "worst abs error {worst}");
        assert_eq!(fast_tanh(100.0), 1.0);
        assert_eq!(fast_tanh(-100.0), -1.0);
        assert_eq!(fast_tanh(0.0), 0.0);
    }
}
