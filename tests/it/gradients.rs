//! Finite-difference checks of every layer's backward pass and of the whole
//! network's gradient.

use scratchnet::compare;
use scratchnet::nn::activation::{backward_rows, forward_rows};
use scratchnet::nn::dense::{self, Dims};
use scratchnet::nn::dropout::{
    fill_mask, stream_key, Draws, Dropout, DropoutMode, GivenMasks, MaskRows,
};
use scratchnet::nn::layout::BranchSlot;
use scratchnet::nn::{
    softmax_ce, Activation, Arch, InitScheme, Input, InputKind, Layout, Network, Params, TrainInput,
};
use scratchnet::tensor::sparse::{pair_order, ColumnBlocks, PairRows, SparseRows};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| scratchnet::nn::dropout::uniform(seed, i as u64) * 2.0 - 1.0)
        .collect()
}

/// Central difference of `f` at every coordinate of `x`. The functions
/// differentiated are float64 references written here from the math, so
/// the differences are accurate to ~1e-9 and the comparison measures the
/// float32 backward passes' own error.
fn numeric_grad(x: &mut [f64], h: f64, mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    (0..x.len())
        .map(|i| {
            let orig = x[i];
            x[i] = orig + h;
            let up = f(x);
            x[i] = orig - h;
            let down = f(x);
            x[i] = orig;
            (up - down) / (2.0 * h)
        })
        .collect()
}

fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// An analytic gradient against a numeric one: relative differences, with
/// values below 1e-3 compared absolutely (as if they were 1e-3).
fn assert_close(what: &str, analytic: &[f32], numeric: &[f64], tol: f64) {
    compare::assert_close(what, analytic, numeric, 1e-3, tol);
}

/// `L = Σ g ⊙ (x·wᵀ)` in float64: `x` `[batch, in]`, `w` `[out, in]`.
fn dense_loss(x: &[f64], w: &[f64], g: &[f32], d: Dims) -> f64 {
    let mut loss = 0.0;
    for r in 0..d.batch {
        for o in 0..d.outputs {
            let z: f64 = (0..d.inputs)
                .map(|i| x[r * d.inputs + i] * w[o * d.inputs + i])
                .sum();
            loss += z * g[r * d.outputs + o] as f64;
        }
    }
    loss
}

// Seen (2026-12-06), each bound about 10x above: dense dW 2.2e-7, dX
// 1.2e-6; activation dZ 1.5e-6; softmax-CE dZ 1.8e-7; the whole network
// 2.1e-5 (W2 under per-unit dropout: A1's tanh is a rational approximation
// good to 5e-7, the reference's is float64's).
#[test]
fn dense_backward_matches_finite_differences() {
    let d = Dims {
        batch: 5,
        inputs: 7,
        outputs: 3,
    };
    let (x, w) = (values(35, 1), values(21, 2));
    let g = values(15, 3); // dL/dz for L = Σ g ⊙ z
    let (mut dw, mut db, mut dx) = (vec![0.0; 21], vec![0.0; 3], vec![0.0; 35]);
    dense::backward(Some(&mut dx), &mut dw, &mut db, &g, &x, &w, d, 1);
    let (x64, mut w64) = (wide(&x), wide(&w));
    let numeric = numeric_grad(&mut w64, 1e-4, |w| dense_loss(&x64, w, &g, d));
    assert_close("dense dW", &dw, &numeric, 2e-6);
    let (mut x64, w64) = (wide(&x), wide(&w));
    let numeric = numeric_grad(&mut x64, 1e-4, |x| dense_loss(x, &w64, &g, d));
    assert_close("dense dX", &dx, &numeric, 1.2e-5);
    // db: z = xWᵀ + b, so dL/db_c = Σ_r g[r, c].
    let want: Vec<f64> = (0..3)
        .map(|c| (0..5).map(|r| g[r * 3 + c] as f64).sum())
        .collect();
    assert_close("dense db", &db, &want, 1e-6);
}

#[test]
fn activation_backward_matches_finite_differences_with_and_without_dropout() {
    let width = 9;
    let branches = vec![
        BranchSlot {
            cols: 0..5,
            act: Some(Activation::Relu),
            index: 0,
        },
        BranchSlot {
            cols: 5..9,
            act: Some(Activation::Tanh),
            index: 1,
        },
    ];
    let keeps = [0.7f32, 0.6];
    let rows = 6;
    let bias = values(width, 4);
    let g = values(rows * width, 5);
    for mode in [None, Some(DropoutMode::Unit), Some(DropoutMode::Sample)] {
        let mask_rows = if mode == Some(DropoutMode::Sample) {
            rows
        } else {
            1
        };
        let mut mask = vec![0.0; mask_rows * width];
        for b in &branches {
            fill_mask(
                &mut mask,
                0,
                width,
                b.cols.clone(),
                keeps[b.index],
                stream_key(9, 0, 0),
            );
        }
        let m = match mode {
            None => MaskRows::Off,
            Some(DropoutMode::Unit) => MaskRows::Unit(&mask),
            Some(DropoutMode::Sample) => MaskRows::Sample(&mask),
        };
        // Keep z away from relu's kink so the finite difference is meaningful.
        let z: Vec<f32> = values(rows * width, 6)
            .iter()
            .map(|v| if v.abs() < 0.05 { v + 0.1 } else { *v })
            .collect();
        // L = Σ g ⊙ act(z + b)·s in float64, s the mask's scales (0 or 1/keep).
        let loss = |z: &[f64]| {
            let mut sum = 0.0;
            for (k, &z) in z.iter().enumerate() {
                let (r, c) = (k / width, k % width);
                let v = z + bias[c] as f64;
                let a = if c < 5 { v.max(0.0) } else { v.tanh() };
                let s = m.row(r, width).map_or(1.0, |s| s[c] as f64);
                sum += a * s * g[k] as f64;
            }
            sum
        };
        let mut a = z.clone();
        forward_rows(&mut a, width, &bias, &branches, m);
        let mut dz = g.clone();
        backward_rows(&mut dz, &a, width, &branches, &keeps, m);
        assert_close(
            &format!("activation dZ ({mode:?})"),
            &dz,
            &numeric_grad(&mut wide(&z), 1e-6, loss),
            1.5e-5,
        );
    }
}

/// The gradient `(p - onehot(y)) / m` is that of `-log p_y`: the notebook's
/// `+ 1e-7` inside the log (kept in the loss reported) would move the
/// derivative by a relative `1e-7 / p_y`, so the reference leaves it out.
#[test]
fn softmax_cross_entropy_gradient_matches_finite_differences() {
    let (rows, classes) = (4, 10);
    let labels = [3u8, 0, 9, 3];
    let logits: Vec<f32> = values(rows * classes, 7).iter().map(|v| v * 3.0).collect();
    let loss = |z: &[f64]| {
        let ce: f64 = z
            .chunks(classes)
            .zip(labels)
            .map(|(row, y)| {
                let max = row.iter().copied().fold(f64::MIN, f64::max);
                let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
                sum.ln() + max - row[y as usize]
            })
            .sum();
        ce / rows as f64
    };
    let mut dz = logits.clone();
    softmax_ce::loss_and_grad(&mut dz, &labels, classes, 1.0 / rows as f32);
    let numeric = numeric_grad(&mut wide(&logits), 1e-5, loss);
    assert_close("softmax-CE dZ", &dz, &numeric, 2e-6);
}

#[test]
fn softmax_is_stable_for_huge_logits() {
    let mut z = vec![1000.0f32, 0.0, -1000.0];
    softmax_ce::softmax(&mut z, 3);
    assert_eq!(z, [1.0, 0.0, 0.0]);
    let mut z = vec![1e30f32, 1e30];
    let loss = softmax_ce::loss_and_grad(&mut z, &[1], 2, 1.0);
    assert!((loss - std::f64::consts::LN_2).abs() < 1e-6, "{loss}");
}

/// Odd branch widths always store the first layer's weight in rows; whole
/// panels store it in panels for sparse input: the tests run every pairing
/// of the two with both input kinds.
const ARCHES: [&str; 2] = ["relu:37|tanh:20,relu:11", "relu:32|tanh:16,relu:11"];
const KINDS: [InputKind; 2] = [InputKind::Dense, InputKind::Sparse];

fn layout(spec: &str, inputs: usize, classes: usize) -> Layout {
    Layout::new(&Arch::parse(spec, inputs, classes).unwrap())
}

#[test]
fn whole_network_gradient_matches_finite_differences() {
    whole_network_gradient_check(layout("relu:6|tanh:5,relu:4", 8, 3));
}

/// The first layer's weight stored in panels gives what it gives in rows,
/// bit for bit: the same loss, the same gradient (once in rows) and the
/// same logits, for dense, compressed and paired input, few rows and many,
/// in every dropout mode. (The tests above cover the storage in rows.)
#[test]
fn first_layer_in_panels_computes_what_rows_compute() {
    let layout = layout(ARCHES[1], 61, 10);
    let init = layout.init(InitScheme::He, 4);
    let p_panels = Params::from_rows(&layout, &init, InputKind::Sparse);
    let p_rows = Params::from_rows(&layout, &init, InputKind::Dense);
    assert!(
        p_rows.in_storage_order() != p_panels.in_storage_order(),
        "the storages differ"
    );
    let keeps = [0.8f32, 0.7, 0.9];
    for n in [1, 128, 700] {
        let x: Vec<f32> = values(n * 61, 40 + n as u64)
            .iter()
            .map(|&v| if v > 0.6 { v } else { 0.0 })
            .collect();
        let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
        let compressed = SparseRows::from_dense(&x, 61);
        let paired = PairRows::from_rows(compressed.view(), &pair_order(compressed.view()));
        let sparse_by_column = ColumnBlocks::new(compressed.view(), 64);
        let paired_by_column = ColumnBlocks::new(paired.view(), 64);
        let paired_labels: Vec<u8> = pair_order(compressed.view())
            .iter()
            .map(|&r| labels[r as usize])
            .collect();
        let inputs = [
            ("dense", TrainInput::Dense(&x), &labels),
            (
                "compressed",
                TrainInput::Sparse {
                    rows: compressed.view(),
                    by_column: &sparse_by_column,
                },
                &labels,
            ),
            (
                "paired",
                TrainInput::Paired {
                    rows: paired.view(),
                    by_column: &paired_by_column,
                },
                &paired_labels,
            ),
        ];
        for (what, input, labels) in inputs {
            for mode in [None, Some(DropoutMode::Unit), Some(DropoutMode::Sample)] {
                let dropout = mode.map(|mode| Dropout {
                    mode,
                    keeps: &keeps,
                    draws: Draws::Key(stream_key(7, n as u64, 0)),
                });
                let run = |params: &Params| {
                    let net = Network::new(layout.clone(), 2);
                    // (Paired rows are evaluated two at a time.)
                    let mut ws = net.workspace(n + 1);
                    let mut g = vec![0.0; layout.len];
                    let loss = net.loss_and_grads(
                        params,
                        &mut g,
                        input,
                        labels,
                        &mut ws,
                        dropout.as_ref(),
                    );
                    let mut logits = Vec::new();
                    let x = input.forward();
                    net.logits_chunks(params, x, &mut ws, |_, z| logits.extend_from_slice(z));
                    (loss, params.to_rows(&g), logits)
                };
                assert!(
                    run(&p_panels) == run(&p_rows),
                    "{what}, {n} rows, {mode:?}: panels and rows differ"
                );
            }
        }
    }
}

/// The network's mean cross-entropy in float64, from its definition (see
/// `nn/network.rs`): each layer `Z = A·Wᵀ + b`, each hidden branch's
/// activation times its dropout scale (`kept / keep`, one row of masks for
/// every sample per unit), softmax, and `-log(p_y + eps)`.
fn reference_loss(
    layout: &Layout,
    p: &[f64],
    x: &[f32],
    labels: &[u8],
    masks: Option<(&GivenMasks, &[f32])>,
    eps: f64,
) -> f64 {
    let rows = labels.len();
    let (mut a, mut width) = (wide(x), layout.arch.inputs);
    let last = layout.layers.len() - 1;
    for (l, layer) in layout.layers.iter().enumerate() {
        let out = layer.outputs;
        let mut z = vec![0.0; rows * out];
        for r in 0..rows {
            for o in 0..out {
                let w = &p[layer.w.start + o * width..][..width];
                let dot: f64 = a[r * width..][..width]
                    .iter()
                    .zip(w)
                    .map(|(a, w)| a * w)
                    .sum();
                z[r * out + o] = dot + p[layer.b.start + o];
            }
        }
        if l < last {
            for br in &layer.branches {
                for r in 0..rows {
                    for c in br.cols.clone() {
                        let v = &mut z[r * out + c];
                        *v = match br.act {
                            Some(Activation::Relu) => v.max(0.0),
                            _ => v.tanh(),
                        };
                        if let Some((m, keeps)) = masks {
                            let kept = &m.layers[l];
                            let row = if kept.len() == out { 0 } else { r };
                            *v *= kept[row * out + c] as f64 / keeps[br.index] as f64;
                        }
                    }
                }
            }
        }
        (a, width) = (z, out);
    }
    let ce: f64 = a
        .chunks(width)
        .zip(labels)
        .map(|(row, &y)| {
            let max = row.iter().copied().fold(f64::MIN, f64::max);
            let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
            -((row[y as usize] - max).exp() / sum + eps).ln()
        })
        .sum();
    ce / rows as f64
}

/// Masks of 0 and 1 for every hidden layer, kept with about each branch's
/// probability: `rows` rows of them.
fn some_masks(layout: &Layout, rows: usize, keeps: &[f32], seed: u64) -> GivenMasks {
    let hidden = &layout.layers[..layout.layers.len() - 1];
    let layers = hidden
        .iter()
        .map(|layer| {
            (0..rows * layer.outputs)
                .map(|i| {
                    let br = layer
                        .branches
                        .iter()
                        .find(|b| b.cols.contains(&(i % layer.outputs)));
                    let u = scratchnet::nn::dropout::uniform(seed, i as u64);
                    (u < keeps[br.unwrap().index]) as u8
                })
                .collect()
        })
        .collect();
    GivenMasks { layers }
}

fn whole_network_gradient_check(layout: Layout) {
    let net = Network::new(layout.clone(), 1);
    let rows = 7;
    let x = values(rows * 8, 11);
    let labels: Vec<u8> = (0..rows).map(|i| (i % 3) as u8).collect();
    let keeps = [0.8f32, 0.7, 0.9];
    let mut params = layout.init(InitScheme::He, 5);
    // Non-zero biases so the check covers them properly.
    for b in &layout.biases {
        params[b.range.clone()]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 0.1 * (i as f32 - 1.0));
    }
    let stored = Params::from_rows(&layout, &params, InputKind::Dense);
    for mode in [None, Some(DropoutMode::Unit), Some(DropoutMode::Sample)] {
        let mask_rows = if mode == Some(DropoutMode::Sample) {
            rows
        } else {
            1
        };
        let masks = some_masks(&layout, mask_rows, &keeps, 12);
        let dropout = mode.map(|mode| Dropout {
            mode,
            keeps: &keeps,
            draws: Draws::Given(&masks),
        });
        let given = mode.map(|_| (&masks, &keeps[..]));
        let mut ws = net.workspace(rows);
        let mut grads = vec![0.0; layout.len];
        let input = TrainInput::Dense(&x);
        let loss = net.loss_and_grads(
            &stored,
            &mut grads,
            input,
            &labels,
            &mut ws,
            dropout.as_ref(),
        );
        let mut p64 = wide(&params);
        let reported = reference_loss(&layout, &p64, &x, &labels, given, 1e-7);
        assert!(
            (loss - reported).abs() < 1e-6 * reported,
            "{mode:?}: loss {loss}, the reference's {reported}"
        );
        let mut f = |p: &[f64]| reference_loss(&layout, p, &x, &labels, given, 0.0);
        let coarse = numeric_grad(&mut p64, 1e-5, &mut f);
        let fine = numeric_grad(&mut p64, 1e-6, &mut f);
        // A ReLU kink within a step spoils a central difference: where the
        // two step sizes disagree, the coordinate is left out (and few may be).
        let smooth: Vec<bool> = coarse
            .iter()
            .zip(&fine)
            .map(|(&c, &f)| (c - f).abs() < 1e-7 * c.abs().max(f.abs()) + 1e-9)
            .collect();
        let left_out = smooth.iter().filter(|s| !**s).count();
        assert!(
            left_out * 20 < layout.len,
            "{left_out} of {} coordinates near a kink",
            layout.len
        );
        for t in layout.tensors() {
            let keep: Vec<usize> = t.range.clone().filter(|&i| smooth[i]).collect();
            let analytic: Vec<f32> = keep.iter().map(|&i| grads[i]).collect();
            let numeric: Vec<f64> = keep.iter().map(|&i| fine[i]).collect();
            assert_close(
                &format!("network {} ({mode:?})", t.name),
                &analytic,
                &numeric,
                2e-4,
            );
        }
    }
}

/// The sparse first layer (compressed input) against the dense path, which
/// the finite-difference checks above cover: same loss, same gradients, same
/// predictions, over several gradient blocks, odd widths and every dropout
/// mode.
#[test]
fn sparse_input_gives_the_dense_loss_and_gradients() {
    for spec in ARCHES {
        for kind in KINDS {
            sparse_against_dense(layout(spec, 61, 10), kind);
        }
    }
}

fn sparse_against_dense(layout: Layout, kind: InputKind) {
    let net = Network::new(layout.clone(), 2);
    let rows = 301;
    // About 80% zeros, like MNIST.
    let x: Vec<f32> = values(rows * 61, 21)
        .iter()
        .map(|&v| if v > 0.6 { v } else { 0.0 })
        .collect();
    let labels: Vec<u8> = (0..rows).map(|i| (i * 7 % 10) as u8).collect();
    let compressed = SparseRows::from_dense(&x, 61);
    let by_column = ColumnBlocks::new(compressed.view(), 64);
    let sparse = TrainInput::Sparse {
        rows: compressed.view(),
        by_column: &by_column,
    };
    let params = Params::from_rows(&layout, &layout.init(InitScheme::He, 8), kind);
    let keeps = [0.8f32, 0.7, 0.9];
    for mode in [None, Some(DropoutMode::Unit), Some(DropoutMode::Sample)] {
        let dropout = mode.map(|mode| Dropout {
            mode,
            keeps: &keeps,
            draws: Draws::Key(stream_key(5, 2, 0)),
        });
        let mut ws = net.workspace(rows);
        let run = |input, ws: &mut _| {
            let mut g = vec![0.0; layout.len];
            let loss = net.loss_and_grads(&params, &mut g, input, &labels, ws, dropout.as_ref());
            (loss, g)
        };
        let (dense_loss, dense_g) = run(TrainInput::Dense(&x), &mut ws);
        let (sparse_loss, sparse_g) = run(sparse, &mut ws);
        // Seen (2026-12-06): losses 6.6e-9 apart, gradients 3.6e-6.
        let apart = (dense_loss - sparse_loss).abs() / dense_loss;
        println!("{mode:?}: losses {apart:.1e} apart");
        assert!(apart < 7e-8, "{mode:?}: loss {dense_loss} vs {sparse_loss}");
        let numeric: Vec<f64> = dense_g.iter().map(|&v| v as f64).collect();
        let what = format!("sparse ({mode:?}, {kind:?} storage, {})", layout.arch);
        assert_close(&what, &sparse_g, &numeric, 4e-5);
    }
    let mut ws = net.workspace(100);
    assert_eq!(
        net.predict(&params, Input::Dense(&x), &mut ws),
        net.predict(&params, Input::Sparse(compressed.view()), &mut ws)
    );
}

/// Many rows go through the network a block at a time, each block through
/// every layer on one thread; a few rows (a minibatch) go layer by layer,
/// each product split among the threads. The two must agree: the same
/// logits for dense, compressed and paired input, and, where the dropout
/// scales do not depend on the row (none, or per unit), the gradient of all
/// the rows equal to the row-weighted gradients of chunks of them.
#[test]
fn many_rows_in_blocks_agree_with_few_rows_layer_by_layer() {
    for spec in ARCHES {
        for kind in KINDS {
            blocks_against_layers(layout(spec, 61, 10), kind);
        }
    }
}

fn blocks_against_layers(layout: Layout, kind: InputKind) {
    let (inputs, rows, chunk) = (layout.arch.inputs, 1301, 256);
    let net = Network::new(layout.clone(), 3);
    let x: Vec<f32> = values(rows * inputs, 31)
        .iter()
        .map(|&v| if v > 0.6 { v } else { 0.0 })
        .collect();
    let labels: Vec<u8> = (0..rows).map(|i| (i * 3 % 10) as u8).collect();
    let compressed = SparseRows::from_dense(&x, inputs);
    let paired = PairRows::from_rows(compressed.view(), &pair_order(compressed.view()));
    let params = Params::from_rows(&layout, &layout.init(InitScheme::He, 9), kind);
    let logits = |input: Input<'_>, capacity: usize| {
        let mut all = Vec::new();
        let mut ws = net.workspace(capacity);
        net.logits_chunks(&params, input, &mut ws, |_, l| all.extend_from_slice(l));
        all
    };
    for (what, input) in [
        ("dense", Input::Dense(&x)),
        ("compressed", Input::Sparse(compressed.view())),
        ("paired", Input::Paired(paired.view())),
    ] {
        let whole = logits(input, rows);
        assert_eq!(whole.len(), rows * 10);
        assert!(
            whole == logits(input, chunk),
            "{what}: logits differ ({kind:?} storage, {})",
            layout.arch
        );
    }

    let keeps = [0.8f32, 0.7, 0.9];
    for mode in [None, Some(DropoutMode::Unit)] {
        let dropout = mode.map(|mode| Dropout {
            mode,
            keeps: &keeps,
            draws: Draws::Key(stream_key(6, 3, 0)),
        });
        let grads = |r: std::ops::Range<usize>, sparse: bool| {
            let part = compressed.view().slice(r.clone());
            let by_column = ColumnBlocks::new(part, 64);
            let input = if sparse {
                TrainInput::Sparse {
                    rows: part,
                    by_column: &by_column,
                }
            } else {
                TrainInput::Dense(&x[r.start * inputs..r.end * inputs])
            };
            let mut g = vec![0.0; layout.len];
            let mut ws = net.workspace(r.len());
            net.loss_and_grads(
                &params,
                &mut g,
                input,
                &labels[r],
                &mut ws,
                dropout.as_ref(),
            );
            g
        };
        for sparse in [false, true] {
            let whole = grads(0..rows, sparse);
            let mut chunked = vec![0.0f64; layout.len];
            for first in (0..rows).step_by(chunk) {
                let r = first..rows.min(first + chunk);
                let share = r.len() as f64 / rows as f64;
                for (c, g) in chunked.iter_mut().zip(grads(r, sparse)) {
                    *c += share * g as f64;
                }
            }
            let what = format!(
                "blocks ({mode:?}, sparse {sparse}, {kind:?} storage, {})",
                layout.arch
            );
            // Seen (2026-12-06): 3.6e-6.
            assert_close(&what, &whole, &chunked, 4e-5);
        }
    }
}
