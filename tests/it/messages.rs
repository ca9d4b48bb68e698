//! Bad input named in the user's terms: each error says what was wrong and
//! what is expected, and two inputs that mean the same get the same answer.

use crate::common;
use serde_json::json;
use std::path::Path;
use std::process::Output;

fn scratchnet(args: &[&str], dir: &Path) -> Output {
    common::run_in(dir, args)
}

fn refused(args: &[&str], dir: &Path, needles: &[&str]) -> String {
    common::fails_in(dir, args, needles)
}

#[test]
fn files_that_are_not_models_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::trained_model(d, json!({"epochs": 1}));
    let out = scratchnet(&["export", model.to_str().unwrap(), "--onnx", "m.onnx"], d);
    assert!(out.status.success(), "{out:?}");
    std::fs::write(d.join("notes.txt"), "W11 = 0.5\n").unwrap();
    std::fs::write(d.join("empty.safetensors"), b"").unwrap();
    let gz = common::root().join("data/mnist/t10k-labels-idx1-ubyte.gz");
    let gz = gz.to_str().unwrap();
    let expected = "expected a .safetensors model saved by scratchnet";
    for (file, what) in [
        ("notes.txt", "it is a text file"),
        (
            "m.onnx",
            "it is an ONNX file, which `scratchnet export` writes",
        ),
        ("empty.safetensors", "the file is empty"),
        (gz, "it is gzip-compressed data"),
    ] {
        for cmd in ["eval", "info"] {
            refused(
                &[cmd, file],
                d,
                &[file, "not a scratchnet model", what, expected],
            );
        }
    }
}

#[test]
fn predict_with_a_model_and_no_image_asks_for_images() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        &["predict", "model.safetensors"],
        dir.path(),
        &[
            "no image given",
            "scratchnet predict model.safetensors IMAGE...",
        ],
    );
    assert!(!err.contains("give a model"), "{err}");
}

#[test]
fn an_empty_image_file_is_called_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::trained_model(d, json!({"epochs": 1}));
    std::fs::write(d.join("blank.png"), b"").unwrap();
    refused(
        &["predict", model.to_str().unwrap(), "blank.png"],
        d,
        &["blank.png", "the file is empty (0 bytes)", "PNG, JPEG"],
    );
}

#[test]
fn numbers_of_the_wrong_kind_are_named_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (args, words) in [
        (
            ["train", "--epochs", "-3"],
            "cannot be negative: expected a whole number",
        ),
        (
            ["train", "--iters", "2.5"],
            "expected a whole number, without a fraction",
        ),
        (
            ["train", "--seed", "x"],
            "expected a whole number, such as 12",
        ),
        (["train", "--epochs", "0"], "must be at least 1"),
    ] {
        let err = refused(&args, d, &[args[1], words]);
        assert!(!err.contains("invalid digit"), "{err}");
    }
}

#[test]
fn an_option_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = refused(
        &["train", "--arch", "relu128"],
        dir.path(),
        &["branch `relu128` should be activation:width, e.g. relu:128"],
    );
    assert_eq!(err.matches("--arch").count(), 1, "{err}");
}

#[test]
fn output_paths_that_cannot_be_written_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = common::trained_model(d, json!({"epochs": 1}));
    std::fs::create_dir(d.join("plots")).unwrap();
    // A folder given for the ONNX file: the suggestion is an ONNX name in it.
    refused(
        &["export", model.to_str().unwrap(), "--onnx", "plots"],
        d,
        &["--onnx plots: is a directory", "plots/model.onnx"],
    );
    // A folder that exists but takes no files.
    refused(
        &["train", "--save", "/proc/m.safetensors"],
        d,
        &[
            "--save /proc/m.safetensors",
            "cannot write in the folder /proc",
            "takes no new files",
        ],
    );
}

/// A metrics file of one evaluation draws each curve as a marked point, and
/// says that it holds only one.
#[test]
fn a_single_evaluation_is_plotted_as_points() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = scratchnet(
        &[
            "train",
            "-q",
            "--epochs",
            "1",
            "--metrics",
            "run.jsonl",
            "--data",
            common::root().join("data/mnist").to_str().unwrap(),
        ],
        d,
    );
    assert!(out.status.success(), "{out:?}");
    let records = std::fs::read_to_string(d.join("run.jsonl")).unwrap();
    assert_eq!(records.lines().count(), 1);
    let out = scratchnet(&["plot", "--metrics", "run.jsonl", "--out", "p"], d);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("one evaluation"), "{err}");
    let png = image::open(d.join("p/curves.png")).unwrap().to_rgb8();
    // The training series' colour (the first of the palette): the legends'
    // lines alone are 120 pixels, with a marker in each chart 188 (seen).
    let blue = png.pixels().filter(|p| p.0 == [31, 119, 180]).count();
    assert!(
        blue > 150,
        "{blue} pixels of the training series: no marker"
    );
}
