//! How the first layer computes: float32 multiply-adds, or plain bfloat16
//! on AMX tiles where the run asks for it and the CPU has them.

use crate::tensor::kernels::Kernels;
use serde::{Deserialize, Serialize};

/// The arithmetic a run asks for: float32 throughout (`f32`, the default),
/// or the first layer's products in plain bfloat16 with float32 sums
/// (`bf16`, as PyTorch's autocast; the weights, optimiser, activations and
/// loss stay float32).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    F32,
    Bf16,
}

/// How the first layer computes here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arithmetic {
    /// Float32 multiply-adds, in the kernels of the family's instruction set.
    F32,
    /// Bfloat16 products on AMX tiles, float32 sums.
    AmxBf16,
}

impl Arithmetic {
    /// The arithmetic of `precision` on `kernels`: the tiles where
    /// bfloat16 is asked for and the family has them, else float32.
    pub fn new(precision: Precision, kernels: Kernels) -> Arithmetic {
        match (precision, kernels.has_tiles()) {
            (Precision::Bf16, true) => Arithmetic::AmxBf16,
            _ => Arithmetic::F32,
        }
    }

    /// [`Arithmetic::new`] on the kernels this process uses.
    pub fn current(precision: Precision) -> Arithmetic {
        Arithmetic::new(precision, Kernels::current())
    }
}
