//! The one place that asks the CPU what it can do. A kernel family is
//! chosen once per process, from CPUID and (for AMX) the OS, or forced by
//! `SCRATCHNET_KERNELS`, to compare the families and so that the tests cover
//! each one a machine can run; `scratchnet info` and `bench` print it. Every
//! choice of the project's own code that depends on the CPU goes through
//! [`Kernels`]: the float32 kernels run the form compiled for the family's
//! instruction set (`per_isa!`, or the explicit AVX-512 forms of the
//! sparse products, the transposes and the shifts), and the AMX tiles take
//! the first layer's products where the family has them and
//! `--precision bf16` asks for them.
//!
//! | family | needs | float32 kernels | first layer in `bf16` | tested |
//! |---|---|---|---|---|
//! | `amx` | AMX-TILE and AMX-BF16, the tiles granted by Linux, and what `avx512` needs | the AVX-512 forms | AMX tiles, one bfloat16 term | on a Xeon with AMX: the golden trajectories and determinism, per family |
//! | `avx512` | AVX-512 F, BW, DQ and VL, with FMA | the AVX-512 forms | float32 (no unit) | natively, and as the family a CPU with AMX runs when forced |
//! | `avx2` | AVX2 and FMA | the portable forms compiled for AVX2 and FMA | float32 | natively where forced, and under `qemu-x86_64 -cpu Haswell` in CI |
//! | `portable` | nothing beyond x86-64 (SSE2) | the portable forms | float32 | natively where forced, and under `qemu-x86_64 -cpu Nehalem` in CI |
//!
//! Every family gives the same results as the others to rounding; the
//! float32 forms of one kernel compute each value with the same operations
//! in the same order, so `avx512`, `avx2` and `portable` agree bit for bit
//! where a kernel has no explicit form. The hidden layers' products are the
//! `gemm` crate's, which picks its own kernels from the CPU (AVX-512, AVX2
//! or SSE) and is not forced by `SCRATCHNET_KERNELS`.

use std::sync::OnceLock;

/// The environment variable that forces a kernel family.
pub const KERNELS_ENV: &str = "SCRATCHNET_KERNELS";

/// The families of kernels, named for what they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernels {
    /// AMX tiles for the first layer's bfloat16 products; AVX-512 for the rest.
    Amx,
    /// AVX-512 (F, BW, DQ, VL) with FMA.
    Avx512,
    /// AVX2 with FMA.
    Avx2,
    /// The baseline of the architecture: the portable forms.
    Portable,
}

/// The instruction set the float32 kernels of a family are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    Avx512,
    Avx2,
    Baseline,
}

impl Kernels {
    pub const ALL: [Kernels; 4] = [
        Kernels::Amx,
        Kernels::Avx512,
        Kernels::Avx2,
        Kernels::Portable,
    ];

    /// The name `SCRATCHNET_KERNELS` takes and `info` prints.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Amx => "amx",
            Kernels::Avx512 => "avx512",
            Kernels::Avx2 => "avx2",
            Kernels::Portable => "portable",
        }
    }

    /// What the family needs of the machine, in words.
    pub fn needs(self) -> &'static str {
        match self {
            Kernels::Amx => "AMX-TILE and AMX-BF16, granted by the OS, and AVX-512",
            Kernels::Avx512 => "AVX-512 F, BW, DQ and VL, and FMA",
            Kernels::Avx2 => "AVX2 and FMA",
            Kernels::Portable => "nothing beyond the architecture's baseline",
        }
    }

    /// The instruction set of the family's float32 kernels.
    pub fn isa(self) -> Isa {
        match self {
            Kernels::Amx | Kernels::Avx512 => Isa::Avx512,
            Kernels::Avx2 => Isa::Avx2,
            Kernels::Portable => Isa::Baseline,
        }
    }

    /// Whether the family computes the first layer on AMX tiles when
    /// bfloat16 is asked for.
    pub fn has_tiles(self) -> bool {
        self == Kernels::Amx
    }

    /// Whether this machine (CPU and OS) can run them: asked of CPUID once
    /// per family, and of Linux once for the tiles.
    pub fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let avx2 = || has!("avx2") && has!("fma");
            let avx512 = || {
                avx2()
                    && has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512dq")
                    && has!("avx512vl")
            };
            match self {
                Kernels::Amx => avx512() && super::bf16::ready(),
                Kernels::Avx512 => avx512(),
                Kernels::Avx2 => avx2(),
                Kernels::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Kernels::Portable
        }
    }

    /// The fastest family the machine has.
    fn fastest() -> Kernels {
        Kernels::ALL
            .into_iter()
            .find(|k| k.available())
            .unwrap_or(Kernels::Portable)
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
                        let names: Vec<&str> = Kernels::ALL.map(Kernels::name).into();
                        format!(
                            "{KERNELS_ENV}={name}: not a kernel family ({})",
                            names.join(", ")
                        )
                    })?;
                    match k.available() {
                        true => Ok(k),
                        false => Err(format!(
                            "{KERNELS_ENV}={name}: this machine cannot run them (they need {}; it has: {})",
                            k.needs(),
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
    /// Only a family the machine can run is ever returned, which the
    /// dispatch to its instruction set relies on.
    pub fn current() -> Kernels {
        static CURRENT: OnceLock<Kernels> = OnceLock::new();
        *CURRENT.get_or_init(|| Kernels::choose().unwrap_or_else(|_| Kernels::fastest()))
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

/// Defines a function whose body is compiled once for each instruction set
/// of the kernel families and runs, at each call, the form of the family
/// [`Kernels::current`] names (what `multiversion` does, but chosen by the
/// one dispatch). For plain loops the compiler vectorises: the forms
/// compute the same operations in the same order, so they agree bit for bit.
macro_rules! per_isa {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            match $crate::tensor::kernels::Kernels::current().isa() {
                // SAFETY: `current` names only a family whose instruction
                // set this CPU has (`Kernels::available`).
                #[cfg(target_arch = "x86_64")]
                $crate::tensor::kernels::Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::tensor::kernels::Isa::Avx2 => unsafe { avx2($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}
pub(crate) use per_isa;
