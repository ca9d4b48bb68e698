use super::layout::Source;
use super::*;
use crate::tensor::kernels::Kernels;
use crate::tensor::sparse::SparseRows;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| crate::nn::dropout::uniform(seed, i as u64) * 2.0 - 1.0)
        .collect()
}

/// Rows of exact bfloat16 values (MNIST-like: bytes / 256, about 80%
/// zeros, some rows and whole column ranges empty).
fn pixels(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    values(rows * cols, seed)
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (r, c) = (i / cols, i % cols);
            match v > 0.6 && c % 37 > 3 && r % 11 != 5 {
                true => ((v * 1000.0) as i32 % 256) as f32 / 256.0,
                false => 0.0,
            }
        })
        .collect()
}

/// The worst `|got - want| / Σ|a·b|` over the result: the error relative
/// to the size of the terms summed, what rounding can be held to.
fn worst(got: &[f32], a: &[f32], b: &[f32], rows: usize, k: usize, n: usize) -> f64 {
    let mut worst: f64 = 0.0;
    for r in 0..rows {
        for c in 0..n {
            let (mut sum, mut size) = (0.0f64, 0.0f64);
            for j in 0..k {
                let p = a[r * k + j] as f64 * b[j * n + c] as f64;
                sum += p;
                size += p.abs();
            }
            let g = got[r * n + c] as f64;
            worst = worst.max((g - sum).abs() / size.max(1e-30));
        }
    }
    worst
}

fn units() -> Vec<Unit> {
    let units: Vec<Unit> = Kernels::ALL
        .into_iter()
        .filter(|k| k.available())
        .filter_map(Kernels::unit)
        .collect();
    for k in Kernels::ALL {
        if k.unit().is_some() && !k.available() {
            eprintln!(
                "skipped the {} products: this CPU has no {}",
                k.name(),
                k.name()
            );
        }
    }
    units
}

#[test]
fn three_terms_hold_every_bit_of_a_float32() {
    let mut t = [0u16; 3];
    for (i, &x) in values(100_000, 3).iter().enumerate() {
        let x = x * 10f32.powi(i as i32 % 20 - 10);
        split(x, &mut t);
        let back = (t.iter().map(|&h| layout::from_bf16(h) as f64).sum::<f64>()) as f32;
        assert_eq!(back, x, "{x}: {t:?}");
        let mut one = [0u16; 1];
        split(x, &mut one);
        assert!(((layout::from_bf16(one[0]) - x) / x).abs() <= 1.0 / 256.0);
    }
    assert_eq!(to_bf16(1.0), 0x3f80);
    assert!(layout::from_bf16(to_bf16(f32::NAN)).is_nan());
}

/// Each unit against a float64 product, on odd shapes (rows, k and n not
/// whole tiles) and a long k, results row-major and in panels, one to three
/// terms; the same bits on 1, 2 and 3 threads.
#[test]
fn products_match_float64_on_every_unit_and_shape() {
    // Seen (2026-12-06), |error| / Σ|a·b|: one term 2.7e-3, two 5.5e-6,
    // three 1.4e-7 (AMX) and 3.0e-7 (AVX512-BF16); the bounds are about 10x.
    let bound = [3e-2, 6e-5, 3e-6];
    for unit in units() {
        let mut seen = [0.0f64; 3];
        for (rows, k, n) in [
            (1, 1, 1),
            (17, 33, 15),
            (50, 784, 192),
            (33, 31, 48),
            (64, 64, 17),
            (3, 800, 32),
            // A long k (as a weight gradient's), which goes a chunk at a time.
            (40, 9000, 48),
        ] {
            let a = pixels(rows, k, rows as u64);
            let tiled = Tiled::from_rows(&a, k, true).expect("exact");
            let b = values(k * n, k as u64);
            for terms in 1..=3 {
                let mut pairs = vec![Pairs::default(); terms];
                Pairs::fill_terms(&mut pairs, Source::Rows(&b), k, n);
                let views: Vec<PairsView> = pairs.iter().map(Pairs::view).collect();
                let mut outs = Vec::new();
                for threads in [1, 2, 3] {
                    let mut c = vec![f32::NAN; rows * n];
                    let out = Out::Rows {
                        data: &mut c,
                        rows,
                        n,
                        stride: n,
                    };
                    product(unit, out, tiled.view(), &views, threads);
                    outs.push(c);
                }
                assert!(
                    outs.iter().all(|c| *c == outs[0]),
                    "{unit:?} {rows}x{k}x{n}: threads differ"
                );
                let w = worst(&outs[0], &a, &b, rows, k, n);
                seen[terms - 1] = seen[terms - 1].max(w);
                assert!(
                    w <= bound[terms - 1],
                    "{unit:?} {rows}x{k}x{n}, {terms} terms: {w:.2e}"
                );
                if n % 16 == 0 {
                    // The same result in column panels.
                    let mut panels = vec![f32::NAN; rows * n];
                    let out = Out::Panels {
                        data: &mut panels,
                        rows,
                        n,
                    };
                    product(unit, out, tiled.view(), &views, 2);
                    for r in 0..rows {
                        for c in 0..n {
                            assert_eq!(
                                panels[(c / 16) * rows * 16 + r * 16 + c % 16],
                                outs[0][r * n + c]
                            );
                        }
                    }
                }
            }
        }
        println!(
            "{unit:?}: worst |error| / Σ|a·b| by terms (1, 2, 3): {:.1e} {:.1e} {:.1e}",
            seen[0], seen[1], seen[2]
        );
    }
}

/// A from compressed rows, and from their transpose, is A from the dense
/// rows; B from a transpose or panels is B from rows.
#[test]
fn operands_from_every_source_agree() {
    let (rows, cols) = (37, 70);
    let dense = pixels(rows, cols, 5);
    let sparse = SparseRows::from_dense(&dense, cols);
    let from_rows = Tiled::from_rows(&dense, cols, true).unwrap();
    let mut from_sparse = Tiled::default();
    assert!(from_sparse.fill_from_sparse(sparse.view()));
    let mut transposed = Tiled::default();
    assert!(transposed.fill_transposed_from_sparse(sparse.view()));
    for r in 0..rows {
        for c in 0..cols {
            assert_eq!(from_sparse.view().get(r, c), dense[r * cols + c]);
            assert_eq!(from_rows.view().get(r, c), dense[r * cols + c]);
            assert_eq!(transposed.view().get(c, r), dense[r * cols + c]);
        }
    }
    assert!(
        Tiled::from_rows(&[0.1], 1, true).is_none(),
        "0.1 is not a bfloat16"
    );
    let (k, n) = (40, 32);
    let b = values(k * n, 9);
    let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    let panels: Vec<f32> = (0..k * n)
        .map(|i| {
            let (p, r, c) = (i / (k * 16), (i / 16) % k, i % 16);
            b[r * n + p * 16 + c]
        })
        .collect();
    let mut x = vec![Pairs::default(); 2];
    let mut y = vec![Pairs::default(); 2];
    let mut z = vec![Pairs::default(); 2];
    Pairs::fill_terms(&mut x, Source::Rows(&b), k, n);
    Pairs::fill_terms(&mut y, Source::Transposed(&bt), k, n);
    Pairs::fill_terms(&mut z, Source::Panels(&panels), k, n);
    for t in 0..2 {
        assert_eq!(x[t].view().tile(1, 0), y[t].view().tile(1, 0));
        assert_eq!(x[t].view().tile(1, 0), z[t].view().tile(1, 0));
    }
}
