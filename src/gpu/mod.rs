//! The CUDA backend (cargo feature `cuda`): the same network, loss and
//! optimisers on an NVIDIA GPU, through cudarc (driver, cuBLAS, NVRTC, all
//! loaded at run time, so building needs no CUDA toolkit).
//!
//! Matrix products go to cuBLAS (row-major products expressed as their
//! column-major transposes); everything elementwise is one of the kernels in
//! `kernels.cu`, each a port of the CPU function it names, with the same
//! dropout masks (counter-based, so nothing is stored). Data is uploaded
//! once; inside a step nothing returns to the host.

mod engine;

pub use engine::{GpuNet, GpuSplit, GpuStep};

use anyhow::{bail, Result};
use std::sync::Arc;

/// Shared libraries the backend loads, by the names it tries.
const LIBRARIES: [(&str, &[&str]); 3] = [
    ("the CUDA driver", &["libcuda.so.1", "libcuda.so"]),
    (
        "cuBLAS",
        &[
            "libcublas.so.13",
            "libcublas.so.12",
            "libcublas.so.11",
            "libcublas.so",
        ],
    ),
    (
        "NVRTC",
        &[
            "libnvrtc.so.13",
            "libnvrtc.so.12",
            "libnvrtc.so.11.2",
            "libnvrtc.so",
        ],
    ),
];

/// Checks that the CUDA libraries load and a GPU answers, before anything
/// calls into them (cudarc panics on a missing library).
pub fn open() -> Result<Arc<cudarc::driver::CudaContext>> {
    for (what, names) in LIBRARIES {
        // SAFETY: these are NVIDIA's libraries, whose initialisers only set
        // up their own state.
        let found = names
            .iter()
            .any(|n| unsafe { libloading::Library::new(*n) }.is_ok());
        if !found {
            bail!(
                "--device cuda: {what} library was not found (tried {}); install the NVIDIA driver and CUDA 12 runtime libraries, or use --device cpu",
                names.join(", ")
            );
        }
    }
    match std::panic::catch_unwind(|| cudarc::driver::CudaContext::new(0)) {
        Ok(Ok(ctx)) => Ok(ctx),
        Ok(Err(e)) => bail!("--device cuda: no usable GPU ({e}); use --device cpu"),
        Err(_) => bail!("--device cuda: the CUDA driver failed to start; use --device cpu"),
    }
}

/// The logits of `images` under `params`, computed on the GPU.
pub fn logits(layout: &crate::nn::Layout, params: &[f32], images: &[f32]) -> Result<Vec<f32>> {
    use crate::optim::{Optimizer, OptimizerKind};
    let ctx = open()?;
    let opt = Optimizer::new(OptimizerKind::Sgd, layout.len, 0.0, 0.0, 0.0, 0.0);
    let mut net = GpuNet::new(&ctx, layout, params, &opt, &[], 0)?;
    let n = images.len() / layout.arch.inputs.max(1);
    let split = net.upload_images(images, &vec![0; n])?;
    net.logits(&split)
}
