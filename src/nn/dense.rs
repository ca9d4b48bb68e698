//! A dense layer's matrix work, batch-major: inputs are `[batch, in]`, the
//! weight is `[out, in]` (the notebook's shape), outputs are `[batch, out]`.
//! Transposes are views, so no product copies its operands.

use crate::tensor::kernels::per_isa;
use crate::tensor::par::map_row_blocks;
use crate::tensor::{matmul, Mat, MatMut};

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
    let Dims { batch, inputs, .. } = d;
    // Small products (a minibatch's) each on one thread, the two at once.
    let each = product_threads(d, threads);
    let mut weight = || weight_grad(dw, db, dz, inp, d, threads);
    let input = || {
        if let Some(dinp) = dinp {
            matmul(
                MatMut::new(&mut dinp[..batch * inputs], batch, inputs),
                Mat::new(&dz[..batch * d.outputs], batch, d.outputs),
                Mat::new(w, d.outputs, inputs),
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

/// `dw = dzᵀ · inp` and `db = column sums of dz` (the first layer's
/// gradient needs no `dinp`).
pub fn weight_grad(
    dw: &mut [f32],
    db: &mut [f32],
    dz: &[f32],
    inp: &[f32],
    d: Dims,
    threads: usize,
) {
    let Dims {
        batch,
        inputs,
        outputs,
    } = d;
    let dz = &dz[..batch * outputs];
    matmul(
        MatMut::new(dw, outputs, inputs),
        Mat::new(dz, batch, outputs).t(),
        Mat::new(&inp[..batch * inputs], batch, inputs),
        false,
        product_threads(d, threads),
    );
    column_sums(db, dz);
}

/// Multiply-adds below which a product runs on one thread: splitting a
/// minibatch's products (1.2M multiply-adds at 128 rows) among the threads
/// cost more than it saved (docs/PERFORMANCE.md, "Small dense products on one thread").
const SMALL_PRODUCT: usize = 1 << 22;

/// Threads for one of this layer's products: one below [`SMALL_PRODUCT`].
fn product_threads(d: Dims, threads: usize) -> usize {
    if d.batch * d.inputs * d.outputs < SMALL_PRODUCT {
        1
    } else {
        threads
    }
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

per_isa! {
    fn block_sums(block: &[f32], width: usize) -> Vec<f32> {
        let mut acc = vec![0.0f32; width];
        for row in block.chunks_exact(width) {
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
        }
        acc
    }
}
