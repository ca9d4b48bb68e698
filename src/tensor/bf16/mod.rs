//! Products on the CPU's matrix units: bfloat16 operands, float32 sums.
//!
//! AMX (`tdpbf16ps` on 16x16 tiles) and AVX512-BF16 (`vdpbf16ps` on
//! 16-lane vectors) multiply pairs of bfloat16 values and add them into
//! float32 accumulators, several times faster than float32 multiply-adds.
//! A bfloat16 keeps 8 bits of a float32's 24-bit mantissa, so a float32
//! splits exactly into three bfloat16 terms, `x = hi + mid + lo`
//! ([`split`]). MNIST's pixels (`k/256`) are exact in bfloat16, so the
//! first layer's `X·W` is `X·W_hi + X·W_mid + X·W_lo` summed into the same
//! float32 accumulators: float32's accuracy at a fraction of the cost;
//! fewer terms trade accuracy for speed (one term is plain bfloat16).
//!
//! The operands ([`layout`]): A `[rows, k]` as 16x32 tiles ([`Tiled`]),
//! each B `[k, n]` in the pairs of k both instructions read ([`Pairs`]),
//! the result float32 `[rows, n]`, row-major or in column panels of 16
//! ([`Out`]). [`product`] splits the result among threads, never a sum, so
//! it does not depend on the thread count.
//!
//! Which unit computes is chosen once per process
//! ([`super::kernels::Kernels`]): AMX where the CPU has it and the OS lets
//! the process use its tiles, else AVX512-BF16, else none (the float32
//! kernels of [`super::sparse`] and the matrix library do the work).

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod dpbf16;
pub mod layout;

pub use layout::{split, to_bf16, Out, Pairs, PairsView, Tiled, TiledView};

use std::sync::OnceLock;

/// A matrix unit that takes bfloat16 operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Amx,
    Avx512Bf16,
}

/// Whether `unit` can compute here: for AMX, the CPU has AMX-BF16 and the
/// OS has granted this process the tiles' state (asked once).
pub(crate) fn ready(unit: Unit) -> bool {
    match unit {
        Unit::Amx => amx_ready(),
        Unit::Avx512Bf16 => avx512bf16_ready(),
    }
}

fn amx_ready() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static READY: OnceLock<bool> = OnceLock::new();
        *READY.get_or_init(amx::request)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

fn avx512bf16_ready() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `out = Σ_t a · b[t]` on `unit`, split among `threads` threads by blocks
/// of the result: `a` is `[rows, k]`, each `b[t]` `[k, n]` with the same
/// `k`, `out` `[rows, n]` (whole panels where it is in panels).
pub fn product(unit: Unit, out: Out<'_>, a: TiledView<'_>, b: &[PairsView<'_>], threads: usize) {
    assert!(!b.is_empty(), "a product of no terms");
    for t in b {
        assert_eq!(
            (t.k(), t.n()),
            (a.k(), b[0].n()),
            "the terms' shapes differ"
        );
    }
    assert_eq!(out.rows(), a.rows(), "the result is not rows x n");
    assert_eq!(out.n(), b[0].n(), "the result is not rows x n");
    if let Out::Panels { n, .. } = &out {
        assert!(n % layout::PANEL == 0, "a result in panels is whole panels");
    }
    match unit {
        Unit::Amx => assert!(amx_ready(), "AMX products on a machine without AMX"),
        Unit::Avx512Bf16 => assert!(
            avx512bf16_ready(),
            "AVX512-BF16 products on a machine without it"
        ),
    }
    #[cfg(target_arch = "x86_64")]
    layout::split_work(out, threads, |part| match unit {
        // SAFETY: the unit is ready (asserted above); the shapes agree
        // (asserted above, and by the layouts' own invariants).
        Unit::Amx => unsafe { amx::product(part, a, b) },
        Unit::Avx512Bf16 => unsafe { dpbf16::product(part, a, b) },
    });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (out, a, b, threads);
}

/// The peak of the tiles on one thread: GFLOP/s of `tdpbf16ps` on tiles
/// in registers, over `seconds` (for `bench`); `None` without AMX.
pub fn amx_peak(seconds: f64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if amx_ready() {
        return Some(amx::peak(seconds));
    }
    let _ = seconds;
    None
}

#[cfg(test)]
mod tests;
