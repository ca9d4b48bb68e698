//! Failing before the work, never after it: every output a command will
//! write is checked before any training; a final save that still fails
//! leaves the model somewhere, and says where; and `predict` answers every
//! readable image of a batch, naming each one it cannot answer.

use crate::common;

use scratchnet::model_io::Model;
use std::path::Path;
use std::process::{Command, Output};

/// `scratchnet ARGS --data MNIST` in `dir`.
fn scratchnet(args: &[&str], dir: &Path) -> Output {
    let data = common::root().join("data/mnist");
    common::run_in(dir, &[args, &["--data", data.to_str().unwrap()]].concat())
}

/// `train` of a small network (784 -> relu 40 -> 10), quiet, with `more`.
fn small_run(more: &[&str], dir: &Path) -> Output {
    scratchnet(&[&["train", "--arch", "relu:40", "-q"], more].concat(), dir)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command that must fail before training starts, naming `needles`.
fn refused(args: &[&str], dir: &Path, needles: &[&str]) {
    let out = scratchnet(args, dir);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: expected `{n}` in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing was trained: no evaluation printed, no trial run.
    assert!(
        !stdout.contains("iter ") && !stdout.contains("trial"),
        "{args:?} started work before failing: {stdout}"
    );
}

#[test]
fn outputs_that_cannot_be_written_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let folder = d.join("runs");
    std::fs::create_dir(&folder).unwrap();
    let file = d.join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let (folder, file) = (folder.to_str().unwrap(), file.to_str().unwrap());
    let inside_file = format!("{file}/m.safetensors");
    let cases: [(&[&str], &[&str]); 5] = [
        (&["--save", folder], &["--save", folder, "is a directory"]),
        (&["--save", "runs/"], &["--save", "runs/", "is a directory"]),
        (
            &["--metrics", folder],
            &["--metrics", folder, "is a directory"],
        ),
        (
            &["--checkpoint-every", "5", "--checkpoint", folder],
            &["--checkpoint", folder, "is a directory"],
        ),
        (&["--save", &inside_file], &["--save", file, "not a folder"]),
    ];
    for (options, needles) in cases {
        let args: Vec<&str> = ["train", "--epochs", "1"]
            .iter()
            .chain(options)
            .copied()
            .collect();
        refused(&args, d, needles);
    }
    refused(
        &["sweep", "--trials", "1", "--iters", "1", "--out", file],
        d,
        &["--out", file, "not a folder"],
    );
    refused(
        &["plot", "--metrics", "none.jsonl", "--out", file],
        d,
        &["--out", file, "not a folder"],
    );
    // Before any download is tried (this machine may have no network).
    let out = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
        .args(["download", "--dest", file])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--dest") && stderr.contains("not a folder"),
        "{stderr}"
    );
}

#[test]
fn a_missing_folder_for_the_outputs_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let out = scratchnet(
        &[
            "train",
            "--iters",
            "3",
            "-q",
            "--save",
            "new/runs/m.safetensors",
            "--metrics",
            "logs/m.jsonl",
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    Model::load(&dir.path().join("new/runs/m.safetensors")).unwrap();
    assert!(dir.path().join("logs/m.jsonl").is_file());
}

#[test]
fn a_read_only_folder_is_refused_before_training() {
    let Some(fs) = common::Tmpfs::mount_for("a_read_only_folder_is_refused_before_training", 64)
    else {
        return;
    };
    fs.read_only();
    let save = fs.path().join("m.safetensors");
    let dir = tempfile::tempdir().unwrap();
    refused(
        &["train", "--epochs", "1", "--save", save.to_str().unwrap()],
        dir.path(),
        &[
            "--save",
            save.to_str().unwrap(),
            "cannot write in the folder",
            "Read-only",
        ],
    );
}

/// The disk fills during the final save (the folder was writable when
/// checked): the model goes beside the checkpoint, the error says where,
/// and the exit status is non-zero.
#[test]
fn a_disk_that_fills_during_the_final_save_keeps_the_model() {
    let Some(fs) = common::Tmpfs::mount_for(
        "a_disk_that_fills_during_the_final_save_keeps_the_model",
        64,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let save = fs.path().join("m.safetensors");
    let ckpt = dir.path().join("keep/ck.safetensors");
    // 31,810 parameters (127 KB) do not fit in 64 KB.
    let out = small_run(
        &[
            "--iters",
            "20",
            "--save",
            save.to_str().unwrap(),
            "--checkpoint",
            ckpt.to_str().unwrap(),
        ],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rescued = dir.path().join("keep/m.rescued.safetensors");
    assert!(
        stderr.contains("No space left")
            && stderr.contains(&format!("saved to {} instead", rescued.display())),
        "{stderr}"
    );
    let m = Model::load(&rescued).unwrap();
    assert_eq!(m.layout.len, 784 * 40 + 40 + 40 * 10 + 10);
    assert_eq!(m.metadata["scratchnet.steps"], "20");
    assert!(!save.exists(), "a partial model under the final name");
}

#[test]
fn predict_answers_every_readable_image_and_names_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("m.safetensors");
    let out = scratchnet(
        &[
            "train",
            "--epochs",
            "1",
            "-q",
            "--save",
            model.to_str().unwrap(),
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let imgs = d.join("scans");
    std::fs::create_dir(&imgs).unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples");
    let mut good = Vec::new();
    for e in std::fs::read_dir(&examples).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, imgs.join(p.file_name().unwrap())).unwrap();
        good.push(p);
    }
    assert!(good.len() >= 3);
    let first = std::fs::read(&good[0]).unwrap();
    std::fs::write(imgs.join("cut.pgm"), &first[..first.len() / 2]).unwrap();
    std::fs::write(imgs.join("notes.png"), b"not an image").unwrap();
    image::GrayImage::from_pixel(28, 28, image::Luma([255]))
        .save(imgs.join("blank.png"))
        .unwrap();
    let bad = ["blank.png", "cut.pgm", "notes.png"];
    for csv in [false, true] {
        let mut args = vec!["predict", "--model", model.to_str().unwrap(), "scans"];
        if csv {
            args.push("--csv");
        }
        let out = Command::new(env!("CARGO_BIN_EXE_scratchnet"))
            .args(&args)
            .current_dir(d)
            .output()
            .unwrap();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stderr.contains("3 of"), "{stderr}");
        assert!(
            stderr.contains("blank.png: no digit found: the image is blank"),
            "{stderr}"
        );
        assert!(
            stderr.contains("cut.pgm: cannot read as an image"),
            "{stderr}"
        );
        assert!(
            stderr.contains("notes.png: cannot read as an image"),
            "{stderr}"
        );
        // Each example is named for its label (digit-N-label-L.pgm), and
        // each is answered right.
        for p in &good {
            let name = p.file_name().unwrap().to_str().unwrap();
            let label = name.split("label-").nth(1).unwrap().chars().next().unwrap();
            let line = stdout
                .lines()
                .find(|l| l.contains(name))
                .unwrap_or_else(|| panic!("{name} got no answer: {stdout}"));
            let digit = match csv {
                true => line.split(',').nth(1).unwrap().to_string(),
                false => line.split_whitespace().nth(1).unwrap().to_string(),
            };
            assert_eq!(digit, label.to_string(), "{line}");
        }
        for name in bad {
            let line = stdout.lines().find(|l| l.contains(name)).unwrap();
            match csv {
                true => {
                    let fields: Vec<&str> = line.split(',').collect();
                    assert!(fields[1..12].iter().all(|f| f.is_empty()), "{line}");
                    assert!(
                        line.contains("cannot read") || line.contains("blank"),
                        "{line}"
                    );
                }
                false => assert!(line.split_whitespace().nth(1) == Some("-"), "{line}"),
            }
        }
    }
}

/// A checkpoint that cannot be written stops the run, and the run is kept
/// where it can be (here: the working directory), resumable; a metrics file
/// on a full disk costs the metrics, not the run.
#[test]
fn a_run_whose_checkpoints_or_metrics_cannot_be_written_is_kept() {
    let Some(fs) = common::Tmpfs::mount_for(
        "a_run_whose_checkpoints_or_metrics_cannot_be_written_is_kept",
        64,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = fs.path().join("ck.safetensors");
    let out = small_run(
        &[
            "--iters",
            "20",
            "--checkpoint-every",
            "5",
            "--checkpoint",
            ckpt.to_str().unwrap(),
        ],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("No space left")
            && stderr.contains("the run as of step 5 was saved to ./ck.rescued.safetensors")
            && stderr.contains("--resume ./ck.rescued.safetensors"),
        "{stderr}"
    );
    let resumed = scratchnet(
        &["train", "--resume", "ck.rescued.safetensors", "-q"],
        dir.path(),
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert!(text(&resumed.stdout).contains("done: 20 steps"));

    // 4 KB of metrics fill the disk after some twenty evaluations of 100.
    let small = common::Tmpfs::mount(4).unwrap();
    let metrics = small.path().join("m.jsonl");
    let out = small_run(
        &[
            "--iters",
            "100",
            "--eval-every",
            "1",
            "--metrics",
            metrics.to_str().unwrap(),
            "--save",
            "m.safetensors",
        ],
        dir.path(),
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("metrics are no longer written"),
        "{stderr}"
    );
    Model::load(&dir.path().join("m.safetensors")).unwrap();
}
