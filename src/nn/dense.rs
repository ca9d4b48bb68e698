//! A dense layer's matrix work, batch-major: inputs are `[batch, in]`, the
//! weight is `[out, in]` (the notebook's shape), outputs are `[batch, out]`.
//! Transposes are views, so no product copies its operands.

use crate::tensor::par::map_row_blocks;
use crate::tensor::{matmul, spmm_t, ColumnBlocks, Mat, MatMut};
use multiversion::multiversion;

/// Shapes of one dense layer at one batch size.
#[derive(Clone, Copy, Debug)]
pub struct Dims {
    pub batch: usize,
    pub inputs: usize,
    pub outputs: usize,
}

/// `z[batch, out] = inp[batch, in] · wᵀ` (bias and activation follow, fused).
pub fn forward(z: &mut [f32], inp: &[f32], w: &[f32], d: Dims, threads: usize) {
    let Dims {
        batch,
        inputs,
        outputs,
    } = d;
    matmul(
        MatMut::new(&mut z[..batch * outputs], batch, outputs),
        Mat::new(&inp[..batch * inputs], batch, inputs),
        Mat::new(w, outputs, inputs).t(),
        false,
        product_threads(d, threads),
    );
}

/// `dw = dzᵀ · inp`, `db = column sums of dz`, and, when asked,
/// `dinp = dz · w`. `dz` already carries the 1/batch factor.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    dinp: Option<&mut [f32]>,
    dw: &mut [f32],
    db: &mut [f32],
    dz: &[f32],
    inp: &[f32],
    w: &[f32],
    d: Dims,
    threads: usize,
) {
    let Dims {
        batch,
        inputs,
        outputs,
    } = d;
    let dz = &dz[..batch * outputs];
    let dzm = Mat::new(dz, batch, outputs);
    // Small products (a minibatch's) each on one thread, the two at once.
    let each = product_threads(d, threads);
    let mut weight = || {
        matmul(
            MatMut::new(dw, outputs, inputs),
            dzm.t(),
            Mat::new(&inp[..batch * inputs], batch, inputs),
            false,
            each,
        );
        column_sums(db, dz);
    };
    let input = || {
        if let Some(dinp) = dinp {
            matmul(
                MatMut::new(&mut dinp[..batch * inputs], batch, inputs),
                dzm,
                Mat::new(w, outputs, inputs),
                false,
                each,
            );
        }
    };
    if each == 1 {
        rayon::join(weight, input);
    } else {
        weight();
        input();
    }
}

/// Multiply-adds below which a product runs on one thread: splitting a
/// minibatch's products (1.2M multiply-adds at 128 rows) among the threads
/// cost more than it saved. A default-preset step, alternating in one
/// process: 687 -> 663, 759 -> 737, 825 -> 812 and 819 -> 805 us (four
/// runs); in the last two nearly all of it came from the forward product.
const SMALL_PRODUCT: usize = 1 << 22;

/// Threads for one of this layer's products: one below [`SMALL_PRODUCT`].
fn product_threads(d: Dims, threads: usize) -> usize {
    if d.batch * d.inputs * d.outputs < SMALL_PRODUCT {
        1
    } else {
        threads
    }
}

/// [`backward`] for compressed input rows (given grouped by column), with
/// no input gradient (only the first layer sees compressed input); `dw` in
/// rows, or in panels (see [`crate::nn::Layout::w0_panels`]).
pub fn backward_sparse(
    dw: &mut [f32],
    db: &mut [f32],
    dz: &[f32],
    inp: &ColumnBlocks,
    panels: bool,
) {
    let outputs = db.len();
    let rows = inp.blocks().iter().map(|b| b.cols()).sum::<usize>();
    let dz = &dz[..rows * outputs];
    spmm_t(dw, inp, dz, outputs, panels);
    column_sums(db, dz);
}

/// `out[c] = Σ_r m[r, c]` over row-major rows of `out.len()` columns: f32
/// within fixed row blocks, f64 across them, so the result does not depend
/// on the thread count.
pub fn column_sums(out: &mut [f32], m: &[f32]) {
    let width = out.len();
    let partials = map_row_blocks(m, width, |_, block| block_sums(block, width));
    out.iter_mut().enumerate().for_each(|(c, o)| {
        *o = partials.iter().map(|p| p[c] as f64).sum::<f64>() as f32;
    });
}

#[multiversion(targets("x86_64+avx512f+avx512vl+fma", "x86_64+avx2+fma"))]
fn block_sums(block: &[f32], width: usize) -> Vec<f32> {
    let mut acc = vec![0.0f32; width];
    for row in block.chunks_exact(width) {
        acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
    }
    acc
}
