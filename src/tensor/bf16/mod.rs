//! The first layer's products on AMX tiles, in plain bfloat16
//! (`--precision bf16`, as PyTorch's autocast): bfloat16 operands, float32
//! sums, weights, optimiser state and activations.
//!
//! `tdpbf16ps` multiplies a 16x32 tile of bfloat16 by a 32x16 one (in
//! pairs of k) and adds the products into a 16x16 tile of float32 sums,
//! several times faster than float32 multiply-adds. MNIST's pixels
//! (`k/256`) are exact in bfloat16; the weight and the gradient are rounded
//! to it.
//!
//! The operands ([`layout`]): A `[rows, k]` as 16x32 tiles ([`Tiled`]),
//! B `[k, n]` in the pairs of k the tiles read ([`Pairs`]), the result
//! float32 `[rows, n]`, row-major or in column panels of 16 ([`Out`]).
//! [`product`] checks that they agree, then splits the result among
//! threads, never a sum, so it does not depend on the thread count.
//!
//! The tiles compute only where the kernel family has them
//! ([`super::kernels::Kernels::has_tiles`]); elsewhere the float32 kernels
//! of [`super::sparse`] and the matrix library do the work.

#[cfg(target_arch = "x86_64")]
mod amx;
pub mod layout;

pub use layout::{to_bf16, Out, Pairs, PairsView, Tiled, TiledView};

use std::sync::OnceLock;

/// Whether the tiles can compute here: the CPU has AMX-TILE and AMX-BF16
/// and the OS has granted this process the tiles' state (asked once).
pub(crate) fn ready() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static READY: OnceLock<bool> = OnceLock::new();
        *READY.get_or_init(amx::request)
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `out = a · b` on AMX tiles, split among `threads` threads by blocks of
/// the result: `a` is `[rows, k]`, `b` `[k, n]`, `out` `[rows, n]`. Checks
/// what the tiles' stores rely on: the shapes agree, a row-major result is
/// at least `n` floats from one row to the next and holds its last row, a
/// result in panels holds whole panels of every row. A `k` of zero writes
/// zeros.
///
/// # Panics
/// Where any of that does not hold, or the machine has no tiles.
pub fn product(out: Out<'_>, a: TiledView<'_>, b: PairsView<'_>, threads: usize) {
    assert_eq!(a.k(), b.k(), "A is [rows, {}], B [{}, n]", a.k(), b.k());
    let (rows, n) = (out.rows(), out.n());
    assert_eq!(rows, a.rows(), "the result has {rows} rows, A {}", a.rows());
    assert_eq!(n, b.n(), "the result has {n} columns, B {}", b.n());
    match &out {
        Out::Rows { data, stride, .. } => {
            assert!(*stride >= n, "a stride of {stride} for rows of {n}");
            let needed = match rows {
                0 => 0,
                _ => (rows - 1)
                    .checked_mul(*stride)
                    .and_then(|e| e.checked_add(n))
                    .unwrap_or(usize::MAX),
            };
            assert!(
                data.len() >= needed,
                "{} floats for {rows} rows of {n}, {stride} apart",
                data.len()
            );
        }
        Out::Panels { data, .. } => {
            assert!(
                n.is_multiple_of(layout::PANEL),
                "a result in panels is whole panels"
            );
            assert!(
                data.len() >= rows * n,
                "{} floats for {rows} x {n} in panels",
                data.len()
            );
        }
    }
    assert!(ready(), "AMX products on a machine without AMX tiles");
    if rows == 0 || n == 0 {
        return;
    }
    if a.k() == 0 {
        return out.fill(0.0);
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the tiles are ready, and the shapes and the result's extent
    // agree (asserted above; the operands' layouts keep their own extents).
    layout::split_work(out, threads, |part| unsafe { amx::product(part, a, b) });
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (out, a, b, threads);
}

/// The peak of the tiles on one thread: GFLOP/s of `tdpbf16ps` on tiles
/// in registers, over `seconds` (for `bench`); `None` without AMX tiles.
pub fn amx_peak(seconds: f64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if ready() {
        // SAFETY: the tiles are granted to this process (`ready`).
        return Some(unsafe { amx::peak(seconds) });
    }
    let _ = seconds;
    None
}
