//! The few numeric primitives the network needs: cache-line-aligned
//! buffers, strided matrix views and their product, sparse matrices and
//! their products, a transpose, a deterministic parallel row loop, and the
//! threads' floating-point mode.

pub mod aligned;
pub mod bf16;
pub mod fp;
pub mod kernels;
pub mod matmul;
pub mod par;
pub mod peak;
pub mod sparse;
pub mod transpose;

pub use aligned::{on_a_line, Aligned};
pub use fp::{flush_denormals, pool};
pub use matmul::{matmul, matmul_reference, Mat, MatMut};
pub use transpose::transpose;
