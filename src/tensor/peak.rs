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
/// The multiply-add's factor and term: the values move toward 0.1, and
/// stay normal floats.
const M: f32 = 0.999;
const A: f32 = 1e-4;

/// Chain `c`'s start: each its own, so that no two chains compute the same
/// values and none can be merged with another.
fn start(c: usize) -> f32 {
    1.0 + c as f32 / CHAINS as f32
}

/// GFLOP/s of multiply-adds on this thread, over about `seconds`.
pub fn multiply_add_peak(seconds: f64) -> f64 {
    let per_pass = (ROUNDS * CHAINS * lanes() * 2) as f64;
    let (began, mut passes) = (Instant::now(), 0u64);
    loop {
        black_box(pass());
        passes += 1;
        let t = began.elapsed().as_secs_f64();
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
/// from the chain's [`start`]; the sum of the lanes.
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
    let mut acc: [[f32; 4]; CHAINS] = std::array::from_fn(|c| [start(c); 4]);
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
    use super::{black_box, start, A, CHAINS, M, ROUNDS};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) fn avx512() -> f32 {
        let (m, a) = (_mm512_set1_ps(black_box(M)), _mm512_set1_ps(black_box(A)));
        let mut acc: [__m512; CHAINS] = std::array::from_fn(|c| _mm512_set1_ps(start(c)));
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
        let mut acc: [__m256; CHAINS] = std::array::from_fn(|c| _mm256_set1_ps(start(c)));
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

    /// A pass does every multiply-add it counts, on every lane of every
    /// chain: its sum is a scalar loop's with the same rounding (fused on
    /// the FMA families). One round missing moves it by about 1e-4 of
    /// itself; the order of the sum, by at most 2e-6 (seen: 1.8e-7).
    #[test]
    fn every_lane_of_a_pass_does_its_multiply_adds() {
        let fused = Kernels::current().isa() != Isa::Baseline;
        let lane = |c: usize| {
            let mut x = start(c);
            for _ in 0..ROUNDS {
                x = if fused { x.mul_add(M, A) } else { x * M + A };
            }
            x as f64
        };
        let want: f64 = (0..CHAINS).map(|c| lane(c) * lanes() as f64).sum();
        let got = pass() as f64;
        let off = (got - want).abs() / want;
        println!(
            "{}: {got} against {want}, {off:e} apart",
            Kernels::current().name()
        );
        assert!(off < 2e-6, "{got} against {want}");
        let peak = multiply_add_peak(0.01);
        assert!(peak.is_finite() && peak > 0.0, "{peak}");
    }
}
