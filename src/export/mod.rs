//! Trained models in formats other programs read.

pub mod onnx;
pub mod proto;
