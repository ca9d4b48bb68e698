//! The few numeric primitives the network needs: strided matrix views and
//! their product, compressed sparse rows and their product, a transpose, and
//! a deterministic parallel row loop.

pub mod matmul;
pub mod par;
pub mod sparse;
pub mod transpose;

pub use matmul::{matmul, matmul_reference, Mat, MatMut};
pub use sparse::{spmm, spmm_t, ColumnBlocks, Panels, SparseRows, SparseView};
pub use transpose::{par_transpose, transpose};
