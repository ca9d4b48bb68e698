//! The few numeric primitives the network needs: strided matrix views and
//! their product, plus a deterministic parallel row loop.

pub mod matmul;
pub mod par;

pub use matmul::{matmul, matmul_reference, Mat, MatMut};
