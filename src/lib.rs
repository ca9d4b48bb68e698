//! scratchnet: the MNIST notebook's neural network written from scratch in
//! Rust — data loading, the network's forward and backward passes, optimisers,
//! training and model files.
//!
//! Data flows one way: [`data`] (dataset → batch) → [`nn`] (forward → loss →
//! backward) → [`optim`] (step) → [`train`] (the loop, metrics, presets) →
//! [`model_io`] (safetensors files). [`device`] picks CPU or, with the `cuda`
//! feature, the GPU backend in `gpu`.

pub mod data;
pub mod device;
pub mod fsutil;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod model_io;
pub mod nn;
pub mod optim;
pub mod tensor;
pub mod train;
