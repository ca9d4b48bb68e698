//! The training loop against an independent implementation of the notebook's
//! math: `scripts/golden_trajectory.py` (numpy, float64) ran 20 full-batch
//! iterations of the seed preset without dropout from fixed weights and
//! wrote J, the accuracies and the final weights' mean squares to
//! `tests/fixtures/golden_seed.json`. scratchnet (float32) must follow the
//! same trajectory: every step of the glue between the layers (the L2 terms
//! and their schedule, the optimiser, when J and the accuracies are taken)
//! shows in these numbers.

mod common;

use scratchnet::backend::Target;
use scratchnet::compare;
use scratchnet::data::Dataset;
use scratchnet::nn::{Arch, Layout};
use scratchnet::train::{TrainConfig, Trainer};
use serde_json::{json, Value};
use std::path::Path;

/// The script's starting weights: for weight matrix `k` and its element `i`
/// (row-major), `u = ((i * 2654435761 + (k + 1) * 40503) mod 2^32) / 2^32`,
/// `w = (2u - 1) * sqrt(3) * sqrt(gain / fan_in)`; biases zero.
fn fixed_weights(layout: &Layout) -> Vec<f32> {
    let mut rows = vec![0.0f32; layout.len];
    for (k, (w, gain)) in layout
        .weights
        .iter()
        .zip([2.0f64, 2.0, 1.0, 2.0])
        .enumerate()
    {
        let std = (gain / w.shape[1] as f64).sqrt();
        for (i, p) in rows[w.range.clone()].iter_mut().enumerate() {
            let h = (i as u64 * 2_654_435_761 + (k as u64 + 1) * 40_503) % (1 << 32);
            let u = h as f64 / (1u64 << 32) as f64;
            *p = ((2.0 * u - 1.0) * 3f64.sqrt() * std) as f32;
        }
    }
    rows
}

#[test]
fn twenty_seed_iterations_follow_the_numpy_reference() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/golden_seed.json")).unwrap(),
    )
    .unwrap();
    let data = Dataset::load(&root.join("data/mnist"), Some(10_000)).unwrap();
    let cfg = TrainConfig::resolve(
        None,
        json!({"preset": "seed", "iters": 20, "keep": [1.0], "eval_every": 1}),
    )
    .unwrap();
    let layout = Layout::new(&Arch::parse(&cfg.arch, 784, 10).unwrap());
    let mut t = Trainer::new(cfg, &data, Target::cpu(2), Some(fixed_weights(&layout))).unwrap();
    let (_, log) = common::finish(&mut t);
    let want = golden["iterations"].as_array().unwrap();
    assert_eq!(log.len(), want.len(), "one evaluation per iteration");
    let splits = [data.train.len(), data.val.len(), data.test.len()];
    let column =
        |key: &str| -> Vec<f64> { want.iter().map(|w| w[key].as_f64().unwrap()).collect() };
    let js: Vec<f64> = log.iter().map(|r| r.j).collect();
    compare::assert_close("J against the reference", &js, &column("J"), 0.0, 1e-4);
    for (got, want) in log.iter().zip(want) {
        let it = want["iter"].as_u64().unwrap();
        assert_eq!(got.iter as u64, it + 1, "steps done at evaluation {it}");
        // Near-ties flip under float32 against float64 rounding (as they do
        // in the reference itself when its starting weights move by 1e-7):
        // up to 3 images of a split.
        let accs = [got.train_acc, got.val_acc.unwrap(), got.test_acc];
        for ((name, acc), n) in ["train_acc", "val_acc", "test_acc"]
            .iter()
            .zip(accs)
            .zip(splits)
        {
            let w = want[name].as_f64().unwrap();
            assert!(
                ((acc - w) * n as f64).abs() <= 3.5,
                "iteration {it}: {name} {acc} vs the reference's {w}"
            );
        }
    }
    let params = t.params().unwrap();
    let (mut got, mut reference) = (Vec::new(), Vec::new());
    for w in &layout.weights {
        let v = &params[w.range.clone()];
        got.push(v.iter().map(|&x| x as f64 * x as f64).sum::<f64>() / v.len() as f64);
        reference.push(golden["final_mean_square"][&w.name].as_f64().unwrap());
    }
    compare::assert_close(
        "final mean squares (W11, W12, W2, W3)",
        &got,
        &reference,
        0.0,
        1e-4,
    );
}
