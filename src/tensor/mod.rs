//! The few numeric primitives the network needs: cache-line-aligned
//! buffers, strided matrix views and their product, compressed sparse rows
//! and their product, a transpose, a deterministic parallel row loop, and the
//! threads' floating-point mode.

pub mod aligned;
pub mod fp;
pub mod matmul;
pub mod pairs;
pub mod par;
pub mod sparse;
pub mod transpose;

pub use aligned::{on_a_line, Aligned};
pub use fp::flush_denormals;
pub use matmul::{matmul, matmul_reference, Mat, MatMut};
pub use pairs::{pair_order, spmm_paired, spmm_t, ColumnBlocks, PairRows, PairView};
pub use sparse::{
    pack_transposed_into, panels_len, spmm, spmm_by_columns, unpack_transposed, ColumnParts,
    PanelView, Panels, SparseRows, SparseView, COLUMN_SPLIT_ROWS, TILE,
};
pub use transpose::transpose;
