//! `--tensorboard` across a resume: each run writes a file of its own in
//! the folder, the checkpoint and the model do not record the folder (it
//! is where a run reports, not what it trained), and `--resume` takes it
//! again. The files' contents are read back by TensorBoard's own reader in
//! `python/tests/test_notebook.py`.

use crate::common::{self, root};
use scratchnet::model_io::Model;
use scratchnet::train::CONFIG_KEY;
use std::path::Path;

/// The event files in `dir`, and each one's number of records (framed as
/// length, its check, the bytes, their check).
fn event_files(dir: &Path) -> Vec<usize> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| {
            let name = f.file_name().unwrap().to_string_lossy().to_string();
            assert!(name.starts_with("events.out.tfevents."), "{name}");
            let bytes = std::fs::read(f).unwrap();
            let (mut at, mut records) = (0, 0);
            while at < bytes.len() {
                let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
                at += 12 + len + 4;
                records += 1;
            }
            assert_eq!(at, bytes.len(), "{name}: whole records");
            records
        })
        .collect()
}

#[test]
fn a_resumed_run_writes_its_events_beside_the_first_and_models_keep_no_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = root().join("data/mnist");
    let data = data.to_str().unwrap();
    let out = common::run_in(
        d,
        &[
            "train",
            "--preset",
            "seed",
            "--iters",
            "20",
            "--eval-every",
            "5",
            "--data",
            data,
            "--tensorboard",
            "runs/a",
            "--checkpoint-every",
            "10",
            "--save",
            "m.safetensors",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("tensorboard = \"runs/a\""),
        "the configuration shows it: {text}"
    );
    // The version and the settings, then 5 evaluations of scalars and pictures.
    assert_eq!(event_files(&d.join("runs/a")), vec![2 + 2 * 5]);
    for file in ["m.safetensors", "checkpoint.safetensors"] {
        let model = Model::load(&d.join(file)).unwrap();
        let cfg = &model.metadata[CONFIG_KEY];
        assert!(cfg.contains("\"tensorboard\":null"), "{file}: {cfg}");
    }
    // Longer, into the same folder: a second file beside the first.
    let out = common::run_in(
        d,
        &[
            "train",
            "--resume",
            "checkpoint.safetensors",
            "--iters",
            "30",
            "--data",
            data,
            "--tensorboard",
            "runs/a",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = event_files(&d.join("runs/a"));
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.contains(&(2 + 2 * 3)),
        "evaluations after steps 21, 26 and 30: {files:?}"
    );
    common::fails_in(
        d,
        &[
            "train",
            "--resume",
            "checkpoint.safetensors",
            "--lr",
            "0.1",
            "--data",
            data,
        ],
        &["only a longer --epochs or --iters, and --tensorboard, may be given"],
    );
}
