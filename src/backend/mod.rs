//! Where a run computes: the CPU, always, or an NVIDIA GPU (the `cuda`
//! feature, on a machine with the driver and its libraries). A [`Backend`]
//! holds the network, its parameters, the optimiser's state and the data,
//! and does what the training loop asks of it: a step, the accuracy on a
//! split, the parameters and the optimiser's state. The loop does not know
//! which backend it drives; parameters and state cross this boundary as
//! the notebook's `[out, in]` rows.

mod cpu;
#[cfg(feature = "cuda")]
mod cuda;

use crate::data::batch::Batcher;
use crate::data::Dataset;
use crate::nn::dropout::Draws;
use crate::nn::{DropoutMode, Layout, Precision, Score};
use crate::optim::Optimizer;
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

/// Where a run computes: the device, and the CPU's threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub device: Device,
    pub threads: usize,
}

impl Target {
    /// The CPU, on `threads` threads.
    pub fn cpu(threads: usize) -> Target {
        Target {
            device: Device::Cpu,
            threads,
        }
    }
}

/// A split of the data, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitName {
    Train,
    Val,
    Test,
}

/// What one training step applies.
#[derive(Clone, Copy, Debug)]
pub struct Step<'a> {
    /// The step's index (the steps done before it).
    pub index: usize,
    pub lr: f32,
    /// Each weight matrix's L2 factor at this step.
    pub l2: &'a [f32],
    /// Where this step's dropout masks come from.
    pub dropout: Draws<'a>,
    /// Whether the loop reads this step's loss (a device may skip reading
    /// it back otherwise).
    pub wants_loss: bool,
    /// Whether another step follows (its batch may be prepared meanwhile).
    pub more: bool,
}

/// What a step reports.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// The batch's mean cross-entropy, where it was read.
    pub loss: Option<f64>,
    /// Whether every parameter is finite after the update, where checked.
    pub finite: Option<bool>,
    /// Samples in the batch.
    pub rows: usize,
    /// Where a non-finite loss came from, where the backend can tell: the
    /// first activation of the forward pass that holds a non-finite value.
    pub non_finite_at: Option<String>,
}

/// A network training on one device.
pub trait Backend {
    /// One step: forward, loss, backward, L2 and the optimiser's update.
    fn step(&mut self, step: &Step<'_>) -> Result<StepReport>;
    /// The fraction of `split` classified right, without dropout.
    fn accuracy(&mut self, split: SplitName) -> Result<f64>;
    /// [`Backend::accuracy`], the mean cross-entropy of `split`, and each
    /// image's answer in the split's order.
    fn score(&mut self, split: SplitName) -> Result<Score>;
    /// The parameters, every weight in rows.
    fn params(&self) -> Result<Vec<f32>>;
    /// The optimiser with its state, every buffer in rows.
    fn optimizer(&self) -> Result<Optimizer>;
    /// Waits until the steps queued so far have finished (for timing).
    fn wait(&self) -> Result<()> {
        Ok(())
    }
}

/// What a backend starts from.
pub struct Setup<'d> {
    pub layout: Layout,
    pub data: &'d Dataset,
    /// The starting parameters, in rows.
    pub params: Vec<f32>,
    /// The optimiser, its state (fresh or a checkpoint's) in rows.
    pub optimizer: Optimizer,
    /// Which samples each step takes.
    pub batcher: Batcher,
    /// Dropout: the keep probability of each hidden branch, and the mode.
    pub keeps: Vec<f32>,
    pub dropout: DropoutMode,
    /// The first layer's arithmetic.
    pub precision: Precision,
}

/// A backend for `target`, set up from `setup`.
pub fn open<'d>(target: Target, setup: Setup<'d>) -> Result<Box<dyn Backend + 'd>> {
    target.device.check()?;
    match target.device {
        Device::Cpu => {
            crate::tensor::kernels::Kernels::choose().map_err(anyhow::Error::msg)?;
            Ok(Box::new(cpu::Cpu::new(setup, target.threads)))
        }
        #[cfg(feature = "cuda")]
        Device::Cuda => Ok(Box::new(cuda::Cuda::new(setup)?)),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => unreachable!("checked above"),
    }
}

/// The logits (`[n, classes]`) of `images` (`[n, inputs]`) under a model's
/// parameters (in rows), computed on `target` without dropout.
pub fn logits(target: Target, layout: &Layout, params: &[f32], images: &[f32]) -> Result<Vec<f32>> {
    target.device.check()?;
    match target.device {
        Device::Cpu => Ok(cpu::logits(layout, params, images, target.threads)),
        #[cfg(feature = "cuda")]
        Device::Cuda => crate::gpu::logits(layout, params, images),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda => unreachable!("checked above"),
    }
}
