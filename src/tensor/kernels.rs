//! Which family of kernels computes: chosen once per process from what the
//! CPU has and the OS allows, or forced by `SCRATCHNET_KERNELS` (to compare
//! them, and so that tests cover each one the machine can run).
//!
//! A bfloat16 unit ([`bf16`]), where one is chosen, computes the first
//! layer's products; the float32 kernels (the sparse products, the transposes,
//! the distortions) use AVX-512 where the CPU has it, except under
//! `portable`, which runs their portable forms.

use super::bf16::{self, Unit};
use std::sync::OnceLock;

/// The environment variable that forces a kernel family.
pub const KERNELS_ENV: &str = "SCRATCHNET_KERNELS";

/// The families of kernels a product can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// AMX tiles, bfloat16 in, float32 sums.
    Amx,
    /// AVX512-BF16 vectors, bfloat16 in, float32 sums.
    Avx512Bf16,
    /// Float32 multiply-adds, vectorised for the CPU (AVX-512 where it has it).
    Fma,
    /// Float32 multiply-adds, the portable form of the project's own kernels.
    Portable,
}

impl Kernels {
    pub const ALL: [Kernels; 4] = [
        Kernels::Amx,
        Kernels::Avx512Bf16,
        Kernels::Fma,
        Kernels::Portable,
    ];

    /// The name `SCRATCHNET_KERNELS` takes and `info` prints.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Amx => "amx",
            Kernels::Avx512Bf16 => "avx512bf16",
            Kernels::Fma => "fma",
            Kernels::Portable => "portable",
        }
    }

    /// Whether this machine (CPU and OS) can run them.
    pub fn available(self) -> bool {
        match self {
            Kernels::Amx => bf16::ready(Unit::Amx),
            Kernels::Avx512Bf16 => bf16::ready(Unit::Avx512Bf16),
            Kernels::Fma | Kernels::Portable => true,
        }
    }

    /// The bfloat16 unit they compute on, if any.
    pub fn unit(self) -> Option<Unit> {
        match self {
            Kernels::Amx => Some(Unit::Amx),
            Kernels::Avx512Bf16 => Some(Unit::Avx512Bf16),
            Kernels::Fma | Kernels::Portable => None,
        }
    }

    /// The families chosen unasked, fastest first. AVX512-BF16 runs only
    /// when forced: its dense products measured slower than the sparse FMA
    /// kernels, which skip MNIST's zero pixels (docs/PERFORMANCE.md).
    const PREFERRED: [Kernels; 3] = [Kernels::Amx, Kernels::Fma, Kernels::Portable];

    /// The fastest family the machine has.
    fn fastest() -> Kernels {
        Kernels::PREFERRED
            .into_iter()
            .find(|k| k.available())
            .expect("fma is always available")
    }

    /// The kernels this process uses: those `SCRATCHNET_KERNELS` names,
    /// else the fastest the machine has. An unknown name, or one the
    /// machine cannot run, is an error naming what it has.
    pub fn choose() -> Result<Kernels, String> {
        static CHOSEN: OnceLock<Result<Kernels, String>> = OnceLock::new();
        CHOSEN
            .get_or_init(|| match std::env::var(KERNELS_ENV) {
                Ok(name) if !name.is_empty() => {
                    let k = Kernels::ALL.into_iter().find(|k| k.name() == name).ok_or_else(|| {
                        format!(
                            "{KERNELS_ENV}={name}: not a kernel family (amx, avx512bf16, fma, portable)"
                        )
                    })?;
                    match k.available() {
                        true => Ok(k),
                        false => Err(format!(
                            "{KERNELS_ENV}={name}: this machine cannot run them (it has: {})",
                            Kernels::usable()
                        )),
                    }
                }
                _ => Ok(Kernels::fastest()),
            })
            .clone()
    }

    /// [`Kernels::choose`], where an error has been reported already (the
    /// command line checks it at start): the fastest available otherwise.
    pub fn current() -> Kernels {
        Kernels::choose().unwrap_or_else(|_| Kernels::fastest())
    }

    /// The families this machine can run, by name.
    pub fn usable() -> String {
        Kernels::ALL
            .into_iter()
            .filter(|k| k.available())
            .map(Kernels::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether the float32 kernels may use AVX-512: the CPU has it and the
/// portable forms are not forced.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static YES: OnceLock<bool> = OnceLock::new();
        *YES.get_or_init(|| {
            Kernels::current() != Kernels::Portable
                && std::arch::is_x86_feature_detected!("avx512f")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
