//! `scratchnet eval`.

use super::{Common, DeviceArg, ModelArg, Verbosity};
use anyhow::Result;
use scratchnet::backend::logits;
use scratchnet::data::{Dataset, CLASSES};
use scratchnet::model_io::Model;
use scratchnet::nn::network::argmax;
use scratchnet::train::metrics::{confusion, per_class_accuracy};

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  scratchnet eval model.safetensors\n  scratchnet eval model.safetensors --split val --data fashion-mnist/"
)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArg,
    /// Which split to evaluate
    #[arg(long, default_value = "test", value_parser = ["train", "val", "test"])]
    split: String,
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: EvalArgs, v: Verbosity) -> Result<()> {
    args.device.device.check()?;
    let model_path = args.model.required("eval")?;
    let model = Model::load(model_path)?;
    let path = args.common.data_path()?;
    let data = Dataset::load(&path, None)?;
    let arch = &model.layout.arch;
    if arch.inputs != data.features() || arch.classes != CLASSES {
        anyhow::bail!("{}: the model takes {} inputs and {} classes, but {} has {}-pixel images and {CLASSES} classes", model_path.display(), arch.inputs, arch.classes, path.display(), data.features());
    }
    let split = match args.split.as_str() {
        "train" => &data.train,
        "val" => &data.val,
        _ => &data.test,
    };
    let target = args.device.target();
    let z = logits(target, &model.layout, &model.params, &split.images.floats())?;
    let pred: Vec<u8> = z.chunks_exact(arch.classes).map(argmax).collect();
    let m = confusion(&split.labels, &pred);
    let correct: usize = (0..CLASSES).map(|c| m[c][c]).sum();
    let accuracy = correct as f64 / split.len().max(1) as f64;
    if v == Verbosity::Quiet {
        println!("accuracy {accuracy:.4} ({correct} / {})", split.len());
        return Ok(());
    }
    println!("model {} ({arch})", model_path.display());
    println!(
        "{} split of {}: {} images",
        args.split,
        path.display(),
        split.len()
    );
    println!("accuracy {accuracy:.4} ({correct} / {})", split.len());
    println!("\nper-class accuracy:");
    for (c, a) in per_class_accuracy(&m).iter().enumerate() {
        println!("  {c}: {a:.4}  ({} images)", m[c].iter().sum::<usize>());
    }
    println!("\nconfusion matrix (rows: true digit, columns: predicted):");
    print!("      ");
    (0..CLASSES).for_each(|c| print!("{c:>6}"));
    println!();
    for (t, row) in m.iter().enumerate() {
        print!("  {t:>2}  ");
        row.iter().for_each(|n| print!("{n:>6}"));
        println!();
    }
    Ok(())
}
