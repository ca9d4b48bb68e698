//! Matrix product on strided row-major views, backed by the `gemm` crate.
//!
//! Every product of the network is `C (+)= A · B` where A or B may be a
//! transposed view of a stored matrix: transposition is a change of strides,
//! never a copy. [`matmul_reference`] is the obviously-correct triple loop the
//! fast path is tested against.

use gemm::Parallelism;

/// A read-only matrix view: element (r, c) is `data[off + r*rs + c*cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    /// A dense row-major `rows x cols` matrix held in `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// A view with explicit row and column strides (in elements).
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(rs)
                .zip((cols - 1).checked_mul(cs))
                .and_then(|(r, c)| r.checked_add(c))
                .unwrap_or(usize::MAX);
            assert!(
                last < data.len(),
                "matrix view {rows}x{cols} (strides {rs},{cs}) overruns a buffer of {}",
                data.len()
            );
        }
        Mat {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transposed view (no copy).
    pub fn t(self) -> Self {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Element (r, c).
    pub fn at(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.rs + c * self.cs]
    }
}

/// A mutable row-major view with a row stride, so that a product can write a
/// block of columns inside a wider buffer.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
}

impl<'a> MatMut<'a> {
    /// A dense row-major `rows x cols` matrix held in `data`.
    pub fn new(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }

    /// Rows `rs` elements apart; `cols <= rs`.
    pub fn strided(data: &'a mut [f32], rows: usize, cols: usize, rs: usize) -> Self {
        assert!(
            cols <= rs || rows <= 1,
            "row stride {rs} shorter than a row of {cols}"
        );
        if rows > 0 && cols > 0 {
            let last = (rows - 1)
                .checked_mul(rs)
                .and_then(|r| r.checked_add(cols - 1))
                .unwrap_or(usize::MAX);
            assert!(
                last < data.len(),
                "output view {rows}x{cols} (row stride {rs}) overruns a buffer of {}",
                data.len()
            );
        }
        MatMut {
            data,
            rows,
            cols,
            rs,
        }
    }
}

/// `c = a · b`, or `c += a · b` when `accumulate`, using `threads` threads of
/// the current rayon pool.
pub fn matmul(c: MatMut<'_>, a: Mat<'_>, b: Mat<'_>, accumulate: bool, threads: usize) {
    assert_eq!(
        a.cols, b.rows,
        "inner dimensions differ: {}x{} · {}x{}",
        a.rows, a.cols, b.rows, b.cols
    );
    assert_eq!(
        (c.rows, c.cols),
        (a.rows, b.cols),
        "output shape differs from the product's"
    );
    if c.rows == 0 || c.cols == 0 {
        return;
    }
    if a.cols == 0 {
        if !accumulate {
            for r in 0..c.rows {
                c.data[r * c.rs..r * c.rs + c.cols].fill(0.0);
            }
        }
        return;
    }
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the constructors checked that every view lies inside its slice,
    // and `c` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe {
        gemm::gemm(
            c.rows,
            c.cols,
            a.cols,
            c.data.as_mut_ptr(),
            1,
            c.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

/// The plain triple loop (f64 accumulation) that [`matmul`] is checked against.
pub fn matmul_reference(c: MatMut<'_>, a: Mat<'_>, b: Mat<'_>, accumulate: bool) {
    assert_eq!(a.cols, b.rows);
    assert_eq!((c.rows, c.cols), (a.rows, b.cols));
    for i in 0..c.rows {
        for j in 0..c.cols {
            let mut s = 0.0f64;
            for k in 0..a.cols {
                s += a.at(i, k) as f64 * b.at(k, j) as f64;
            }
            let out = &mut c.data[i * c.rs + j];
            *out = if accumulate {
                *out + s as f32
            } else {
                s as f32
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 500.0 - 1.0
            })
            .collect()
    }

    fn check(m: usize, n: usize, k: usize, ta: bool, tb: bool, accumulate: bool, threads: usize) {
        let a_store = filled(m * k, 1);
        let b_store = filled(k * n, 2);
        let a = if ta {
            Mat::new(&a_store, k, m).t()
        } else {
            Mat::new(&a_store, m, k)
        };
        let b = if tb {
            Mat::new(&b_store, n, k).t()
        } else {
            Mat::new(&b_store, k, n)
        };
        // Write into a column block of a wider buffer, as the parallel block does.
        let (pad, width) = (3, n + 5);
        let mut fast = filled(m * width, 3);
        let mut slow = fast.clone();
        matmul(
            MatMut::strided(&mut fast[pad..], m, n, width),
            a,
            b,
            accumulate,
            threads,
        );
        matmul_reference(
            MatMut::strided(&mut slow[pad..], m, n, width),
            a,
            b,
            accumulate,
        );
        let worst = fast
            .iter()
            .zip(&slow)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "{m}x{n}x{k} ta={ta} tb={tb} acc={accumulate} threads={threads}: worst rel diff {worst}");
    }

    #[test]
    fn matches_reference_on_odd_shapes_and_transposes() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 10, 48),
            (7, 13, 29),
            (33, 192, 784),
            (128, 784, 65),
            (257, 10, 48),
        ] {
            for ta in [false, true] {
                for tb in [false, true] {
                    for accumulate in [false, true] {
                        check(m, n, k, ta, tb, accumulate, 2);
                    }
                }
            }
        }
        check(500, 192, 784, false, true, false, 1);
    }

    #[test]
    fn empty_inner_dimension_gives_zero() {
        let mut c = vec![5.0; 6];
        matmul(
            MatMut::new(&mut c, 2, 3),
            Mat::new(&[], 2, 0),
            Mat::new(&[], 0, 3),
            false,
            1,
        );
        assert_eq!(c, vec![0.0; 6]);
    }
}
