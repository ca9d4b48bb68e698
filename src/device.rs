//! Where training and inference run: the CPU (always) or an NVIDIA GPU
//! (builds with the `cuda` feature, on machines with the driver).

use crate::nn::{Input, Layout, Network};
use crate::tensor::SparseRows;
use anyhow::Result;

/// `--device`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
}

impl Device {
    /// Fails with a clear message when this device cannot be used here:
    /// CUDA without the `cuda` feature, or without a GPU and its libraries.
    pub fn check(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda => crate::gpu::open().map(|_| ()),
            #[cfg(not(feature = "cuda"))]
            Device::Cuda => anyhow::bail!(
                "--device cuda: this scratchnet was built without CUDA support; rebuild with `cargo build --release --features cuda` (no CUDA toolkit needed to build)"
            ),
        }
    }
}

/// The logits (`[n, classes]`) of `images` (`[n, inputs]`) under a model's
/// `params`, computed on `device` without dropout; `threads` on the CPU.
pub fn logits(
    device: Device,
    layout: &Layout,
    params: &[f32],
    images: &[f32],
    threads: usize,
) -> Result<Vec<f32>> {
    device.check()?;
    #[cfg(feature = "cuda")]
    if device == Device::Cuda {
        return crate::gpu::logits(layout, params, images);
    }
    let net = Network::new(layout.clone(), threads);
    let mut ws = net.workspace(2048);
    let compressed = SparseRows::compress_if_sparse(images, layout.arch.inputs);
    let mut out = Vec::with_capacity(images.len() / layout.arch.inputs * layout.arch.classes);
    let x = Input::new(images, compressed.as_ref());
    net.logits_chunks(params, x, &mut ws, |_, z| out.extend_from_slice(z));
    Ok(out)
}
