//! The CPU's peak of float32 multiply-adds, measured: the yardstick that
//! `scratchnet bench` states each workload's speed against. A loop of
//! independent fused multiply-adds in the widest vectors of the kernel
//! family chosen ([`Kernels::current`]), with more chains than the FMA
//! latency times two units needs; the portable family, which has no FMA,
//! does a multiply and an add for the same two FLOP.

use super::kernels::{Isa, Kernels};
use std::hint::black_box;
use std::time::Instant;

/// Independent accumulators, each a vector register.
const CHAINS: usize = 12;
/// Multiply-adds per chain in one pass.
const ROUNDS: usize = 4096;
/// The multiply-add's factor and term: the values stay near 1.
const M: f32 = 0.999_999;
const A: f32 = 1e-7;

/// GFLOP/s of multiply-adds on this thread, over about `seconds`.
pub fn multiply_add_peak(seconds: f64) -> f64 {
    let per_pass = (ROUNDS * CHAINS * lanes() * 2) as f64;
    let (start, mut passes) = (Instant::now(), 0u64);
    loop {
        black_box(pass());
        passes += 1;
        let t = start.elapsed().as_secs_f64();
        if t >= seconds {
            return passes as f64 * per_pass / t / 1e9;
        }
    }
}

/// The vector width, in lanes, that [`multiply_add_peak`] uses here.
pub fn lanes() -> usize {
    match Kernels::current().isa() {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Baseline => 4,
    }
}

/// One pass: `ROUNDS` times `x -> m·x + a` on every lane of every chain,
/// from 1; the sum of the lanes.
fn pass() -> f32 {
    match Kernels::current().isa() {
        // SAFETY: `current` names only a family whose instruction set this
        // CPU has (`Kernels::available`).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::avx512() },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::avx2() },
        _ => portable(),
    }
}

/// Multiply, then add: no FMA unit assumed.
fn portable() -> f32 {
    let (m, a) = (black_box(M), black_box(A));
    let mut acc = [[1.0f32; 4]; CHAINS];
    for _ in 0..ROUNDS {
        for v in acc.iter_mut() {
            for x in v.iter_mut() {
                *x = *x * m + a;
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{black_box, A, CHAINS, M, ROUNDS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) fn avx512() -> f32 {
        let (m, a) = (_mm512_set1_ps(black_box(M)), _mm512_set1_ps(black_box(A)));
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        for _ in 0..ROUNDS {
            for v in acc.iter_mut() {
                *v = _mm512_fmadd_ps(*v, m, a);
            }
        }
        acc.iter().map(|&v| _mm512_reduce_add_ps(v)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2() -> f32 {
        let (m, a) = (_mm256_set1_ps(black_box(M)), _mm256_set1_ps(black_box(A)));
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        for _ in 0..ROUNDS {
            for v in acc.iter_mut() {
                *v = _mm256_fmadd_ps(*v, m, a);
            }
        }
        acc.iter()
            .map(|&v| {
                let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
                let s = _mm_hadd_ps(s, s);
                _mm_cvtss_f32(_mm_hadd_ps(s, s))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass does the multiply-adds it counts, on every lane: each lane
    /// ends at the closed form of `x -> m·x + a` applied `ROUNDS` times
    /// from 1, `mⁿ + a(1 - mⁿ)/(1 - m)`.
    #[test]
    fn every_lane_of_a_pass_does_its_multiply_adds() {
        let (m, a, n) = (M as f64, A as f64, ROUNDS as i32);
        let lane = m.powi(n) + a * (1.0 - m.powi(n)) / (1.0 - m);
        let got = pass() as f64 / (CHAINS * lanes()) as f64;
        assert!((got - lane).abs() < 1e-3 * lane, "{got} against {lane}");
        let peak = multiply_add_peak(0.01);
        assert!(peak.is_finite() && peak > 0.0, "{peak}");
    }
}
