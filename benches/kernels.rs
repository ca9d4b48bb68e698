//! Micro-benchmarks of the kernels that matter (`cargo bench`): every matrix
//! product of the notebook's network at minibatch and full-batch sizes, the
//! fused bias+activation+dropout passes, softmax + cross-entropy, and the
//! optimiser step. Threads: 2 (the development machine's cores).

use scratchnet::data::batch::Batcher;
use scratchnet::data::distort::Distortion;
use scratchnet::data::Dataset;
use scratchnet::nn::activation::{backward_rows, forward_rows};
use scratchnet::nn::arch::NOTEBOOK_ARCH;
use scratchnet::nn::dropout::MaskRows;
use scratchnet::nn::softmax_ce::loss_and_grad;
use scratchnet::nn::{Arch, Layout};
use scratchnet::optim::Adam;
use scratchnet::tensor::bf16::{self, layout::Source, Out, Pairs, Tiled};
use scratchnet::tensor::kernels::Kernels;
use scratchnet::tensor::sparse::{
    spmm, spmm_by_columns, spmm_t, ColumnBlocks, ColumnParts, Panels, SparseRows,
};
use scratchnet::tensor::{matmul, Mat, MatMut};
use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const THREADS: usize = 2;

fn main() {
    rayon::ThreadPoolBuilder::new()
        .num_threads(THREADS)
        .build_global()
        .unwrap();
    // `cargo bench --bench kernels -- NAME...` runs the benchmarks whose
    // names contain one of the NAMEs.
    let names: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let ran = std::cell::Cell::new(0);
    let run = |name: String, bench: &dyn Fn(Bencher)| {
        if names.is_empty() || names.iter().any(|n| name.contains(n.as_str())) {
            ran.set(ran.get() + 1);
            bench(Bencher { name })
        }
    };
    // Runs a benchmark under its function's name, once per argument.
    macro_rules! each {
        ($bench:ident) => {
            run(stringify!($bench).into(), &|b| $bench(b))
        };
        ($bench:ident, [$($arg:expr),*]) => {
            for arg in [$($arg),*] {
                run(format!("{}/{arg}", stringify!($bench)), &|b| $bench(b, arg));
            }
        };
    }
    println!(
        "{:<48} {:>12} {:>12} {:>16}",
        "benchmark", "median", "fastest", "samples x iters"
    );
    each!(gemm_shapes_of_one_step, [128, 50_000]);
    each!(gemm_full_batch_each, [0, 1, 2, 3, 4, 5]);
    each!(bias_activation_dropout_forward, [128, 50_000]);
    each!(bias_activation_dropout_backward, [128, 50_000]);
    each!(softmax_cross_entropy, [128, 50_000]);
    each!(adam_step_all_parameters);
    each!(sparse_first_layer_forward, [128, 50_000]);
    each!(sparse_first_layer_forward_by_columns, [128, 512]);
    each!(sparse_first_layer_weight_gradient, [128, 50_000]);
    each!(sparse_prepare_minibatch, ["shift", "affine", "elastic"]);
    each!(pack_first_layer_weight);
    each!(gemm_full_batch_forward);
    each!(gemm_square_2048);
    each!(bf16_first_layer_forward, [128, 50_000]);
    each!(bf16_first_layer_weight_gradient, [128, 50_000]);
    each!(bf16_gradient_to_pairs, [128, 50_000]);
    each!(bf16_minibatch_tiles);
    if ran.get() == 0 {
        eprintln!("no benchmark's name contains any of {names:?}");
        std::process::exit(1);
    }
}

/// One benchmark's timing: samples of enough iterations to take about a
/// millisecond each, for about half a second (at least ten samples); prints
/// the median and the fastest sample, per iteration.
struct Bencher {
    name: String,
}

impl Bencher {
    const SAMPLE: Duration = Duration::from_millis(1);
    const BUDGET: Duration = Duration::from_millis(500);
    const SAMPLES: (usize, usize) = (10, 200);

    fn bench_local<R>(self, mut f: impl FnMut() -> R) {
        self.bench_with_inputs(|| (), |_| f())
    }

    /// Times `f` on inputs made by `setup`, one per iteration, made before
    /// each sample and not timed.
    fn bench_with_inputs<I, R>(self, mut setup: impl FnMut() -> I, mut f: impl FnMut(&mut I) -> R) {
        let mut sample = |iters: usize| {
            let mut inputs: Vec<I> = (0..iters).map(|_| setup()).collect();
            let t = Instant::now();
            for i in &mut inputs {
                black_box(f(i));
            }
            t.elapsed() / iters as u32
        };
        sample(1); // warm-up: caches, page faults, thread start
        let mut iters = 1;
        while sample(iters) * (iters as u32) < Self::SAMPLE && iters < 1 << 20 {
            iters *= 2;
        }
        let start = Instant::now();
        let mut times = Vec::new();
        while times.len() < Self::SAMPLES.0
            || (start.elapsed() < Self::BUDGET && times.len() < Self::SAMPLES.1)
        {
            times.push(sample(iters));
        }
        times.sort();
        println!(
            "{:<48} {:>12} {:>12} {:>16}",
            self.name,
            format!("{:.3?}", times[times.len() / 2]),
            format!("{:.3?}", times[0]),
            format!("{} x {iters}", times.len())
        );
    }
}

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

/// (name, m, n, k, transpose a, transpose b) for one step of batch `b`:
/// forward Z = A·Wᵀ, weight gradients dW = dZᵀ·A, input gradients dA = dZ·W.
fn shapes(b: usize) -> Vec<(String, usize, usize, usize, bool, bool)> {
    vec![
        (format!("fwd1 {b}x784·784x192"), b, 192, 784, false, true),
        (format!("fwd2 {b}x192·192x48"), b, 48, 192, false, true),
        (format!("fwd3 {b}x48·48x10"), b, 10, 48, false, true),
        (format!("dW1 192x{b}·{b}x784"), 192, 784, b, true, false),
        (format!("dW2 48x{b}·{b}x192"), 48, 192, b, true, false),
        (format!("dA1 {b}x48·48x192"), b, 192, 48, false, false),
    ]
}

fn gemm_shapes_of_one_step(bencher: Bencher, batch: usize) {
    let cases: Vec<_> = shapes(batch)
        .into_iter()
        .map(|(_, m, n, k, ta, tb)| {
            (
                m,
                n,
                k,
                ta,
                tb,
                values(m * k),
                values(k * n),
                vec![0.0f32; m * n],
            )
        })
        .collect();
    let mut cases = cases;
    bencher.bench_local(|| {
        for (m, n, k, ta, tb, a, b, c) in cases.iter_mut() {
            let a = if *ta {
                Mat::new(a, *k, *m).t()
            } else {
                Mat::new(a, *m, *k)
            };
            let b = if *tb {
                Mat::new(b, *n, *k).t()
            } else {
                Mat::new(b, *k, *n)
            };
            matmul(MatMut::new(c, *m, *n), a, b, false, THREADS);
        }
        black_box(&cases);
    });
}

fn gemm_full_batch_each(bencher: Bencher, which: usize) {
    let (_, m, n, k, ta, tb) = shapes(50_000)[which].clone();
    let (a, b, mut c) = (values(m * k), values(k * n), vec![0.0f32; m * n]);
    bencher.bench_local(|| {
        let a = if ta {
            Mat::new(&a, k, m).t()
        } else {
            Mat::new(&a, m, k)
        };
        let b = if tb {
            Mat::new(&b, n, k).t()
        } else {
            Mat::new(&b, k, n)
        };
        matmul(MatMut::new(&mut c, m, n), a, b, false, THREADS);
        black_box(&c);
    });
}

fn first_layer() -> (Layout, usize) {
    let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
    let width = layout.layers[0].outputs;
    (layout, width)
}

fn bias_activation_dropout_forward(bencher: Bencher, rows: usize) {
    let (layout, width) = first_layer();
    let (mut z, bias, mask) = (
        values(rows * width),
        values(width),
        vec![1.0f32 / 0.9; width],
    );
    bencher.bench_local(|| {
        forward_rows(
            black_box(&mut z),
            width,
            &bias,
            &layout.layers[0].branches,
            MaskRows::Unit(&mask),
        )
    });
}

fn bias_activation_dropout_backward(bencher: Bencher, rows: usize) {
    let (layout, width) = first_layer();
    let (mut dz, a, mask) = (
        values(rows * width),
        values(rows * width),
        vec![1.0f32 / 0.9; width],
    );
    bencher.bench_local(|| {
        backward_rows(
            black_box(&mut dz),
            &a,
            width,
            &layout.layers[0].branches,
            &[0.9, 0.9, 0.9],
            MaskRows::Unit(&mask),
        )
    });
}

fn softmax_cross_entropy(bencher: Bencher, rows: usize) {
    let labels: Vec<u8> = (0..rows).map(|i| (i % 10) as u8).collect();
    let logits = values(rows * 10);
    bencher.bench_with_inputs(
        || logits.clone(),
        |z| loss_and_grad(z, &labels, 10, 1.0 / rows as f32),
    );
}

/// The optimiser step with the notebook's L2 terms and the finiteness check
/// (all one pass).
fn adam_step_all_parameters(bencher: Bencher) {
    let layout = Layout::new(&Arch::parse(NOTEBOOK_ARCH, 784, 10).unwrap());
    let n = layout.len;
    let (mut p, g, mut adam) = (values(n), values(n), Adam::new(n, 0.9, 0.999, 1e-8, true));
    let mut decay = Vec::new();
    scratchnet::nn::l2::decay(&layout, &[1.19, 1.05, 1.07, 2.22], 50_000, &mut decay);
    bencher.bench_local(|| adam.step(black_box(&mut p), &g, &decay, 1e-3));
}

/// The bundled MNIST (real sparsity matters here).
fn mnist() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        Dataset::load(&scratchnet::data::locate::locate(None).unwrap().path, None)
            .expect("bundled MNIST")
    })
}

/// The first `rows` training images.
fn mnist_rows(rows: usize) -> Vec<f32> {
    mnist().train.images.range(0..rows * 784).into_owned()
}

/// The sparse first layer: forward `X·W1ᵀ` (from the transposed weight)
/// and weight gradient `dW1 = dZ1ᵀ·X`, on real images; compare with
/// `gemm_full_batch_each` 0 and 3.
fn sparse_first_layer_forward(bencher: Bencher, rows: usize) {
    let x = SparseRows::from_dense(&mnist_rows(rows), 784);
    let (w, mut z) = (values(192 * 784), vec![0.0f32; rows * 192]);
    let mut wt = Panels::default();
    wt.pack_transposed(&w, 784, 192);
    bencher.bench_local(|| spmm(black_box(&mut z), x.view(), wt.view(), false));
}

/// The forward product as a minibatch step runs it: the threads split the
/// weight's panels (the trainer keeps the weight in panels).
fn sparse_first_layer_forward_by_columns(bencher: Bencher, rows: usize) {
    let x = SparseRows::from_dense(&mnist_rows(rows), 784);
    let (w, mut z) = (values(192 * 784), vec![0.0f32; rows * 192]);
    let mut wt = Panels::default();
    wt.pack_transposed(&w, 784, 192);
    let mut parts = ColumnParts::default();
    bencher.bench_local(|| spmm_by_columns(black_box(&mut z), x.view(), wt.view(), &mut parts));
}

fn sparse_first_layer_weight_gradient(bencher: Bencher, rows: usize) {
    let x = SparseRows::from_dense(&mnist_rows(rows), 784);
    let xt = ColumnBlocks::new(x.view(), 512);
    let (dz, mut dw) = (values(rows * 192), vec![0.0f32; 192 * 784]);
    // In panels, as the trainer keeps the weight.
    bencher.bench_local(|| spmm_t(black_box(&mut dw), &xt, &dz, 192, true));
}

/// Per-step preparation of a minibatch as the trainer does it: gather 128
/// rows from the compressed training split, shifted (and rotated, scaled
/// and sheared; and elastically warped), and group them by column.
fn sparse_prepare_minibatch(bencher: Bencher, augment: &str) {
    let d = mnist();
    let train = SparseRows::from_dense(&d.train.images.floats(), 784);
    let affine = Distortion {
        rotate: 10.0,
        scale: 0.1,
        shear: 0.2,
        elastic: 0.0,
    };
    let distortion = match augment {
        "shift" => Distortion::default(),
        "affine" => affine,
        _ => Distortion {
            elastic: 2.0,
            ..affine
        },
    };
    let mut batcher = Batcher::new(d.train.len(), Some(128), 1, 1, d.shape).distorted(distortion);
    let (mut x, mut xt, mut step) = (SparseRows::default(), ColumnBlocks::default(), 0);
    bencher.bench_local(|| {
        batcher.get_compressed(&d.train, &train, step, &mut x);
        xt.fill(x.view(), 512);
        step += 1;
    });
}

/// Repacking the first layer's weight into panels for [`spmm`]: once per
/// pass, where the layout keeps it in rows (branch widths that are not
/// multiples of 16).
fn pack_first_layer_weight(bencher: Bencher) {
    let (w, mut wt) = (values(192 * 784), Panels::default());
    bencher.bench_local(|| wt.pack_transposed(black_box(&w), 784, 192));
}

/// The matrix library (the `gemm` crate) on the full-batch forward shape and
/// a large square, on 2 threads (docs/PERFORMANCE.md, "The GEMM library,
/// chosen by measurement", has how it compared with `matrixmultiply`).
fn gemm_full_batch_forward(bencher: Bencher) {
    let (m, n, k) = (50_000, 192, 784);
    let (a, w, mut c) = (values(m * k), values(n * k), vec![0.0f32; m * n]);
    bencher.bench_local(|| product(&mut c, &a, &w, (m, n, k)));
}

fn gemm_square_2048(bencher: Bencher) {
    let s = 2048;
    let (a, w, mut c) = (values(s * s), values(s * s), vec![0.0f32; s * s]);
    bencher.bench_local(|| product(&mut c, &a, &w, (s, s, s)));
}

/// `c = a · wᵀ` (`a` is `m x k`, `w` is `n x k`).
fn product(c: &mut [f32], a: &[f32], w: &[f32], (m, n, k): (usize, usize, usize)) {
    matmul(
        MatMut::new(c, m, n),
        Mat::new(a, m, k),
        Mat::new(w, n, k).t(),
        false,
        THREADS,
    );
    black_box(c);
}

/// The first layer on AMX tiles in bfloat16 (`--precision bf16`): forward
/// `X·W1ᵀ` on real images as tiles.
fn bf16_first_layer_forward(bencher: Bencher, rows: usize) {
    if !Kernels::current().has_tiles() {
        return eprintln!("{}: skipped, no AMX tiles here", bencher.name);
    }
    let x = Tiled::from_rows(&mnist_rows(rows), rows, 784);
    let w = values(192 * 784);
    let mut pairs = Pairs::default();
    pairs.fill(Source::Transposed(&w), 784, 192);
    let mut z = vec![0.0f32; rows * 192];
    bencher.bench_local(|| {
        let out = Out::Rows {
            data: black_box(&mut z),
            rows,
            n: 192,
            stride: 192,
        };
        bf16::product(out, x.view(), pairs.view(), THREADS)
    });
}

/// The weight gradient `dW1ᵀ = Xᵀ·dZ1` on the tiles, into panels as the
/// trainer keeps the weight.
fn bf16_first_layer_weight_gradient(bencher: Bencher, rows: usize) {
    if !Kernels::current().has_tiles() {
        return eprintln!("{}: skipped, no AMX tiles here", bencher.name);
    }
    let mut xt = Tiled::default();
    xt.fill_transposed_from_sparse(SparseRows::from_dense(&mnist_rows(rows), 784).view());
    let dz = values(rows * 192);
    let mut pairs = Pairs::default();
    pairs.fill(Source::Rows(&dz), rows, 192);
    let mut dw = vec![0.0f32; 784 * 192];
    bencher.bench_local(|| {
        let out = Out::Panels {
            data: black_box(&mut dw),
            rows: 784,
            n: 192,
        };
        bf16::product(out, xt.view(), pairs.view(), THREADS)
    });
}

/// Rounding `dZ1` (`[rows, 192]`) to bfloat16 in pairs, as each step on the
/// tiles does first.
fn bf16_gradient_to_pairs(bencher: Bencher, rows: usize) {
    let dz = values(rows * 192);
    let mut pairs = Pairs::default();
    bencher.bench_local(|| black_box(&mut pairs).fill(Source::Rows(&dz), rows, 192));
}

/// A minibatch's rows as tiles and as their transpose, from compressed rows.
fn bf16_minibatch_tiles(bencher: Bencher) {
    let x = SparseRows::from_dense(&mnist_rows(128), 784);
    let (mut t, mut tt) = (Tiled::default(), Tiled::default());
    bencher.bench_local(|| {
        t.fill_from_sparse(black_box(x.view()));
        tt.fill_transposed_from_sparse(x.view())
    });
}
