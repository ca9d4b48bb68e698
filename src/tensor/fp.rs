//! The floating-point mode of computing threads.

/// Makes this thread treat subnormal floats (below 1.2e-38) as zero, as
/// inputs and as results (x86's FTZ and DAZ bits; elsewhere it does nothing).
///
/// Why: late in training, softmax probabilities and the gradients behind
/// them fall into the subnormal range, and each operation on a subnormal
/// takes a microcode assist of a hundred cycles or more (docs/PERFORMANCE.md,
/// "Subnormals flushed to zero"). Values that small carry no information a
/// 32-bit network could use; results stay deterministic (every thread of
/// the pool is set the same way).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's MXCSR through
        // a valid pointer; only the FTZ (bit 15) and DAZ (bit 6) bits change.
        // (The compiler assumes the default mode when folding constants, so
        // a folded expression may keep a subnormal the running code would
        // flush: harmless here.)
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
            csr |= 1 << 15 | 1 << 6;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly));
        }
    }
}

/// A pool of `threads` computing threads, each set by [`flush_denormals`]:
/// the command line and the Python module compute in such a pool, so the
/// same seed and thread count give the same weights in both.
pub fn pool(threads: usize) -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| flush_denormals())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn subnormal_results_and_inputs_become_zero() {
        // On a fresh thread, so no other test runs in flush mode.
        std::thread::spawn(|| {
            let tiny = black_box(f32::MIN_POSITIVE);
            assert!(
                black_box(tiny) / black_box(4.0f32) > 0.0,
                "subnormal before"
            );
            flush_denormals();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(black_box(tiny) / black_box(4.0f32), 0.0);
                let sub = f32::from_bits(1); // the smallest subnormal, as an input
                assert_eq!(black_box(sub) * black_box(2.0f32), 0.0);
            }
        })
        .join()
        .unwrap();
    }
}
