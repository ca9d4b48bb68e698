//! The kernels behind safe functions that rely on `unsafe` (raw loads and
//! stores, tiles, intrinsics): each writes only its output, refuses an
//! output too short or a stride too small before touching anything, and
//! handles `k = 0` and empty inputs, on the kernel family this process runs
//! (`.ci/run` runs this module again on every family the machine has, and
//! under emulated CPUs without AVX-512 and without AVX).

use crate::common;
use scratchnet::data::augment::shift_entries;
use scratchnet::nn::activation::{backward_rows, forward_rows};
use scratchnet::nn::arch::NOTEBOOK_ARCH;
use scratchnet::nn::dropout::MaskRows;
use scratchnet::nn::{Arch, Layout};
use scratchnet::optim::Adam;
use scratchnet::tensor::bf16::{self, layout::Source, Out, Pairs, Tiled};
use scratchnet::tensor::kernels::Kernels;
use scratchnet::tensor::sparse::{
    pair_order, panels_len, spmm, spmm_by_columns, spmm_paired, spmm_t, unpack_transposed,
    ColumnBlocks, ColumnParts, PairRows, Panels, SparseRows,
};
use scratchnet::tensor::{matmul, transpose, Mat, MatMut};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Floats on each side of an output that a kernel must leave alone.
const GUARD: usize = 64;
const SENTINEL: f32 = -7777.0;

/// An output of `len` floats with guard regions around it.
struct Guarded(Vec<f32>);

impl Guarded {
    fn new(len: usize) -> Guarded {
        Guarded(vec![SENTINEL; GUARD + len + GUARD])
    }

    fn out(&mut self) -> &mut [f32] {
        let len = self.0.len() - 2 * GUARD;
        &mut self.0[GUARD..GUARD + len]
    }

    /// The output, after checking that the guards are untouched.
    fn checked(&self, what: &str) -> &[f32] {
        let len = self.0.len() - 2 * GUARD;
        let (before, rest) = self.0.split_at(GUARD);
        let (out, after) = rest.split_at(len);
        assert!(
            before.iter().chain(after).all(|&v| v == SENTINEL),
            "{what}: written outside its output"
        );
        out
    }
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| scratchnet::nn::dropout::uniform(seed, i as u64) * 2.0 - 1.0)
        .collect()
}

/// `rows x cols` with about a fifth of the entries non-zero (MNIST-like),
/// some rows empty; the values exact in bfloat16.
fn sparse(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    values(rows * cols, seed)
        .iter()
        .enumerate()
        .map(|(i, &v)| match v > 0.6 && (i / cols.max(1)) % 7 != 3 {
            true => ((v * 1000.0) as i32 % 256) as f32 / 256.0,
            false => 0.0,
        })
        .collect()
}

/// `x` (`[rows, k]`) compressed; for `k = 0`, `rows` empty rows.
fn compress(x: &[f32], rows: usize, k: usize) -> SparseRows {
    let mut m = SparseRows::default();
    m.clear(k);
    for r in 0..rows {
        let row = &x[r * k..(r + 1) * k];
        m.push_row_with(k, |idx, val| {
            let mut n = 0;
            for (c, &v) in row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                (idx[n], val[n]) = (c as u32, v);
                n += 1;
            }
            n
        });
    }
    m
}

/// `a · b` in float64 (`a` `[m, k]`, `b` `[k, n]`, row-major).
fn reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for r in 0..m {
        for j in 0..k {
            let x = a[r * k + j] as f64;
            for c0 in 0..n {
                c[r * n + c0] += x * b[j * n + c0] as f64;
            }
        }
    }
    c
}

/// The worst `|got - want| / (1 + |want|)`.
fn apart(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs() / (1.0 + w.abs()))
        .fold(0.0, f64::max)
}

/// `f` panics, with a message holding `needle`.
fn refused(what: &str, needle: &str, f: impl FnOnce()) {
    let e = catch_unwind(AssertUnwindSafe(f)).expect_err(what);
    let message = e
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(message.contains(needle), "{what}: {message:?}");
}

/// Odd shapes `(rows, k, n)`: none a whole number of tiles or panels, an
/// empty input, `k = 0`, one output column.
const SHAPES: [(usize, usize, usize); 7] = [
    (1, 1, 1),
    (17, 33, 15),
    (3, 70, 49),
    (130, 31, 48),
    (0, 20, 16),
    (9, 0, 20),
    (40, 784, 1),
];

// Seen (2026-12-07, the avx512, avx2 and portable kernels alike): every
// float32 product within 2.4e-6 of float64 (relative to 1 + |value|; the
// worst on the 784-long sums); the bound is 10x.
const F32_BOUND: f64 = 2.4e-5;

#[test]
fn sparse_products_write_only_their_output() {
    for (rows, k, n) in SHAPES {
        let (x, w) = (sparse(rows, k, 1), values(k * n, 2));
        let want = reference(&x, &w, rows, k, n);
        let compressed = compress(&x, rows, k);
        let mut panels = Panels::default();
        panels.pack(&w, k, n, n);
        let shape = format!("{rows}x{k}x{n} on {}", Kernels::current().name());

        let mut out = Guarded::new(rows * n);
        spmm(out.out(), compressed.view(), panels.view(), false);
        let got = out.checked(&format!("spmm {shape}"));
        assert!(apart(got, &want) <= F32_BOUND, "spmm {shape}");

        let mut out = Guarded::new(rows * n);
        let mut parts = ColumnParts::default();
        spmm_by_columns(out.out(), compressed.view(), panels.view(), &mut parts);
        let by_columns = out.checked(&format!("spmm_by_columns {shape}"));
        assert_eq!(by_columns, got, "spmm_by_columns {shape}: not spmm's bits");

        // Pairs come out in the pairs' order.
        let order = pair_order(compressed.view());
        let pairs = PairRows::from_rows(compressed.view(), &order);
        let mut out = Guarded::new(rows * n);
        spmm_paired(out.out(), pairs.view(), panels.view());
        let got = out.checked(&format!("spmm_paired {shape}"));
        let want_paired: Vec<f64> = order
            .iter()
            .flat_map(|&r| want[r as usize * n..][..n].to_vec())
            .collect();
        assert!(apart(got, &want_paired) <= F32_BOUND, "spmm_paired {shape}");

        // The weight gradient's product: Dᵀ·X, `[n, k]`, from X by columns.
        let d = values(rows * n, 3);
        let by_column = ColumnBlocks::new(compressed.view(), 16);
        let mut out = Guarded::new(n * k);
        spmm_t(out.out(), &by_column, &d, n, false);
        let got = out.checked(&format!("spmm_t {shape}"));
        let dt: Vec<f32> = (0..n * rows)
            .map(|i| d[(i % rows) * n + i / rows])
            .collect();
        let want_t = reference(&dt, &x, n, rows, k);
        assert!(apart(got, &want_t) <= F32_BOUND, "spmm_t {shape}");
        // The same sums into panels, as a first-layer weight stored so.
        let rows_t = got.to_vec();
        let mut out = Guarded::new(panels_len(k, n));
        spmm_t(out.out(), &by_column, &d, n, true);
        let mut unpacked = vec![0.0; n * k];
        let what = format!("spmm_t in panels {shape}");
        unpack_transposed(&mut unpacked, out.checked(&what), k, n);
        assert_eq!(unpacked, rows_t, "{what}: not the rows' bits");
    }
}

#[test]
fn dense_products_and_transposes_write_only_their_output() {
    for (rows, k, n) in SHAPES {
        let shape = format!("{rows}x{k}x{n} on {}", Kernels::current().name());
        let (a, b) = (values(rows * k, 4), values(k * n, 5));
        // Into a wider buffer, rows `n + 3` apart, as a layer writes a
        // block of columns.
        let stride = n + 3;
        let len = if rows == 0 {
            0
        } else {
            (rows - 1) * stride + n
        };
        let mut out = Guarded::new(len);
        let c = MatMut::strided(out.out(), rows, n, stride);
        matmul(c, Mat::new(&a, rows, k), Mat::new(&b, k, n), false, 2);
        let got = out.checked(&format!("matmul {shape}"));
        let want = reference(&a, &b, rows, k, n);
        for r in 0..rows {
            let row = &got[r * stride..][..n];
            assert!(
                apart(row, &want[r * n..][..n]) <= F32_BOUND,
                "matmul {shape}"
            );
        }

        // The transpose of `a` into rows `rows + 5` apart.
        let ds = rows + 5;
        let len = if k == 0 || rows == 0 {
            0
        } else {
            (k - 1) * ds + rows
        };
        let mut out = Guarded::new(len);
        transpose(out.out(), ds, &a, k, rows, k);
        let got = out.checked(&format!("transpose {shape}"));
        for r in 0..rows {
            for c in 0..k {
                assert_eq!(got[c * ds + r], a[r * k + c], "transpose {shape}");
            }
        }
    }
}

/// The shifts of compressed images (compressing stores on AVX-512):
/// exactly the pixels that stay inside, and nothing past them.
#[test]
fn shifted_rows_hold_exactly_the_pixels_that_stay() {
    let (h, w) = (28, 28);
    let image = sparse(1, h * w, 7);
    let row = SparseRows::from_dense(&image, h * w);
    let (idx, val) = row.view().row(0);
    for (dx, dy) in [(0, 0), (1, -1), (-2, 2), (27, 0), (0, -28), (30, 30)] {
        let mut out = SparseRows::default();
        out.clear(h * w);
        shift_entries(idx, val, &mut out, (h, w), dx, dy);
        let got = out.view().to_dense();
        for y in 0..h as isize {
            for x in 0..w as isize {
                let (sx, sy) = (x - dx, y - dy);
                let inside = (0..w as isize).contains(&sx) && (0..h as isize).contains(&sy);
                let want = match inside {
                    true => image[(sy * w as isize + sx) as usize],
                    false => 0.0,
                };
                assert_eq!(
                    got[(y * w as isize + x) as usize],
                    want,
                    "shift ({dx}, {dy})"
                );
            }
        }
    }
}

/// What the raw stores rely on is checked first, on every path: an output
/// too short, a stride smaller than a row, shapes that disagree.
#[test]
fn outputs_too_short_and_strides_too_small_are_refused() {
    let (rows, k, n) = (20, 30, 40);
    let (x, w) = (sparse(rows, k, 1), values(k * n, 2));
    let compressed = SparseRows::from_dense(&x, k);
    let mut panels = Panels::default();
    panels.pack(&w, k, n, n);
    let mut short = vec![0.0; rows * n - 1];
    refused("spmm", "output is not rows x n", || {
        spmm(&mut short, compressed.view(), panels.view(), false)
    });
    refused("spmm_by_columns", "output is not rows x n", || {
        let mut parts = ColumnParts::default();
        spmm_by_columns(&mut short, compressed.view(), panels.view(), &mut parts)
    });
    refused("matmul", "overruns", || {
        MatMut::strided(&mut short, rows, n, n);
    });
    refused("matmul's stride", "shorter than a row", || {
        MatMut::strided(&mut short, rows, n, n - 1);
    });
    refused("a stride that overflows", "overruns", || {
        Mat::strided(&w, 3, 3, usize::MAX / 2 + 1, 1);
    });
    refused("transpose", "destination too short", || {
        transpose(&mut vec![0.0; k * rows - 1], rows, &x, k, rows, k)
    });
    let tiles = Tiled::from_rows(&x, rows, k);
    let mut pairs = Pairs::default();
    pairs.fill(Source::Rows(&w), k, n);
    let mut out = vec![0.0; rows * n];
    refused("bf16 product, short", "floats for", || {
        let out = Out::Rows {
            data: &mut out[..rows * n - 1],
            rows,
            n,
            stride: n,
        };
        bf16::product(out, tiles.view(), pairs.view(), 2)
    });
    refused("bf16 product, stride", "a stride of", || {
        let out = Out::Rows {
            data: &mut out,
            rows,
            n,
            stride: n - 1,
        };
        bf16::product(out, tiles.view(), pairs.view(), 2)
    });
    let mut pairs48 = Pairs::default();
    pairs48.fill(Source::Rows(&values(k * 48, 3)), k, 48);
    refused("bf16 product, panels", "floats for", || {
        let out = Out::Panels {
            data: &mut out[..rows * 32],
            rows,
            n: 48,
        };
        bf16::product(out, tiles.view(), pairs48.view(), 2)
    });
    refused("bf16 product, shapes", "columns", || {
        let out = Out::Rows {
            data: &mut out,
            rows,
            n: n - 1,
            stride: n,
        };
        bf16::product(out, tiles.view(), pairs.view(), 2)
    });
}

/// The tiles against float64, where the family has them: odd shapes, `k =
/// 0`, a long `k` (as a weight gradient's, which goes a chunk at a time),
/// results row-major with a stride and in panels, inside guard regions;
/// the same bits on 1, 2 and 3 threads.
#[test]
fn amx_products_match_float64_and_write_only_their_output() {
    let test = "kernels::amx_products_match_float64_and_write_only_their_output";
    if !Kernels::current().has_tiles() {
        return common::skipped(
            test,
            &format!(
                "the {} kernels have no AMX tiles",
                Kernels::current().name()
            ),
        );
    }
    // Seen (2026-12-06, one bfloat16 term): |error| / Σ|a·b| 2.7e-3.
    let bound = 3e-2;
    let mut shapes = SHAPES.to_vec();
    shapes.push((40, 9000, 48));
    for (rows, k, n) in shapes {
        let a = sparse(rows, k, rows as u64);
        let tiles = Tiled::from_rows(&a, rows, k);
        let b = values(k * n, k as u64);
        let mut pairs = Pairs::default();
        pairs.fill(Source::Rows(&b), k, n);
        let stride = n + 5;
        let len = if rows == 0 {
            0
        } else {
            (rows - 1) * stride + n
        };
        let mut outs = Vec::new();
        for threads in [1, 2, 3] {
            let mut out = Guarded::new(len);
            let o = Out::Rows {
                data: out.out(),
                rows,
                n,
                stride,
            };
            bf16::product(o, tiles.view(), pairs.view(), threads);
            let got = out.checked(&format!("AMX {rows}x{k}x{n}"));
            let rows_of: Vec<f32> = (0..rows)
                .flat_map(|r| got[r * stride..][..n].to_vec())
                .collect();
            outs.push(rows_of);
        }
        assert!(
            outs.iter().all(|o| *o == outs[0]),
            "{rows}x{k}x{n}: threads differ"
        );
        let want = reference(&a, &b, rows, k, n);
        let size = reference(
            &a.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            &b.iter().map(|v| v.abs()).collect::<Vec<_>>(),
            rows,
            k,
            n,
        );
        for ((g, w), s) in outs[0].iter().zip(&want).zip(&size) {
            let e = (*g as f64 - w).abs() / s.max(1e-30);
            assert!(e <= bound || *s == 0.0, "{rows}x{k}x{n}: {e:.2e}");
        }
        if n % 16 == 0 {
            let mut out = Guarded::new(rows * n);
            let o = Out::Panels {
                data: out.out(),
                rows,
                n,
            };
            bf16::product(o, tiles.view(), pairs.view(), 2);
            let got = out.checked(&format!("AMX in panels {rows}x{k}x{n}"));
            for r in 0..rows {
                for c in 0..n {
                    assert_eq!(
                        got[(c / 16) * rows * 16 + r * 16 + c % 16],
                        outs[0][r * n + c]
                    );
                }
            }
        }
    }
}

/// The tiles' operands from every source agree: A from compressed rows
/// and from their transpose is A from the dense rows, B from a transpose
/// or from panels is B from rows.
#[test]
fn tile_operands_from_every_source_agree() {
    let (rows, cols) = (37, 70);
    let dense = sparse(rows, cols, 5);
    let compressed = SparseRows::from_dense(&dense, cols);
    let from_rows = Tiled::from_rows(&dense, rows, cols);
    let mut from_sparse = Tiled::default();
    from_sparse.fill_from_sparse(compressed.view());
    let mut transposed = Tiled::default();
    transposed.fill_transposed_from_sparse(compressed.view());
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(from_sparse.view().get(r, c), dense[r * cols + c]);
            assert_eq!(from_rows.view().get(r, c), dense[r * cols + c]);
            assert_eq!(transposed.view().get(c, r), dense[r * cols + c]);
        }
    }
    let (k, n) = (40, 32);
    let b = values(k * n, 9);
    let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    let panels: Vec<f32> = (0..k * n)
        .map(|i| {
            let (p, r, c) = (i / (k * 16), (i / 16) % k, i % 16);
            b[r * n + p * 16 + c]
        })
        .collect();
    let [mut x, mut y, mut z] = [(); 3].map(|_| Pairs::default());
    x.fill(Source::Rows(&b), k, n);
    y.fill(Source::Transposed(&bt), k, n);
    z.fill(Source::Panels(&panels), k, n);
    // Both panels and both tiles of k (the second half padding).
    for p in 0..2 {
        for j in 0..2 {
            assert_eq!(x.view().tile(p, j), y.view().tile(p, j));
            assert_eq!(x.view().tile(p, j), z.view().tile(p, j));
        }
    }
    // No k: operands of no values, as the tiles' product of k = 0 takes.
    let empty = Tiled::from_rows(&[], 9, 0);
    assert_eq!((empty.view().rows(), empty.view().k()), (9, 0));
    let mut none = Pairs::default();
    none.fill(Source::Rows(&[]), 0, 20);
    assert_eq!((none.view().k(), none.view().n()), (0, 20));
}

/// A checksum of the bits that every float32 kernel with a form per
/// instruction set computes: the sparse products (compressed, paired, by
/// columns, the weight gradient's), the activations forward and backward
/// with dropout, and Adam's step with the L2 terms.
fn bits_of_every_float32_kernel() -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut eat = |v: &[f32]| {
        for x in v {
            hash = (hash ^ x.to_bits() as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    let (rows, k, n) = (300, 784, 192);
    let (x, w) = (sparse(rows, k, 11), values(k * n, 12));
    let compressed = SparseRows::from_dense(&x, k);
    let mut panels = Panels::default();
    panels.pack(&w, k, n, n);
    let mut z = vec![0.0; rows * n];
    spmm(&mut z, compressed.view(), panels.view(), false);
    eat(&z);
    spmm_by_columns(
        &mut z[..64 * n],
        compressed.view().slice(0..64),
        panels.view(),
        &mut ColumnParts::default(),
    );
    eat(&z);
    let pairs = PairRows::from_rows(compressed.view(), &pair_order(compressed.view()));
    spmm_paired(&mut z, pairs.view(), panels.view());
    eat(&z);
    let mut dw = vec![0.0; n * k];
    spmm_t(
        &mut dw,
        &ColumnBlocks::new(compressed.view(), 64),
        &values(rows * n, 13),
        n,
        false,
    );
    eat(&dw);
    let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, k, 10).unwrap());
    let first = &layout.layers[0];
    let mask = vec![1.0f32 / 0.9; n];
    let mut a = z.clone();
    forward_rows(
        &mut a,
        n,
        &values(n, 14),
        &first.branches,
        MaskRows::Unit(&mask),
    );
    eat(&a);
    let mut dz = values(rows * n, 15);
    backward_rows(
        &mut dz,
        &a,
        n,
        &first.branches,
        &[0.9, 0.9],
        MaskRows::Unit(&mask),
    );
    eat(&dz);
    let (mut p, g) = (values(layout.len, 16), values(layout.len, 17));
    let mut adam = Adam::new(layout.len, 0.9, 0.999, 1e-8, true);
    let mut decay = Vec::new();
    scratchnet::nn::l2::decay(&layout, &[1.19, 1.05, 1.07, 2.22], 50_000, &mut decay);
    for _ in 0..3 {
        adam.step(&mut p, &g, &decay, 1e-3);
    }
    eat(&p);
    hash
}

/// The bits of [`bits_of_every_float32_kernel`] on this family, for
/// [`every_kernel_family_gives_the_same_bits`] to compare.
#[test]
fn float32_kernels_print_their_bits() {
    println!("KERNEL BITS {:016x}", bits_of_every_float32_kernel());
}

/// The float32 kernels' forms per instruction set compute each value with
/// the same operations in the same order: every family the machine has
/// gives the same bits.
#[test]
#[ignore = "slow suite, kernel families: `.ci/run` runs it"]
fn every_kernel_family_gives_the_same_bits() {
    use scratchnet::tensor::kernels::KERNELS_ENV;
    let mut seen = Vec::new();
    for k in Kernels::ALL.into_iter().filter(|k| k.available()) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "kernels::float32_kernels_print_their_bits",
                "--exact",
                "--nocapture",
            ])
            .env(KERNELS_ENV, k.name())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout);
        let bits = log
            .lines()
            .find_map(|l| l.strip_prefix("KERNEL BITS "))
            .unwrap_or_else(|| panic!("{}: no bits in {log}", k.name()))
            .to_string();
        println!("{}: {bits}", k.name());
        seen.push((k.name(), bits));
    }
    assert!(seen.len() >= 2, "only {seen:?} here: nothing to compare");
    assert!(seen.iter().all(|(_, b)| *b == seen[0].1), "{seen:?}");
}

/// This module again on every other kernel family the machine has.
#[test]
#[ignore = "slow suite, kernel families: `.ci/run` runs it"]
fn every_kernel_family_writes_only_its_output() {
    common::on_the_other_kernel_families(
        "kernels::every_kernel_family_writes_only_its_output",
        &[
            "kernels::sparse_products_write_only_their_output",
            "kernels::dense_products_and_transposes_write_only_their_output",
            "kernels::shifted_rows_hold_exactly_the_pixels_that_stay",
            "kernels::outputs_too_short_and_strides_too_small_are_refused",
            "kernels::amx_products_match_float64_and_write_only_their_output",
        ],
    );
}
