//! The CUDA backend against the CPU (`cargo test --release --features cuda
//! --test gpu`). Without a GPU the checks that need one print why they are
//! skipped, and the clear-error check runs instead.
#[path = "it/common/mod.rs"]
mod common;

use scratchnet::backend::{Device, Target};
use scratchnet::compare;
use scratchnet::data::Dataset;
use scratchnet::gpu::{open, GpuNet, GpuStep};
use scratchnet::nn::dropout::{stream_key, Draws, Dropout, DropoutMode};
use scratchnet::nn::{l2, Arch, InitScheme, InputKind, Layout, Network, Params, TrainInput};
use scratchnet::optim::{Optimizer, OptimizerKind};
use scratchnet::train::{EvalRecord, TrainConfig, Trainer};
use serde_json::json;
use std::path::Path;
use std::process::Command;

/// Whether the GPU opens; where it does not, the test is skipped and says
/// why, or, with `SCRATCHNET_REQUIRE_GPU=1` (the device run,
/// `scripts/gpu_check.sh`), fails.
fn gpu_present(test: &str) -> bool {
    match open() {
        Ok(_) => true,
        Err(e) if std::env::var("SCRATCHNET_REQUIRE_GPU").as_deref() == Ok("1") => {
            panic!("{test}: SCRATCHNET_REQUIRE_GPU=1, but the GPU does not open: {e:#}")
        }
        Err(e) => {
            common::skipped(test, &format!("no GPU here ({e:#})"));
            false
        }
    }
}

#[test]
fn without_a_gpu_device_cuda_is_a_clear_error() {
    if open().is_ok() {
        let test = "without_a_gpu_device_cuda_is_a_clear_error";
        common::skipped(test, "this machine has a GPU");
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(["train", "--device", "cuda", "--epochs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--device cuda") && err.contains("--device cpu"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Parity with the CPU: the same initial weights, no dropout, 20
/// full-batch iterations: J within 1e-4 relative at every iteration and the
/// same accuracies to 3 decimals.
#[test]
fn twenty_full_batch_iterations_match_the_cpu() {
    if !gpu_present("twenty_full_batch_iterations_match_the_cpu") {
        return;
    }
    let data = Dataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        Some(10_000),
    )
    .unwrap();
    let cfg = TrainConfig::resolve(
        None,
        json!({"preset": "seed", "iters": 20, "keep": [1.0, 1.0, 1.0], "eval_every": 1}),
    )
    .unwrap();
    let run = |device| {
        let target = Target { device, threads: 2 };
        let mut t = Trainer::new(cfg.clone(), &data, target, None).unwrap();
        common::finish(&mut t).1
    };
    let (cpu, gpu) = (run(Device::Cpu), run(Device::Cuda));
    assert_eq!(cpu.len(), gpu.len());
    let j = |log: &[EvalRecord]| log.iter().map(|r| r.j).collect::<Vec<f64>>();
    compare::assert_close("J, GPU against CPU", &j(&gpu), &j(&cpu), 0.0, 1e-4);
    for (c, g) in cpu.iter().zip(&gpu) {
        for (a, b) in [(c.train_acc, g.train_acc), (c.test_acc, g.test_acc)] {
            assert!(
                (a - b).abs() < 5e-4,
                "iteration {}: accuracy {a} vs {b}",
                c.iter
            );
        }
    }
}

/// Every kernel of a step against the CPU on odd shapes: one SGD step with
/// learning rate 1 and no momentum leaves `params - grads`, so the GPU's
/// gradients (forward, softmax + cross-entropy, backward with both dropout
/// modes, L2) can be read back and compared with the CPU's; then Adam.
#[test]
fn one_step_matches_the_cpu_on_odd_shapes() {
    if !gpu_present("one_step_matches_the_cpu_on_odd_shapes") {
        return;
    }
    let ctx = open().unwrap();
    let arch = Arch::parse("relu:37|tanh:20,relu:11", 61, 10).unwrap();
    let layout = Layout::new(&arch);
    let rows = 301;
    let images: Vec<f32> = (0..rows * 61)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
        .collect();
    let labels: Vec<u8> = (0..rows).map(|i| (i * 7 % 10) as u8).collect();
    let split = scratchnet::data::Split {
        images: images.clone().into(),
        labels: labels.clone(),
        features: 61,
    };
    let params = layout.init(InitScheme::He, 8);
    let cpu_params = Params::from_rows(&layout, &params, InputKind::Dense);
    let keeps = [0.8f32, 0.7, 0.9];
    let factors = [1.2f32, 0.9, 1.1, 2.0];
    let key = stream_key(5, 2, 3);
    for kind in [OptimizerKind::Sgd, OptimizerKind::Adam] {
        for mode in [None, Some(DropoutMode::Unit), Some(DropoutMode::Sample)] {
            // CPU: gradients, L2, one optimiser step.
            let net = Network::new(layout.clone(), 2);
            let mut ws = net.workspace(rows);
            let mut grads = vec![0.0; layout.len];
            let dropout = mode.map(|mode| Dropout {
                mode,
                keeps: &keeps,
                draws: Draws::Key(key),
            });
            let cpu_loss = net.loss_and_grads(
                &cpu_params,
                &mut grads,
                TrainInput::Dense(&images),
                &labels,
                &mut ws,
                dropout.as_ref(),
            );
            let mut decay = Vec::new();
            l2::decay(&layout, &factors, rows, &mut decay);
            let mut cpu_opt = Optimizer::new(kind, layout.len, 0.9, 0.999, 1e-7, 0.0);
            // SGD at rate 1 leaves params - grads; Adam's first step is about
            // lr·sign(g), so it is compared where g is clearly non-zero.
            let lr = if kind == OptimizerKind::Sgd {
                1.0
            } else {
                1e-3
            };
            let mut cpu = params.clone();
            assert!(cpu_opt.step(&mut cpu, &grads, &decay, lr));
            // GPU: the same step.
            let opt = Optimizer::new(kind, layout.len, 0.9, 0.999, 1e-7, 0.0);
            let mut gnet = GpuNet::new(&ctx, &layout, &params, &opt, &keeps, rows).unwrap();
            let gsplit = gnet.upload(&split).unwrap();
            let loss = gnet
                .step(
                    GpuStep::Whole(&gsplit),
                    lr,
                    &factors,
                    rows,
                    mode.map(|m| (m, key)),
                    true,
                )
                .unwrap()
                .unwrap();
            let gpu = gnet.params().unwrap();
            assert!(
                (loss - cpu_loss).abs() < 1e-5 * cpu_loss,
                "{kind:?} {mode:?}: loss {cpu_loss} vs {loss}"
            );
            // Each parameter's step, GPU against CPU (Adam's only where the
            // gradient is clearly non-zero).
            let kept: Vec<usize> = (0..layout.len)
                .filter(|&i| kind == OptimizerKind::Sgd || grads[i].abs() > 1e-4)
                .collect();
            let step = |p: &[f32]| kept.iter().map(|&i| p[i] - params[i]).collect::<Vec<f32>>();
            let what = format!("{kind:?} {mode:?}: the step, GPU against CPU");
            compare::assert_close(&what, &step(&gpu), &step(&cpu), 1e-3, 1e-2);
        }
    }
}
