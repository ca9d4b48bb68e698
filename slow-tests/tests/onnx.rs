//! `scratchnet export --onnx`, read back by runtimes scratchnet did not
//! write: tract (here, a dev-dependency) and, when `SCRATCHNET_PYTHON`
//! names a Python with `onnx` and `onnxruntime` (CI installs them), onnx's
//! checker and ONNX Runtime (`scripts/onnx_check.py`). Their logits on the
//! 10,000 MNIST test images must be scratchnet's, for the notebook's
//! network and for an odd architecture.

#[path = "../../tests/it/common/mod.rs"]
mod common;

use common::mnist;
use scratchnet::backend::{logits, Target};
use scratchnet::compare;
use scratchnet::model_io::Model;
use scratchnet::nn::network::argmax;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use tract_onnx::prelude::*;

fn root() -> &'static Path {
    common::root()
}

/// A model of `arch`, trained for one epoch and saved in `dir`.
fn trained(arch: &str, dir: &Path) -> PathBuf {
    common::trained_model(dir, json!({"epochs": 1, "arch": arch}))
}

/// `scratchnet export` through the binary; returns the ONNX file.
fn export(model: &Path) -> PathBuf {
    let onnx = model.with_extension("onnx");
    let out = Command::new(common::bin())
        .args(["export", "--model"])
        .arg(model)
        .arg("--onnx")
        .arg(&onnx)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("opset 13"), "{stdout}");
    onnx
}

/// The test images' logits under tract.
fn tract_logits(onnx: &Path, images: &[f32], inputs: usize) -> Vec<f32> {
    let n = images.len() / inputs;
    let model = tract_onnx::onnx()
        .model_for_path(onnx)
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let x = tract_ndarray::Array2::from_shape_vec((n, inputs), images.to_vec()).unwrap();
    let out = model.run(tvec!(Tensor::from(x).into())).unwrap();
    out[0]
        .to_plain_array_view::<f32>()
        .unwrap()
        .iter()
        .copied()
        .collect()
}

/// The fraction right that `scratchnet eval` prints for the test split.
fn eval_accuracy(model: &Path) -> f64 {
    let out = Command::new(common::bin())
        .args(["eval", "--model"])
        .arg(model)
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find(|l| l.starts_with("accuracy ")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn exported_model_is_read_alike(arch: &str) {
    let dir = tempfile::tempdir().unwrap();
    let model_path = trained(arch, dir.path());
    let onnx = export(&model_path);
    let model = Model::load(&model_path).unwrap();
    let test = &mnist().test;
    let images = test.images.floats();
    let ours = logits(Target::cpu(2), &model.layout, &model.params, &images).unwrap();
    let theirs = tract_logits(&onnx, &images, model.layout.arch.inputs);
    // Relative to each logit, and absolute below 1: the products sum in
    // another order, whose rounding scales with the terms (logits are of
    // order 1 to 10), not with a result near zero. Seen (2026-12-06):
    // 4.1e-6 for the notebook's network, 2.9e-6 for the odd one.
    compare::assert_close(
        &format!("{arch}: tract's logits"),
        &theirs,
        &ours,
        1.0,
        4e-5,
    );
    let classes = model.layout.arch.classes;
    let right = theirs
        .chunks_exact(classes)
        .zip(&test.labels)
        .filter(|(z, &y)| argmax(z) == y)
        .count();
    let accuracy = right as f64 / test.len() as f64;
    let eval = eval_accuracy(&model_path);
    println!("{arch}: tract {accuracy}, scratchnet eval {eval}");
    assert!(accuracy > 0.9, "{arch}: accuracy {accuracy}");
    assert_eq!(format!("{accuracy:.4}"), format!("{eval:.4}"), "{arch}");

    // ONNX's own checker and ONNX Runtime.
    match std::env::var_os("SCRATCHNET_PYTHON") {
        Some(python) => {
            let expected = dir.path().join("logits.f32");
            let bytes: Vec<u8> = ours.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(&expected, bytes).unwrap();
            let out = Command::new(python)
                .arg(root().join("scripts/onnx_check.py"))
                .arg(&onnx)
                .arg(root().join("data/mnist"))
                .arg(&expected)
                .output()
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            println!("{arch}: {stdout}");
            assert!(out.status.success(), "{arch}: {stdout}{stderr}");
        }
        None => common::skip(
            "the ONNX checker and ONNX Runtime",
            "SCRATCHNET_PYTHON does not name a Python with onnx and onnxruntime",
        ),
    }
}

#[test]
fn the_notebooks_network_exports_and_runs_alike() {
    exported_model_is_read_alike("relu:128|tanh:64,relu:48");
}

#[test]
fn an_odd_architecture_exports_and_runs_alike() {
    exported_model_is_read_alike("relu:37|tanh:20|relu:9,tanh:13,relu:11");
}

#[test]
fn a_file_that_is_not_a_model_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("notes.safetensors");
    std::fs::write(&bad, b"not a model").unwrap();
    let onnx = dir.path().join("x.onnx");
    let out = Command::new(common::bin())
        .args(["export", "--model"])
        .arg(&bad)
        .arg("--onnx")
        .arg(&onnx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("notes.safetensors")
            && stderr.contains("not a scratchnet model: it is a text file"),
        "{stderr}"
    );
    assert!(!onnx.exists(), "nothing is written for a bad model");
}
