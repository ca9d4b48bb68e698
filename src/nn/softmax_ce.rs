//! Softmax and cross-entropy, in the numerically stable form (the notebook's
//! softmax did not subtract the row maximum and overflowed on large logits).

use crate::tensor::par::{for_row_blocks, map_row_blocks_mut};

/// The notebook's epsilon inside the log: `-log(p_y + 1e-7)`.
pub const LOG_EPS: f32 = 1e-7;

/// Softmax of one row, in place.
#[inline]
pub fn softmax_row(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inv);
}

/// Softmax of every row of `logits` (rows of `classes`), in place.
pub fn softmax(logits: &mut [f32], classes: usize) {
    for_row_blocks(logits, classes, |_, block| {
        block.chunks_exact_mut(classes).for_each(softmax_row)
    });
}

/// Right answers (argmax, the first on ties) and the summed cross-entropy
/// `Σ -log(p_y + 1e-7)` of rows of `logits` (rows of `classes`), as
/// training measures its loss; each row's answer is appended to `predicted`.
pub fn score(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    predicted: &mut Vec<u8>,
) -> (usize, f64) {
    let mut row = vec![0.0f32; classes];
    logits
        .chunks_exact(classes)
        .zip(labels)
        .fold((0, 0.0), |(right, loss), (z, &y)| {
            row.copy_from_slice(z);
            softmax_row(&mut row);
            let answer = crate::nn::network::argmax(z);
            predicted.push(answer);
            (
                right + (answer == y) as usize,
                loss - ((row[y as usize] + LOG_EPS) as f64).ln(),
            )
        })
}

/// One fused pass: returns the summed cross-entropy `Σ -log(p_y + 1e-7)` of
/// the rows and overwrites the logits with `dZ = (p - onehot(y)) * scale`.
/// `scale` is 1/batch, the mean's factor.
pub fn loss_and_grad(logits: &mut [f32], labels: &[u8], classes: usize, scale: f32) -> f64 {
    map_row_blocks_mut(logits, classes, |first, block| {
        let mut loss = 0.0f64;
        for (r, row) in block.chunks_exact_mut(classes).enumerate() {
            softmax_row(row);
            let y = labels[first + r] as usize;
            loss -= ((row[y] + LOG_EPS) as f64).ln();
            row[y] -= 1.0;
            row.iter_mut().for_each(|v| *v *= scale);
        }
        loss
    })
    .into_iter()
    .sum()
}
