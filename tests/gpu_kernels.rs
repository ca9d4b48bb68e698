//! The CUDA kernels' arithmetic, checked on the CPU: `src/gpu/kernels.cu` is
//! compiled as C++ (with the few CUDA words defined away and each launch run
//! as a loop over the grid), then every elementwise kernel is compared with
//! the CPU function it ports, on odd shapes and every dropout mode. This runs
//! without a GPU (it needs a C++ compiler); what it cannot check is NVRTC,
//! cuBLAS and the launches themselves (tests/gpu.rs, on a GPU).
use scratchnet::compare;
use scratchnet::data::augment::shift_image;
use scratchnet::nn::activation::{backward_rows, forward_rows};
use scratchnet::nn::dropout::{fill_mask, mix64, stream_key, MaskRows};
use scratchnet::nn::softmax_ce::loss_and_grad;
use scratchnet::nn::{Activation, Arch, Layout};
use scratchnet::optim::Adam;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

const SHIM: &str = r#"
#include <cmath>
#include <cstdint>
using namespace std;
struct Dim3 { unsigned x; };
static thread_local Dim3 blockIdx, blockDim, threadIdx;
#define __global__
#define __device__
#define __shared__ static
#define __syncthreads()
#include "kernels.cu"
typedef long long i64;
template <typename F> static void grid(i64 n, F f) {
    blockDim.x = 128;
    for (i64 b = 0; b * 128 < n; b++) {
        blockIdx.x = (unsigned)b;
        for (unsigned t = 0; t < 128; t++) { threadIdx.x = t; f(); }
    }
}
extern "C" {
void emu_bias_act_forward(float* z, const float* b, const int* a, const float* k, i64 rows, int w, int mode, u64 key) {
    grid(rows * w, [&] { bias_act_forward(z, b, a, k, rows, w, mode, key); });
}
void emu_act_backward(float* d, const float* x, const int* a, const float* k, i64 rows, int w, int mode, u64 key) {
    grid(rows * w, [&] { act_backward(d, x, a, k, rows, w, mode, key); });
}
void emu_softmax_ce(float* z, const unsigned char* y, i64 rows, int classes, float scale, double* loss) {
    grid(rows, [&] { softmax_ce(z, y, rows, classes, scale, loss); });
}
void emu_adam(float* p, const float* g, float* v, float* s, i64 n, float b1, float b2, float eps, float step, float c) {
    grid(n, [&] { adam(p, g, v, s, n, b1, b2, eps, step, c); });
}
void emu_gather_shift(float* dst, unsigned char* dl, const float* src, const unsigned char* sl, const int* ids,
        const int* dx, const int* dy, i64 rows, int h, int w) {
    grid(rows * h * w, [&] { gather_shift(dst, dl, src, sl, ids, dx, dy, rows, h, w); });
}
}
"#;

/// The kernels, built once per test run into a shared library.
fn library() -> &'static libloading::Library {
    static LIB: OnceLock<libloading::Library> = OnceLock::new();
    LIB.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let (src, lib) = (dir.join("kernels_emu.cpp"), dir.join("libkernels_emu.so"));
        std::fs::write(&src, SHIM).unwrap();
        let include = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu");
        let out = Command::new("c++")
            .args([
                "-std=c++17",
                "-O1",
                "-shared",
                "-fPIC",
                "-ffp-contract=off",
                "-I",
            ])
            .arg(&include)
            .arg(&src)
            .arg("-o")
            .arg(&lib)
            .output()
            .expect("a C++ compiler (c++) to build the emulated kernels");
        assert!(
            out.status.success(),
            "kernels.cu does not compile as C++: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: our own library, with no initialisers.
        unsafe { libloading::Library::new(&lib) }.unwrap()
    })
}

macro_rules! kernel {
    ($name:literal: fn($($t:ty),*)) => {{
        // SAFETY: the symbol has this C signature (the SHIM above).
        unsafe {
            *library()
                .get::<unsafe extern "C" fn($($t),*)>($name)
                .unwrap()
        }
    }};
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n)
        .map(|i| (mix64(seed ^ i as u64) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

/// The CPU's values against the kernel's, which must be the same bits: the
/// same operations in the same order (compiled without contracting
/// multiply-adds, as the CPU functions are). Seen (2026-12-06): 0 for every
/// kernel; the worst difference is printed for when it is not.
fn assert_same(what: &str, cpu: &[f32], gpu: &[f32]) {
    compare::assert_close(what, cpu, gpu, 1.0, 0.0);
}

/// A layer with a relu branch, a tanh branch and odd widths, and its
/// per-column activation codes and keeps as the engine uploads them.
fn layer() -> (Layout, Vec<i32>, Vec<f32>, [f32; 3]) {
    let layout = Layout::new(&Arch::parse("relu:37|tanh:20,relu:11", 61, 10).unwrap());
    let keeps = [0.8f32, 0.7, 0.9];
    let l = &layout.layers[0];
    let (mut act, mut keep) = (vec![0; l.outputs], vec![1.0; l.outputs]);
    for b in &l.branches {
        act[b.cols.clone()].fill(match b.act {
            Some(Activation::Relu) => 1,
            Some(Activation::Tanh) => 2,
            None => 0,
        });
        keep[b.cols.clone()].fill(keeps[b.index]);
    }
    (layout, act, keep, keeps)
}

/// The CPU's dropout scales for layer 0 (mode 1: one row, 2: per row).
fn cpu_mask(layout: &Layout, rows: usize, mode: i32, key: u64, keeps: &[f32]) -> Vec<f32> {
    let l = &layout.layers[0];
    let mask_rows = if mode == 1 { 1 } else { rows };
    let mut m = vec![0.0; mask_rows * l.outputs];
    for b in &l.branches {
        fill_mask(&mut m, 0, l.outputs, b.cols.clone(), keeps[b.index], key);
    }
    m
}

#[test]
fn activation_kernels_match_the_cpu_in_every_dropout_mode() {
    let fwd = kernel!(b"emu_bias_act_forward": fn(*mut f32, *const f32, *const i32, *const f32, i64, i32, i32, u64));
    let bwd = kernel!(b"emu_act_backward": fn(*mut f32, *const f32, *const i32, *const f32, i64, i32, i32, u64));
    let (layout, act, keep, keeps) = layer();
    let l = &layout.layers[0];
    let (rows, width) = (133, l.outputs);
    let key = mix64(stream_key(3, 7, 3));
    for mode in [0, 1, 2] {
        let masks = cpu_mask(&layout, rows, mode, key, &keeps);
        let cpu_mask_rows = match mode {
            0 => MaskRows::Off,
            1 => MaskRows::Unit(&masks),
            _ => MaskRows::Sample(&masks),
        };
        let z = values(rows * width, 1);
        let bias = values(width, 2);
        let mut cpu = z.clone();
        forward_rows(&mut cpu, width, &bias, &l.branches, cpu_mask_rows);
        // Both kernels take (x, y, act, keep, rows, width, mode, key).
        let launch = |f: unsafe extern "C" fn(_, _, _, _, _, _, _, _), x: &mut [f32], y: &[f32]| {
            // SAFETY: the buffers hold rows x width (x) and width or
            // rows x width (y) floats, as the kernels read.
            unsafe {
                f(
                    x.as_mut_ptr(),
                    y.as_ptr(),
                    act.as_ptr(),
                    keep.as_ptr(),
                    rows as i64,
                    width as i32,
                    mode,
                    key,
                )
            }
        };
        let mut gpu = z.clone();
        launch(fwd, &mut gpu, &bias);
        assert_same(&format!("forward, mode {mode}"), &cpu, &gpu);

        let d = values(rows * width, 3);
        let mut cpu_d = d.clone();
        backward_rows(&mut cpu_d, &cpu, width, &l.branches, &keeps, cpu_mask_rows);
        let mut gpu_d = d.clone();
        launch(bwd, &mut gpu_d, &cpu);
        assert_same(&format!("backward, mode {mode}"), &cpu_d, &gpu_d);
    }
}

#[test]
fn softmax_cross_entropy_kernel_matches_the_cpu() {
    let f = kernel!(b"emu_softmax_ce": fn(*mut f32, *const u8, i64, i32, f32, *mut f64));
    let (rows, classes) = (257, 10);
    let z: Vec<f32> = values(rows * classes, 4).iter().map(|v| v * 30.0).collect();
    let labels: Vec<u8> = (0..rows).map(|i| (i * 3 % classes) as u8).collect();
    let scale = 1.0 / rows as f32;
    let mut cpu = z.clone();
    let cpu_loss = loss_and_grad(&mut cpu, &labels, classes, scale);
    let (mut gpu, mut loss) = (z.clone(), vec![0.0f64; rows]);
    unsafe {
        f(
            gpu.as_mut_ptr(),
            labels.as_ptr(),
            rows as i64,
            classes as i32,
            scale,
            loss.as_mut_ptr(),
        )
    };
    assert_same("dZ", &cpu, &gpu);
    let gpu_loss: f64 = loss.iter().sum();
    assert_eq!(cpu_loss, gpu_loss, "the loss");
}

#[test]
fn adam_kernel_matches_the_cpu_with_and_without_bias_correction() {
    let f = kernel!(b"emu_adam": fn(*mut f32, *const f32, *mut f32, *mut f32, i64, f32, f32, f32, f32, f32));
    let n = 1001;
    for correction in [false, true] {
        let mut cpu_opt = Adam::new(n, 0.9, 0.999, 1e-7, correction);
        let (mut cpu, mut gpu) = (values(n, 5), values(n, 5));
        let (mut v, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
        for t in 1..=3i32 {
            let g = values(n, 6 + t as u64);
            assert!(cpu_opt.step(&mut cpu, &g, &[], 1e-3));
            // The step's scalars, as GpuNet computes them.
            let (c1, c2) = if correction {
                (
                    1.0 - (0.9f32 as f64).powi(t),
                    1.0 - (0.999f32 as f64).powi(t),
                )
            } else {
                (1.0, 1.0)
            };
            let (step, inv) = ((1e-3f32 as f64 / c1) as f32, (1.0 / c2.sqrt()) as f32);
            unsafe {
                f(
                    gpu.as_mut_ptr(),
                    g.as_ptr(),
                    v.as_mut_ptr(),
                    s.as_mut_ptr(),
                    n as i64,
                    0.9,
                    0.999,
                    1e-7,
                    step,
                    inv,
                )
            };
        }
        assert_same(&format!("adam (correction {correction})"), &cpu, &gpu);
    }
}

#[test]
fn gather_shift_kernel_matches_the_cpu_batch() {
    let f = kernel!(b"emu_gather_shift": fn(*mut f32, *mut u8, *const f32, *const u8, *const i32, *const i32, *const i32, i64, i32, i32));
    let (h, w, n) = (7, 5, 23);
    let src = values(n * h * w, 8);
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let ids = [4i32, 0, 22, 9, 9, 13];
    let dx = [0i32, 1, -2, 3, 0, -5];
    let dy = [0i32, -1, 2, 0, 6, 1];
    let rows = ids.len();
    let (mut dst, mut dl) = (vec![f32::NAN; rows * h * w], vec![255u8; rows]);
    unsafe {
        f(
            dst.as_mut_ptr(),
            dl.as_mut_ptr(),
            src.as_ptr(),
            labels.as_ptr(),
            ids.as_ptr(),
            dx.as_ptr(),
            dy.as_ptr(),
            rows as i64,
            h as i32,
            w as i32,
        )
    };
    for r in 0..rows {
        let id = ids[r] as usize;
        let mut cpu = vec![0.0; h * w];
        let image = &src[id * h * w..(id + 1) * h * w];
        shift_image(image, &mut cpu, (h, w), dx[r] as isize, dy[r] as isize);
        assert_eq!(cpu, dst[r * h * w..(r + 1) * h * w], "row {r}");
        assert_eq!(dl[r], labels[id]);
    }
}
