//! Training on the bundled MNIST: accuracy thresholds, determinism, and the
//! model-file round trip.

use scratchnet::data::Dataset;
use scratchnet::model_io::{load_init, Model};
use scratchnet::nn::Network;
use scratchnet::train::{Observer, TrainConfig, Trainer};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

struct Quiet;
impl Observer for Quiet {}

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

fn config(overrides: serde_json::Value) -> TrainConfig {
    TrainConfig::resolve(None, overrides).unwrap()
}

#[test]
fn one_epoch_of_the_default_preset_reaches_95_percent() {
    let mut t = Trainer::new(config(json!({"epochs": 1})), mnist(), 2, None).unwrap();
    let s = t.run(&mut Quiet).unwrap();
    println!("default preset, 1 epoch: {:?}", s.last);
    assert!(s.last.test_acc >= 0.95, "test accuracy {}", s.last.test_acc);
}

#[test]
fn fifty_iterations_of_the_seed_preset_reach_88_percent_validation() {
    let mut t = Trainer::new(
        config(json!({"preset": "seed", "iters": 50})),
        mnist(),
        2,
        None,
    )
    .unwrap();
    let s = t.run(&mut Quiet).unwrap();
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
    let run = |seed: u64, dropout: &str| {
        let mut t = Trainer::new(
            config(json!({"iters": 40, "seed": seed, "keep": [0.9, 0.8, 0.9], "dropout": dropout})),
            mnist(),
            2,
            None,
        )
        .unwrap();
        let s = t.run(&mut Quiet).unwrap();
        (t.params.clone(), s.last.j)
    };
    for mode in ["unit", "sample"] {
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
    let mut t = Trainer::new(config(json!({"iters": 30})), mnist(), 2, None).unwrap();
    t.run(&mut Quiet).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    t.model(BTreeMap::new()).save(&path).unwrap();

    let loaded = Model::load(&path).unwrap();
    assert_eq!(loaded.layout, t.net.layout);
    assert!(loaded.params == t.params);
    let cfg: TrainConfig = serde_json::from_str(&loaded.metadata["scratchnet.config"]).unwrap();
    assert_eq!(cfg, t.cfg);
    assert!(loaded.metadata["scratchnet.data_sha256"].contains("t10k-images-idx3-ubyte.gz"));

    let test = &mnist().test;
    let net = Network::new(loaded.layout.clone(), 2);
    let mut ws = net.workspace(1000);
    let before = t.net.predict(&t.params, &test.images, &mut ws);
    let after = net.predict(&loaded.params, &test.images, &mut ws);
    assert_eq!(before, after);

    // --init reads the same tensors back by their notebook names.
    assert!(load_init(&path, &t.net.layout).unwrap() == t.params);
}

#[test]
fn init_from_file_starts_from_those_weights() {
    let layout = Trainer::new(config(json!({"iters": 1})), mnist(), 1, None)
        .unwrap()
        .net
        .layout
        .clone();
    let start = layout.init(scratchnet::nn::InitScheme::He, 99);
    let mut a = Trainer::new(config(json!({"iters": 5})), mnist(), 2, Some(start.clone())).unwrap();
    let mut b = Trainer::new(
        config(json!({"iters": 5, "seed": 12345})),
        mnist(),
        2,
        Some(start),
    )
    .unwrap();
    a.run(&mut Quiet).unwrap();
    b.run(&mut Quiet).unwrap();
    // Different seeds change only the batches here; the starting point was shared.
    assert_ne!(a.params, b.params);
    assert!(a
        .params
        .iter()
        .zip(&b.params)
        .all(|(x, y)| (x - y).abs() < 0.05));
}
