//! `scratchnet info`: what a model or checkpoint file holds.

use anyhow::{Context, Result};
use scratchnet::model_io::{Model, VERSION_KEY};
use scratchnet::train::{EvalRecord, TrainConfig, CHECKPOINT_KEY, CONFIG_KEY};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(after_help = "Example:\n  scratchnet info model.safetensors")]
pub struct InfoArgs {
    /// A model saved by `train --save`, or a checkpoint
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

pub fn run(args: InfoArgs) -> Result<()> {
    let m = Model::load(&args.file)?;
    let meta = |k: &str| m.metadata.get(k).map(String::as_str);
    let kind = if meta(CHECKPOINT_KEY).is_some() {
        "checkpoint"
    } else {
        "model"
    };
    println!(
        "{}: scratchnet {kind}, written by scratchnet {}",
        args.file.display(),
        meta(VERSION_KEY).unwrap_or("?")
    );
    println!("network     {}", m.layout.arch);
    println!("arch        {}", m.layout.arch.spec());
    println!("parameters  {}", m.layout.len);
    let tensors: Vec<String> = m
        .layout
        .tensors()
        .map(|t| format!("{} {:?}", t.name, t.shape))
        .collect();
    println!("tensors     {}", tensors.join(", "));
    if let Some(steps) = meta("scratchnet.steps") {
        println!("steps       {steps}");
    }
    if let Some(r) = meta("scratchnet.metrics") {
        let r: EvalRecord = serde_json::from_str(r).context("unreadable final metrics")?;
        let val = r
            .val_acc
            .map(|v| format!("{v:.4}"))
            .unwrap_or_else(|| "-".into());
        println!("final       accuracy train {:.4}  val {val}  test {:.4}  (J {:.6}, epoch {:.2}, {:.1} s)", r.train_acc, r.test_acc, r.j, r.epoch, r.elapsed_s);
    }
    if let Some(d) = meta("scratchnet.data_sha256") {
        let files: Vec<(String, String)> =
            serde_json::from_str(d).context("unreadable data checksums")?;
        for (name, sum) in files {
            println!("data        {name}  sha256 {sum}");
        }
    }
    if let Some(c) = meta(CONFIG_KEY) {
        let cfg: TrainConfig =
            serde_json::from_str(c).context("unreadable training configuration")?;
        println!("--- training configuration ---\n{}---", cfg.to_toml());
    }
    Ok(())
}
