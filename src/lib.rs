//! scratchnet: the MNIST notebook's neural network written from scratch in
//! Rust — data loading, the network's forward and backward passes, optimisers,
//! training and model files.
//!
//! Data flows one way: [`data`] (dataset → batch) → [`nn`] (forward → loss →
//! backward) → [`optim`] (step) → [`train`] (the loop, metrics, presets) →
//! [`model_io`] (safetensors files). The loop drives a [`backend`]: the
//! CPU or, with the `cuda` feature, the GPU engine in `gpu`. [`export`] writes
//! a trained model for other runtimes (ONNX).

pub mod backend;
pub mod compare;
pub mod data;
pub mod export;
pub mod fsutil;
#[cfg(feature = "cuda")]
pub mod gpu;
pub mod model_io;
pub mod nn;
pub mod optim;
pub mod serve;
pub mod tensor;
pub mod tensorboard;
pub mod train;
pub mod units;
