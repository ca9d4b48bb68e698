//! Never crash, never lose a model: divergence, full disks, kills mid-save,
//! and random corruption of every file format scratchnet reads.

use crate::common;

use proptest::prelude::*;
use scratchnet::data::idx::{parse_idx, write_idx, IMAGES_MAGIC, LABELS_MAGIC};
use scratchnet::data::pickle::parse_mnist_pickle;
use scratchnet::model_io::Model;
use scratchnet::nn::{Arch, InitScheme, Layout};
use scratchnet::train::TrainConfig;
use std::collections::BTreeMap;
use std::process::{Command, Stdio};

fn scratchnet() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scratchnet"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn small_model(seed: u64) -> Model {
    let layout = Layout::new(&Arch::parse("relu:5|tanh:3,relu:4", 6, 10).unwrap());
    let params = layout.init(InitScheme::He, seed);
    Model {
        layout,
        params,
        metadata: BTreeMap::from([("note".to_string(), "x".to_string())]),
        extra: BTreeMap::new(),
    }
}

#[test]
fn divergence_stops_at_once_names_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let model = dir.path().join("m.safetensors");
    let out = scratchnet()
        .args([
            "train",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--iters",
            "50",
            "-q",
            "--checkpoint-every",
            "1",
        ])
        .args([
            "--checkpoint",
            ck.to_str().unwrap(),
            "--save",
            model.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The step, the activation that overflowed and the weight that grew.
    assert!(
        err.contains("diverged at iteration 1: the loss is NaN: A2 (the output of layer 2) holds a non-finite value; the largest weight is")
            && err.contains("in W3 (try a lower learning rate)"),
        "{err}"
    );
    assert!(
        err.contains("last good checkpoint") && err.contains("ck.safetensors"),
        "{err}"
    );
    // A diverged run's weights are not kept as a rescued copy.
    assert!(!err.contains("rescued"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The checkpoint holds only finite values (the reader refuses others) and no model was saved.
    Model::load(&ck).unwrap();
    assert!(!model.exists());
}

/// An update that leaves a parameter non-finite is caught at that step,
/// naming the tensor.
#[test]
fn a_non_finite_update_names_the_step_and_the_tensor() {
    let out = scratchnet()
        .args([
            "train",
            "--optimizer",
            "sgd",
            "--lr",
            "1e10",
            "--l2",
            "1e38",
        ])
        .args(["--iters", "5", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("diverged at iteration 0: tensor W11 holds a non-finite value after the update (learning rate 1e10)"),
        "{err}"
    );
}

#[test]
fn a_full_disk_leaves_the_previous_model_intact() {
    let Some(fs) = common::Tmpfs::mount_for("a_full_disk_leaves_the_previous_model_intact", 256)
    else {
        return;
    };
    let dir = fs.path();
    let path = dir.join("m.safetensors");
    let a = Model {
        layout: Layout::new(&Arch::parse("relu:40", 784, 10).unwrap()),
        params: vec![0.5; 784 * 40 + 40 + 410 + 10],
        metadata: BTreeMap::new(),
        extra: BTreeMap::new(),
    };
    a.save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    // Fill the disk so the next save cannot fit.
    let free = 256 * 1024 - before.len();
    let _ = std::fs::write(
        dir.join("filler"),
        vec![1u8; free.saturating_sub(20 * 1024)],
    );
    let b = Model {
        params: vec![0.25; a.params.len()],
        ..a.clone()
    };
    let e = format!("{:#}", b.save(&path).unwrap_err());
    assert!(
        e.contains("m.safetensors") && e.contains("previous file") && e.contains("No space"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the previous model changed"
    );
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "a temporary file was left behind: {names:?}"
    );
}

#[test]
fn a_read_only_directory_is_a_clear_error() {
    let Some(fs) = common::Tmpfs::mount_for("a_read_only_directory_is_a_clear_error", 64) else {
        return;
    };
    let path = fs.path().join("m.safetensors");
    small_model(1).save(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    fs.read_only();
    let e = format!("{:#}", small_model(2).save(&path).unwrap_err());
    assert!(
        e.contains("m.safetensors") && e.contains("Read-only"),
        "{e}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

/// SIGKILL at random moments while checkpoints of a 13 MB model are written
/// over and over: the file under the final name is always whole.
#[test]
fn kill_during_saves_never_leaves_a_truncated_model() {
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck.safetensors");
    let mut whole = 0;
    for round in 0..12u64 {
        // Each round's file, if any, is that round's.
        let _ = std::fs::remove_file(&ck);
        let mut child = scratchnet()
            .args([
                "train",
                "--arch",
                "relu:4096",
                "--batch-size",
                "8",
                "--iters",
                "100000",
                "-q",
                "--threads",
                "1",
                "--checkpoint-every",
                "1",
            ])
            .args(["--checkpoint", ck.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Data loading takes about a second; then a checkpoint (13 MB, fsync) every ~0.2 s.
        std::thread::sleep(std::time::Duration::from_millis(2500 + 37 * round));
        child.kill().unwrap();
        child.wait().unwrap();
        if ck.exists() {
            let m = Model::load(&ck).unwrap_or_else(|e| {
                panic!("round {round}: truncated or corrupt checkpoint: {e:#}")
            });
            assert_eq!(m.layout.len, 784 * 4096 + 4096 + 4096 * 10 + 10);
            whole += 1;
        }
    }
    assert!(whole >= 6, "only {whole} rounds got as far as a checkpoint");
}

fn idx_file(n: usize) -> Vec<u8> {
    let mut v = Vec::new();
    write_idx(&mut v, IMAGES_MAGIC, &[n, 2, 3], &vec![7u8; n * 6]).unwrap();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn idx_round_trips(dims in proptest::collection::vec(1usize..6, 1..=3), seed in any::<u8>()) {
        let magic = 0x0800 | dims.len() as u32;
        let n: usize = dims.iter().product();
        let data: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let mut bytes = Vec::new();
        write_idx(&mut bytes, magic, &dims, &data).unwrap();
        let back = parse_idx(&mut &bytes[..], magic, Some(bytes.len() as u64)).unwrap();
        prop_assert_eq!(back.dims, dims);
        prop_assert_eq!(back.data, data);
    }

    #[test]
    fn mutated_idx_never_panics(flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6), cut in 0usize..64) {
        let mut bytes = idx_file(4);
        for (at, v) in flips {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        bytes.truncate(cut.max(1).min(bytes.len()));
        let _ = parse_idx(&mut &bytes[..], IMAGES_MAGIC, Some(bytes.len() as u64));
        let _ = parse_idx(&mut &bytes[..], LABELS_MAGIC, None);
    }

    #[test]
    fn model_files_round_trip(seed in any::<u64>()) {
        let m = small_model(seed);
        let back = Model::from_bytes(&m.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(back.layout, m.layout);
        prop_assert!(back.params == m.params);
        prop_assert_eq!(&back.metadata["note"], "x");
    }

    #[test]
    fn mutated_model_files_never_panic(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let mut bytes = small_model(3).to_bytes().unwrap();
        for (at, v) in flips {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        bytes.truncate(1 + cut % bytes.len());
        let _ = Model::from_bytes(&bytes);
    }

    #[test]
    fn random_bytes_never_panic_the_pickle_reader(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut with_header = vec![0x80, 2];
        with_header.extend(&bytes);
        let _ = parse_mnist_pickle(&mut &bytes[..]);
        let _ = parse_mnist_pickle(&mut &with_header[..]);
    }

    #[test]
    fn random_config_text_never_panics(text in "[a-z_ =\\[\\]0-9.\"\\n,-]{0,80}") {
        let _ = TrainConfig::resolve(Some(("fuzzed.toml", &text)), serde_json::json!({}));
    }
}

/// A pickled array whose shape's product overflows is refused before any allocation.
#[test]
fn pickle_shape_overflow_is_refused() {
    // _reconstruct(ndarray, (0,), b'b') then BUILD with shape (2^62, 2^62), dtype f4, 4 bytes of data.
    let mut p: Vec<u8> = vec![0x80, 2];
    p.extend(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R(K\x01");
    // A shape of five 2^31-1 sizes (BININT, the largest int this reader takes): the
    // product overflows 64 bits.
    p.push(b'(');
    for _ in 0..5 {
        p.extend([b'J', 0xff, 0xff, 0xff, 0x7f]);
    }
    p.extend(b"tcnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89T\x04\x00\x00\x00abcdtb.");
    let e = format!("{:#}", parse_mnist_pickle(&mut &p[..]).unwrap_err());
    assert!(e.contains("overflows"), "{e}");
}
