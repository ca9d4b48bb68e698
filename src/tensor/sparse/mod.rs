//! Mostly-zero matrices and their products with dense ones: the first
//! layer's fast path.
//!
//! An MNIST image is about 81% zeros, and the first layer does 90% of the
//! network's arithmetic, so skipping the zeros is the largest speed-up there
//! is. The images are held as compressed rows ([`SparseRows`]) or as rows
//! merged in pairs of similar ones ([`PairRows`]); the weight, the dense
//! operand, as column panels ([`Panels`]). One kernel core
//! ([`kernel`]) multiplies either form by the panels: the forward product
//! `X·W1ᵀ` ([`spmm`], [`spmm_by_columns`] for a minibatch, [`spmm_paired`])
//! and the weight gradient `dW1 = dZ1ᵀ·X` ([`spmm_t`], on [`ColumnBlocks`]:
//! the transpose of `X` cut into row blocks so each block's `dZ1` stays in
//! cache, its rows merged in pairs).

pub mod kernel;
pub mod pairs;
pub mod panels;
pub mod rows;

pub use kernel::{spmm, spmm_by_columns, spmm_paired, spmm_t, ColumnParts, COLUMN_SPLIT_ROWS};
pub use pairs::{pair_order, ColumnBlocks, PairRows, PairView, Rows};
pub use panels::{pack_transposed_into, panels_len, unpack_transposed, PanelView, Panels, TILE};
pub use rows::{SparseRows, SparseView, SPARSE_BELOW};

#[cfg(test)]
pub(crate) mod tests {
    /// `rows x cols` with about `density` of the entries non-zero.
    pub(crate) fn sparse_dense(rows: usize, cols: usize, density: f64, seed: u64) -> Vec<f32> {
        (0..rows * cols)
            .map(|i| {
                let h = crate::nn::dropout::mix64(seed ^ i as u64);
                if (h >> 11) as f64 / (1u64 << 53) as f64 <= density {
                    (h % 1000) as f32 / 500.0 - 1.0
                } else {
                    0.0
                }
            })
            .collect()
    }
}
