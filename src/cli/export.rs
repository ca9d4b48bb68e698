//! `scratchnet export`: a trained model for other runtimes.

use super::{ModelArg, Verbosity};
use anyhow::Result;
use scratchnet::export::onnx::{export, IR_VERSION, OPSET};
use scratchnet::fsutil::{check_extension, check_output_file};
use scratchnet::model_io::Model;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "The ONNX file takes `pixels`, float32 [N, 784] scaled to 0..1 (MNIST's
byte / 256), and gives `logits` and `probabilities`, float32 [N, 10]; its metadata
says how to prepare an image, the labels, the architecture and the training summary.

Examples:
  scratchnet export model.safetensors --onnx model.onnx
  python3 -c \"import onnxruntime as ort; print(ort.InferenceSession('model.onnx').get_inputs()[0])\""
)]
pub struct ExportArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Write the model as ONNX here (written atomically)
    #[arg(long, value_name = "FILE")]
    onnx: PathBuf,
}

pub fn run(args: ExportArgs, v: Verbosity) -> Result<()> {
    check_output_file("--onnx", &args.onnx, "model.onnx")?;
    check_extension("--onnx", &args.onnx)?;
    let model = Model::load(args.model.required("export")?)?;
    export(&model, &args.onnx)?;
    let arch = &model.layout.arch;
    if v == Verbosity::Quiet {
        return Ok(());
    }
    println!(
        "wrote {}: {arch} ({} parameters), ONNX opset {OPSET}, IR version {IR_VERSION}; input `pixels` [N, {}], outputs `logits` and `probabilities` [N, {}]",
        args.onnx.display(),
        model.layout.len,
        arch.inputs,
        arch.classes
    );
    Ok(())
}
