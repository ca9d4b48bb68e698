//! Training on the bundled MNIST: accuracy thresholds, determinism, and the
//! model-file round trip.

use crate::common;

use scratchnet::backend::Target;
use scratchnet::data::{Dataset, Split};
use scratchnet::model_io::{load_init, Model};
use scratchnet::nn::{Input, InputKind, Network, Params};
use scratchnet::train::{Checkpoint, Observer, Outcome, RunControl, Summary, TrainConfig, Trainer};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

fn mnist() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        Dataset::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
            Some(10_000),
        )
        .expect("bundled MNIST in data/mnist")
    })
}

/// Runs to the end without checkpoints.
fn finish(t: &mut Trainer<'_>) -> Summary {
    common::finish(t).0
}

fn config(overrides: serde_json::Value) -> TrainConfig {
    TrainConfig::resolve(None, overrides).unwrap()
}

#[test]
fn one_epoch_of_the_default_preset_reaches_95_percent() {
    let mut t = Trainer::new(config(json!({"epochs": 1})), mnist(), Target::cpu(2), None).unwrap();
    let s = finish(&mut t);
    println!("default preset, 1 epoch: {:?}", s.last);
    assert!(s.last.test_acc >= 0.95, "test accuracy {}", s.last.test_acc);
}

#[test]
fn three_epochs_of_the_best_presets_pipeline_reach_97_percent() {
    // The best preset's recipe (distorted images, cosine Adam) cut to 3
    // of its 400 epochs.
    let cfg = config(json!({"preset": "best", "epochs": 3}));
    assert!(cfg.distortion().elastic > 0.0 && cfg.distortion().rotate > 0.0);
    let mut t = Trainer::new(cfg, mnist(), Target::cpu(2), None).unwrap();
    let s = finish(&mut t);
    println!("best preset, 3 epochs: {:?}", s.last);
    assert!(s.last.test_acc >= 0.97, "test accuracy {}", s.last.test_acc);
}

#[test]
fn fifty_iterations_of_the_seed_preset_reach_88_percent_validation() {
    let mut t = Trainer::new(
        config(json!({"preset": "seed", "iters": 50})),
        mnist(),
        Target::cpu(2),
        None,
    )
    .unwrap();
    let s = finish(&mut t);
    println!("seed preset, 50 iterations: {:?}", s.last);
    assert!(
        s.last.val_acc.unwrap() >= 0.88,
        "validation accuracy {:?}",
        s.last.val_acc
    );
    // J falls from about ln(10) + the L2 term.
    assert!(s.last.j < 1.0, "J {}", s.last.j);
}

#[test]
fn same_seed_gives_bit_identical_weights_and_a_new_seed_does_not() {
    // "distorted": the notebook's masks, and every image shifted, rotated,
    // scaled, sheared and elastically warped.
    let run = |seed: u64, mode: &str| {
        let cfg = match mode {
            "distorted" => json!({"iters": 40, "seed": seed, "batch_size": 500, "shift": 2,
                "rotate": 12, "scale": 0.1, "shear": 0.2, "elastic": 1.5}),
            dropout => {
                json!({"iters": 40, "seed": seed, "keep": [0.9, 0.8, 0.9], "dropout": dropout})
            }
        };
        let mut t = Trainer::new(config(cfg), mnist(), Target::cpu(2), None).unwrap();
        let s = finish(&mut t);
        (t.params().unwrap(), s.last.j)
    };
    for mode in ["unit", "sample", "distorted"] {
        let (a, ja) = run(3, mode);
        let (b, jb) = run(3, mode);
        assert!(a == b, "{mode}: weights differ between identical runs");
        assert_eq!(ja.to_bits(), jb.to_bits());
        let (c, _) = run(4, mode);
        assert!(a != c, "{mode}: a different seed gave the same weights");
    }
}

#[test]
fn save_load_eval_round_trip_gives_identical_predictions() {
    let mut t = Trainer::new(config(json!({"iters": 30})), mnist(), Target::cpu(2), None).unwrap();
    finish(&mut t);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    t.trained_model().unwrap().save(&path).unwrap();

    let loaded = Model::load(&path).unwrap();
    let rows = t.params().unwrap();
    assert_eq!(loaded.layout, t.layout);
    assert!(loaded.params == rows);
    // The file holds every weight as `[out, in]` rows, the notebook's shape.
    let bytes = std::fs::read(&path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for w in &t.layout.weights {
        let stored: Vec<f32> = file
            .tensor(&w.name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert!(stored == rows[w.range.clone()], "{} is not in rows", w.name);
    }
    let cfg: TrainConfig = serde_json::from_str(&loaded.metadata["scratchnet.config"]).unwrap();
    assert_eq!(cfg, t.cfg);
    assert!(loaded.metadata["scratchnet.data_sha256"].contains("t10k-images-idx3-ubyte.gz"));

    let test = &mnist().test;
    let net = Network::new(loaded.layout.clone(), 2);
    let mut ws = net.workspace(1000);
    // Stored as the trainer stores them (for sparse input) and as a loaded
    // model is read (dense input): the same predictions.
    let dense = test.images.floats();
    let x = Input::Dense(&dense);
    let trained = Params::from_rows(&t.layout, &rows, InputKind::Sparse);
    let from_file = Params::from_rows(&loaded.layout, &loaded.params, InputKind::Dense);
    assert_eq!(
        net.predict(&trained, x, &mut ws),
        net.predict(&from_file, x, &mut ws)
    );

    // --init reads the same tensors back by their notebook names.
    assert!(load_init(&path, &t.layout).unwrap() == rows[..]);
}

#[test]
fn evaluation_on_paired_images_agrees_with_the_dense_path() {
    // The trainer evaluates the validation and test images merged in pairs
    // of similar ones, labels reordered alike; the dense path is the plain
    // product. Rounding differs, so a near-tie may flip: 2 images of 10,000.
    let mut t = Trainer::new(config(json!({"iters": 30})), mnist(), Target::cpu(2), None).unwrap();
    finish(&mut t);
    let net = Network::new(t.layout.clone(), 2);
    let mut ws = net.workspace(1000);
    let test = &mnist().test;
    let params = Params::from_rows(&t.layout, &t.params().unwrap(), InputKind::Dense);
    let x = test.images.floats();
    let dense = net.accuracy(&params, Input::Dense(&x), &test.labels, &mut ws);
    let paired = t.test_accuracy().unwrap();
    assert!(dense > 0.8, "dense accuracy {dense}");
    assert!(
        (paired - dense).abs() <= 2e-4,
        "paired {paired}, dense {dense}"
    );
}

#[test]
fn init_from_file_starts_from_those_weights() {
    let layout = Trainer::new(config(json!({"iters": 1})), mnist(), Target::cpu(1), None)
        .unwrap()
        .layout;
    // Given in rows, as a file holds them.
    let start = layout.init(scratchnet::nn::InitScheme::He, 99);
    let mut a = Trainer::new(
        config(json!({"iters": 5})),
        mnist(),
        Target::cpu(2),
        Some(start.clone()),
    )
    .unwrap();
    let mut b = Trainer::new(
        config(json!({"iters": 5, "seed": 12345})),
        mnist(),
        Target::cpu(2),
        Some(start),
    )
    .unwrap();
    finish(&mut a);
    finish(&mut b);
    // Different seeds change only the batches here; the starting point was shared.
    let (a, b) = (a.params().unwrap(), b.params().unwrap());
    assert_ne!(a, b);
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.05));
}

/// Stops a run when it reaches a given step, as Ctrl-C would.
struct StopAt<'a>(usize, &'a AtomicBool);
impl Observer for StopAt<'_> {
    fn step(&mut self, done: usize, _total: usize, _loss: f64) {
        if done == self.0 {
            self.1.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn interrupted_and_resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ck.safetensors");
    // Minibatches across an epoch boundary, per-sample dropout, shifts and
    // distortions, cosine decay, the L2 schedule and model selection: every
    // piece of state a resume must restore.
    let cfg = config(
        json!({"iters": 120, "batch_size": 500, "keep": [0.9], "dropout": "sample",
        "shift": 1, "rotate": 10, "elastic": 1.0, "reg_every": 50, "eval_every": 20, "keep_best": true}),
    );
    for optimizer in ["adam", "adam-nb", "sgd"] {
        let cfg = TrainConfig {
            optimizer: serde_json::from_value(json!(optimizer)).unwrap(),
            ..cfg.clone()
        };
        let mut whole = Trainer::new(cfg.clone(), mnist(), Target::cpu(2), None).unwrap();
        finish(&mut whole);

        let mut first = Trainer::new(cfg, mnist(), Target::cpu(2), None).unwrap();
        let flag = AtomicBool::new(false);
        let mut obs = StopAt(77, &flag);
        let ctl = RunControl {
            checkpoint_every: Some(1000),
            checkpoint_path: Some(path.clone()),
            interrupt: Some(&flag),
        };
        match first.run(&mut obs, &ctl).unwrap() {
            Outcome::Interrupted { step } => assert_eq!(step, 77),
            other => panic!("{optimizer}: expected an interruption, got {other:?}"),
        }
        let ckpt = Checkpoint::load(&path).unwrap();
        let mut resumed = Trainer::resume(&ckpt, mnist(), Target::cpu(2)).unwrap();
        assert_eq!(resumed.step, 77);
        finish(&mut resumed);
        assert!(
            resumed.params().unwrap() == whole.params().unwrap(),
            "{optimizer}: resumed weights differ from the uninterrupted run's"
        );
        let (a, b) = (resumed.best().unwrap(), whole.best().unwrap());
        assert_eq!(a.record.iter, b.record.iter, "{optimizer}: best evaluation");
    }
}

#[test]
fn thread_count_does_not_change_the_weights() {
    for preset in [
        json!({"iters": 30, "keep": [0.9], "dropout": "sample"}),
        json!({"preset": "seed", "iters": 2}),
        json!({"preset": "seed", "iters": 2, "precision": "bf16"}),
        json!({"iters": 30, "precision": "bf16"}),
        json!({"iters": 20, "batch_size": 300, "shift": 2, "rotate": 15, "scale": 0.1, "shear": 0.2, "elastic": 2.0}),
    ] {
        // In pools of 1, 2 and 3 threads: the first layer's products and
        // the batch preparation (distortions included) split their work by
        // the pool's size.
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut t =
                    Trainer::new(config(preset.clone()), mnist(), Target::cpu(threads), None)
                        .unwrap();
                finish(&mut t);
                t.params().unwrap()
            })
        };
        let one = run(1);
        for threads in [2, 3] {
            assert!(
                run(threads) == one,
                "{preset}: 1 and {threads} threads gave different weights"
            );
        }
    }
}

/// Dense data (too few zeros for the compressed first layer) trains through
/// the dense product, from starting weights given in rows as for sparse
/// data (the backend stores them as its input's product reads them).
#[test]
fn dense_data_trains_from_weights_given_in_rows() {
    let d = mnist();
    // MNIST with no zero left: the same digits, lifted off black.
    let lifted = |s: &Split, n: usize| Split {
        images: s
            .images
            .range(0..n * s.features)
            .iter()
            .map(|&v| 0.05 + 0.9 * v)
            .collect::<Vec<f32>>()
            .into(),
        labels: s.labels[..n].to_vec(),
        features: s.features,
    };
    let data = Dataset {
        train: lifted(&d.train, 2_000),
        val: lifted(&d.val, 500),
        test: lifted(&d.test, 500),
        shape: d.shape,
        checksums: Vec::new(),
    };
    let sparse = Trainer::new(config(json!({"iters": 1})), d, Target::cpu(2), None).unwrap();
    let start = sparse.params().unwrap();
    let mut t = Trainer::new(
        config(json!({"iters": 20})),
        &data,
        Target::cpu(2),
        Some(start.clone()),
    )
    .unwrap();
    assert!(t.params().unwrap() == start, "rows given, rows kept");
    let s = finish(&mut t);
    assert!(s.last.test_acc > 0.5, "{:?}", s.last);
}

/// A checkpoint resumed on data of another image size is refused with a
/// clear error (before, its weights reached the trainer's length check).
#[test]
fn resuming_on_data_of_another_size_is_an_error() {
    let ckpt = Trainer::new(config(json!({"iters": 1})), mnist(), Target::cpu(1), None)
        .unwrap()
        .checkpoint()
        .unwrap();
    let ckpt = Checkpoint::from_model(ckpt).unwrap();
    let split = |n: usize| Split {
        images: vec![0.5; n * 16].into(),
        labels: (0..n).map(|i| (i % 10) as u8).collect(),
        features: 16,
    };
    let small = Dataset {
        train: split(20),
        val: split(5),
        test: split(5),
        shape: (4, 4),
        checksums: Vec::new(),
    };
    let err = Trainer::resume(&ckpt, &small, Target::cpu(1))
        .err()
        .expect("an error");
    assert!(
        err.to_string()
            .contains("does not fit this data (16 inputs)"),
        "{err}"
    );
}

/// The run behind the model-selection tests: a constant rate too high for
/// steady progress, so validation accuracy rises and falls.
fn bumpy(overrides: serde_json::Value) -> TrainConfig {
    let mut cfg = json!({"iters": 100, "batch_size": 200, "lr": 0.05, "lr_schedule": "constant", "eval_every": 10});
    cfg.as_object_mut()
        .unwrap()
        .extend(overrides.as_object().unwrap().clone());
    config(cfg)
}

#[test]
fn keep_best_keeps_the_weights_of_the_best_validation_accuracy() {
    let mut t = Trainer::new(
        bumpy(json!({"keep_best": true})),
        mnist(),
        Target::cpu(2),
        None,
    )
    .unwrap();
    let (s, log) = common::finish(&mut t);
    let best = s.best.clone().expect("a best evaluation");
    let top = log
        .iter()
        .map(|r| r.val_acc.unwrap())
        .fold(f64::MIN, f64::max);
    assert_eq!(
        best.val_acc,
        Some(top),
        "the best is the highest validation accuracy"
    );
    assert!(
        best.iter < s.last.iter && best.val_acc > s.last.val_acc,
        "this run must end worse than its best: best {best:?}, last {:?}",
        s.last
    );
    assert!(log.iter().all(|r| r.best_iter.is_some_and(|i| i <= r.iter)));
    assert_eq!(s.last.best_iter, Some(best.iter));

    // The kept weights are those a run stopped at the best iteration ends with.
    let mut short = Trainer::new(
        bumpy(json!({"iters": best.iter})),
        mnist(),
        Target::cpu(2),
        None,
    )
    .unwrap();
    finish(&mut short);
    let kept = t.trained_model().unwrap();
    assert!(
        kept.params == short.params().unwrap(),
        "the saved weights are not the best"
    );
    assert!(
        kept.params != t.checkpoint().unwrap().params,
        "a checkpoint holds the last weights"
    );
    let net = Network::new(t.layout.clone(), 2);
    let val = &mnist().val;
    let params = Params::from_rows(&t.layout, &kept.params, InputKind::Dense);
    let acc = net.accuracy(
        &params,
        Input::Dense(&val.images.floats()),
        &val.labels,
        &mut net.workspace(1000),
    );
    assert!(
        (acc - top).abs() <= 2e-4,
        "kept weights score {acc}, best {top}"
    );
}

#[test]
fn patience_stops_the_run_after_evaluations_without_progress() {
    let mut t = Trainer::new(
        bumpy(json!({"lr": 0.02, "patience": 1})),
        mnist(),
        Target::cpu(2),
        None,
    )
    .unwrap();
    let (s, log) = common::finish(&mut t);
    let stop = s.stopped_early.expect("patience ran out");
    assert!(stop < 100 && t.step == stop && s.last.iter == stop, "{s:?}");
    // Every evaluation but the last improved on the one before.
    let val: Vec<f64> = log.iter().map(|r| r.val_acc.unwrap()).collect();
    assert!(val.windows(2).rev().skip(1).all(|w| w[1] > w[0]), "{val:?}");
    assert!(val[val.len() - 1] <= val[val.len() - 2], "{val:?}");
    // Patience alone selects but keeps the last weights.
    assert_eq!(s.best.unwrap().iter, log[log.len() - 2].iter);
    assert!(t.params().unwrap() == t.checkpoint().unwrap().params);
}

#[test]
fn model_selection_without_a_validation_split_is_an_error() {
    let data = Dataset::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"),
        Some(0),
    )
    .unwrap();
    let err = Trainer::new(
        bumpy(json!({"keep_best": true})),
        &data,
        Target::cpu(1),
        None,
    )
    .err()
    .expect("an error");
    assert!(err.to_string().contains("no validation split"), "{err}");
}

/// The loss reported at an evaluation is honest: with minibatches, J is
/// the mean cross-entropy of the steps since the last evaluation (each
/// weighted by its samples; an epoch ends with a batch of 80), the L2 term
/// beside it; the validation loss is the mean cross-entropy of the
/// validation images under the weights evaluated, as the library computes
/// it; in a full-batch run J is the notebook's, the cross-entropy plus the
/// L2 term.
#[test]
fn the_loss_reported_is_the_mean_since_the_last_evaluation_and_val_loss_is_the_librarys() {
    let ctl = RunControl::default();
    let cfg = config(json!({"epochs": 2, "eval_every": 300}));
    let mut t = Trainer::new(cfg, mnist(), Target::cpu(2), None).unwrap();
    let mut log = common::Log::default();
    t.run(&mut log, &ctl).unwrap();
    let rows = |k: usize| if k % 391 == 390 { 80.0 } else { 128.0 };
    let mut from = 0;
    for r in &log.evals {
        let steps = from..r.iter;
        let sum: f64 = steps.clone().map(|k| log.losses[k] * rows(k)).sum();
        let mean = sum / steps.clone().map(rows).sum::<f64>();
        assert!(
            (r.j - mean).abs() < 1e-12 * mean,
            "at {}: J {} vs mean {mean}",
            r.iter,
            r.j
        );
        assert_eq!(r.train_loss, Some(r.j));
        assert!(r.l2.unwrap() > 0.0);
        from = r.iter;
    }
    let model = t.trained_model().unwrap();
    let val = &mnist().val;
    let mut logits = scratchnet::backend::logits(
        Target::cpu(2),
        &model.layout,
        &model.params,
        &val.images.floats(),
    )
    .unwrap();
    scratchnet::nn::softmax_ce::softmax(&mut logits, 10);
    let want: f64 = logits
        .chunks(10)
        .zip(&val.labels)
        .map(|(p, &y)| -((p[y as usize] + 1e-7) as f64).ln())
        .sum::<f64>()
        / val.len() as f64;
    let got = log.evals.last().unwrap().val_loss.unwrap();
    // Seen (2026-12-06): 1.1e-8 apart (paired against compressed rows).
    println!("validation loss {got} against the library's {want}");
    assert!((got - want).abs() < 1e-7 * want, "{got} vs {want}");

    let cfg = config(json!({"preset": "seed", "iters": 3, "eval_every": 1, "keep": [1.0]}));
    let mut t = Trainer::new(cfg, mnist(), Target::cpu(2), None).unwrap();
    let mut log = common::Log::default();
    t.run(&mut log, &ctl).unwrap();
    for (r, &step) in log.evals.iter().zip(&log.losses) {
        assert_eq!(r.train_loss, Some(step));
        assert!((r.j - (step + r.l2.unwrap())).abs() < 1e-12, "{r:?}");
    }
}

/// Determinism on every other kernel family the machine has.
#[test]
#[ignore = "slow suite, kernel families: `.ci/run` runs it"]
fn every_kernel_family_is_deterministic() {
    common::on_the_other_fma_families(
        "training::every_kernel_family_is_deterministic",
        &[
            "training::same_seed_gives_bit_identical_weights_and_a_new_seed_does_not",
            "training::thread_count_does_not_change_the_weights",
            "training::one_epoch_of_the_default_preset_reaches_95_percent",
        ],
    );
}
