//! `scratchnet bench`: the workloads of the speed targets, timed on real
//! MNIST, each with the floating-point work it does and its share of the
//! CPU's multiply-add peak, measured in the same run on the same threads;
//! beside them the matrix library's float32 throughput on a large product,
//! and (where the CPU has AMX) the tiles' peak, a loop of `tdpbf16ps` on
//! every thread.

use super::{Common, DeviceArg};
use anyhow::Result;
use scratchnet::backend::Device;
use scratchnet::data::{Dataset, Split, CLASSES};
use scratchnet::nn::{Layout, Precision};
use scratchnet::tensor::bf16::amx_peak;
use scratchnet::tensor::peak::{lanes, multiply_add_peak};
use scratchnet::tensor::{matmul, Mat, MatMut};
use scratchnet::train::{TrainConfig, Trainer};
use serde::Serialize;
use serde_json::json;
use std::time::Instant;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  scratchnet bench --runs 7\n  scratchnet bench --threads 1 --json > bench.json"
)]
pub struct BenchArgs {
    /// Timed repetitions of each workload (the median is reported)
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    runs: u32,
    /// Print one JSON object instead of a table
    #[arg(long)]
    json: bool,
    /// The first layer's arithmetic in the training workloads (see `train --precision`)
    #[arg(long, value_enum, default_value_t = Precision::F32)]
    precision: Precision,
    #[command(flatten)]
    pub(super) common: Common,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Serialize)]
struct Row {
    workload: String,
    unit: &'static str,
    median: f64,
    min: f64,
    max: f64,
    /// Useful floating-point work of one repetition, in GFLOP: the first
    /// layer over nonzero pixels, not what a dense product of the same
    /// shapes would do ([`flop_per_sample`]).
    gflop: f64,
    /// That work per second at the median, in GFLOP/s.
    gflops: f64,
    /// `gflops` as a share of the multiply-add peak measured in this run
    /// (CPU runs only).
    of_peak: Option<f64>,
}

fn row(workload: &str, unit: &'static str, mut times: Vec<f64>, flop: f64, scale: f64) -> Row {
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Row {
        workload: workload.into(),
        unit,
        median: median * scale,
        min: times[0] * scale,
        max: times[times.len() - 1] * scale,
        gflop: flop / 1e9,
        gflops: flop / median / 1e9,
        of_peak: None,
    }
}

fn time(runs: u32, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?; // warm-up: caches, page faults, thread start
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f()?;
            Ok(t.elapsed().as_secs_f64())
        })
        .collect()
}

/// Useful FLOP of the products per sample, forward and backward, two per
/// multiply-add: the first layer over `inputs` of each image (on the CPU
/// the mean count of nonzero pixels, which its sparse kernels skip; rows
/// taken in pairs, or as bfloat16 tiles, multiply a few zeros too, not
/// counted), forward and in its weight gradient; every other layer dense,
/// forward, in its weight gradient and in the gradient to its input.
fn flop_per_sample(layout: &Layout, inputs: f64) -> (f64, f64) {
    let (first, rest) = layout.layers.split_first().expect("a layer");
    let first = inputs * first.outputs as f64;
    let rest: f64 = rest.iter().map(|l| (l.inputs * l.outputs) as f64).sum();
    (2.0 * (first + rest), 2.0 * (first + 2.0 * rest))
}

/// The first layer's inputs per image that the engine multiplies: the
/// nonzero pixels on the CPU, every pixel on a GPU.
fn inputs_used(split: &Split, device: Device) -> f64 {
    match device {
        Device::Cpu => {
            let nonzero = split.images.view().nonzero();
            nonzero as f64 / split.len() as f64
        }
        Device::Cuda => split.features as f64,
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let target = args.device.target();
    let (device, threads) = (target.device, target.threads);
    device.check()?;
    let path = args.common.data_path()?;
    let data50 = Dataset::load(&path, Some(10_000))?;
    let mut rows = Vec::new();

    // Full batch: the seed preset's iteration on 50,000 samples (dropout on).
    let precision = serde_json::to_value(args.precision)?;
    let precision = precision.as_str().unwrap_or("f32");
    let seed = TrainConfig::resolve(
        None,
        json!({"preset": "seed", "iters": 1_000_000, "precision": precision}),
    )?;
    let mut t = Trainer::new(seed, &data50, target, None)?;
    let (f, b) = flop_per_sample(&t.layout, inputs_used(&data50.train, device));
    let times = time(args.runs, || {
        t.train_step()?;
        t.wait()
    })?;
    rows.push(row(
        "full-batch iteration, 50k samples (--preset seed)",
        "ms",
        times,
        (f + b) * 50_000.0,
        1e3,
    ));

    // Minibatch epoch over all 60,000 training images, batch 128, Adam, dropout on.
    let data60 = Dataset::load(&path, Some(0))?;
    let cfg = TrainConfig::resolve(
        None,
        json!({"epochs": 1000, "batch_size": 128, "optimizer": "adam", "keep": [0.9], "dropout": "sample", "precision": precision}),
    )?;
    let mut t = Trainer::new(cfg, &data60, target, None)?;
    let (f, b) = flop_per_sample(&t.layout, inputs_used(&data60.train, device));
    let spe = t.steps_per_epoch();
    let times = time(args.runs, || {
        (0..spe).try_for_each(|_| t.train_step().map(|_| ()))?;
        t.wait()
    })?;
    rows.push(row(
        "minibatch epoch, 60k samples, batch 128, Adam",
        "s",
        times,
        (f + b) * 60_000.0,
        1.0,
    ));

    // Inference on the test set (held compressed, or on the device, as the
    // trainer holds it: preparing the data is not timed).
    let test = &data60.test;
    let (f, _) = flop_per_sample(&t.layout, inputs_used(test, device));
    let times = time(args.runs, || t.test_accuracy().map(|_| ()))?;
    let mut inf = row(
        "inference, 10k test images",
        "M images/s",
        times,
        f * test.len() as f64,
        1.0,
    );
    let n = test.len() as f64 / 1e6;
    (inf.median, inf.min, inf.max) = (n / inf.median, n / inf.max, n / inf.min);
    rows.push(inf);

    // The ceiling: a large square product through the same matrix library
    // (CPU runs only).
    let ceiling_gflops = if device == Device::Cpu {
        let row = ceiling(args.runs, threads)?;
        let g = row.gflops;
        rows.push(row);
        g
    } else {
        f64::NAN
    };
    let tile_gflops = match device {
        Device::Cpu => tile_peak(args.runs),
        Device::Cuda => None,
    };
    let peak_gflops = match device {
        Device::Cpu => Some(multiply_add(args.runs)),
        Device::Cuda => None,
    };
    for r in &mut rows {
        r.of_peak = peak_gflops.map(|p| r.gflops / p);
    }
    let cpu = super::info::cpu_model();
    let kernels = match device {
        Device::Cpu => super::info::kernels_line(),
        Device::Cuda => "cuda".into(),
    };

    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"device": format!("{device:?}").to_lowercase(), "cpu": cpu, "threads": threads, "runs": args.runs, "classes": CLASSES, "kernels": kernels, "precision": precision, "peak_gflops": peak_gflops, "peak_lanes": peak_gflops.map(|_| lanes()), "ceiling_gflops": ceiling_gflops, "tile_peak_gflops": tile_gflops, "rows": rows})
            )?
        );
        return Ok(());
    }
    println!(
        "scratchnet bench: {}, precision {precision}, median of {} runs (after one warm-up)",
        match device {
            Device::Cpu => format!("{threads} threads"),
            Device::Cuda => "CUDA device 0".into(),
        },
        args.runs
    );
    println!("cpu: {cpu}");
    println!("kernels: {kernels}");
    if let Some(p) = peak_gflops {
        println!(
            "multiply-add peak: {p:.0} GFLOP/s ({} float32 lanes, every thread; the yardstick for bf16 too)",
            lanes()
        );
    }
    match tile_gflops {
        Some(g) => {
            println!("tile peak: {g:.0} GFLOP/s (tdpbf16ps on tiles in registers, every thread)\n")
        }
        None => println!("tile peak: - (no AMX here)\n"),
    }
    println!("| workload | median | min | max | work (GFLOP) | GFLOP/s | of peak | of GEMM ceiling | of tile peak |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let share = |g: f64, of: Option<f64>| match of {
        Some(c) if c.is_finite() => format!("{:.0}%", 100.0 * g / c),
        _ => "-".to_string(),
    };
    for r in &rows {
        println!(
            "| {} | {:.3} {} | {:.3} | {:.3} | {:.3} | {:.0} | {} | {} | {} |",
            r.workload,
            r.median,
            r.unit,
            r.min,
            r.max,
            r.gflop,
            r.gflops,
            share(r.gflops, peak_gflops),
            share(r.gflops, Some(ceiling_gflops)),
            share(r.gflops, tile_gflops),
        );
    }
    Ok(())
}

/// The multiply-add peak on every thread of the pool at once, the median
/// of `runs` rounds of 0.1 s.
fn multiply_add(runs: u32) -> f64 {
    multiply_add_peak(0.0);
    median_of_rounds(runs, || {
        rayon::broadcast(|_| multiply_add_peak(0.1)).iter().sum()
    })
}

/// The median of `runs` calls of `round`.
fn median_of_rounds(runs: u32, mut round: impl FnMut() -> f64) -> f64 {
    let mut rounds: Vec<f64> = (0..runs).map(|_| round()).collect();
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

/// The tiles' peak on every thread of the pool at once, the median of
/// `runs` rounds of 0.1 s; `None` without AMX.
fn tile_peak(runs: u32) -> Option<f64> {
    amx_peak(0.0)?;
    Some(median_of_rounds(runs, || {
        rayon::broadcast(|_| amx_peak(0.1).unwrap_or(0.0))
            .iter()
            .sum()
    }))
}

/// The GEMM library's throughput on a 2048³ product.
fn ceiling(runs: u32, threads: usize) -> Result<Row> {
    let s = 2048;
    let (a, bm, mut c) = (
        vec![1.0f32; s * s],
        vec![0.5f32; s * s],
        vec![0.0f32; s * s],
    );
    let times = time(runs, || {
        matmul(
            MatMut::new(&mut c, s, s),
            Mat::new(&a, s, s),
            Mat::new(&bm, s, s),
            false,
            threads,
        );
        Ok(())
    })?;
    Ok(row(
        "GEMM ceiling: 2048 x 2048 x 2048 f32",
        "ms",
        times,
        2.0 * (s * s * s) as f64,
        1e3,
    ))
}
