//! Command-line interface: one file per subcommand.

mod bench;
mod completions;
mod download;
mod eval;
mod export;
mod info;
mod plot;
mod predict;
mod serve;
mod sweep;
mod train;
mod watch;

use clap::{Parser, Subcommand};
use scratchnet::backend::{Device, Target};
use scratchnet::tensor::kernels::Kernels;
use scratchnet::tensor::pool;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "scratchnet",
    version,
    about = "Train, evaluate and study the MNIST notebook's neural network, written from scratch."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Print only results and errors
    #[arg(short, long, global = true)]
    quiet: bool,
}

/// How much the commands print. Nothing is ever coloured, so output reads
/// the same in a terminal, a pipe or a file (and NO_COLOR holds trivially).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

#[derive(Subcommand)]
enum Command {
    /// Train a network (default preset `fast`; `--preset seed` is the notebook's run).
    Train(Box<train::TrainArgs>),
    /// Accuracy, per-class accuracy and confusion matrix of a saved model.
    Eval(eval::EvalArgs),
    /// Training curves from a metrics file; confusion matrix and misclassified digits from a model.
    Plot(plot::PlotArgs),
    /// Random search over learning rate, L2 factors and keep probabilities (resumable).
    Sweep(sweep::SweepArgs),
    /// Classify images of digits (PNG, JPEG, PGM, BMP) with a saved model.
    Predict(predict::PredictArgs),
    /// What a model or checkpoint file holds: architecture, size, configuration, results.
    Info(info::InfoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Time the workloads of the speed targets on real MNIST.
    Bench(bench::BenchArgs),
    /// Fetch the four MNIST files from public mirrors, checking their checksums.
    Download(download::DownloadArgs),
    /// Write a trained model as ONNX, for other runtimes (ONNX Runtime, tract, ...).
    Export(export::ExportArgs),
    /// Draw digits in a browser and watch the network read them; a JSON prediction API.
    Serve(serve::ServeArgs),
}

/// A library error as the command line's user reads it: a setting's error
/// spelled as flags (`--lr -1: ...`); one in a configuration file as the
/// file has it, after `--config`.
pub fn as_flags(e: anyhow::Error) -> anyhow::Error {
    use scratchnet::train::{SettingError, Spelling};
    match e.downcast_ref::<SettingError>() {
        Some(s) if s.place.is_some() => anyhow::anyhow!("--config {}", s.render(Spelling::Flag)),
        Some(s) => anyhow::anyhow!(s.render(Spelling::Flag)),
        None => e,
    }
}

/// [`Common::data_path`] for commands with their own `--data`.
pub fn data_path(flag: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    Ok(scratchnet::data::locate::locate_or_fetch(flag, &mut download::Bar::aside())?.path)
}

/// `--device`, for the commands that compute with a model.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArg {
    /// Where to compute: `cuda` needs an NVIDIA GPU and a build with `--features cuda`
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,
}

impl DeviceArg {
    /// The device, with the pool's threads for the CPU.
    pub fn target(&self) -> Target {
        Target {
            device: self.device,
            threads: rayon::current_num_threads(),
        }
    }
}

/// The model a command reads: named first, or by `--model`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArg {
    /// A model saved by `train --save`, or a checkpoint
    #[arg(value_name = "MODEL")]
    file: Option<PathBuf>,
    /// The model, by option (the same as naming it first)
    #[arg(long = "model", value_name = "MODEL", conflicts_with = "file")]
    named: Option<PathBuf>,
}

impl ModelArg {
    /// The model's path, if one was given.
    pub fn path(&self) -> Option<&std::path::Path> {
        self.named.as_deref().or(self.file.as_deref())
    }

    /// The model's path, which command `cmd` needs.
    pub fn required(&self, cmd: &str) -> anyhow::Result<&std::path::Path> {
        self.path().ok_or_else(|| {
            anyhow::anyhow!("give a model: `scratchnet {cmd} model.safetensors` (or --model FILE)")
        })
    }
}

/// Options shared by commands that read data and compute.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// MNIST-format data: a directory of IDX files (raw or .gz) or the notebook's mnist.pkl.gz
    /// [default: $SCRATCHNET_DATA, ./data/mnist, the clone's bundled copy, else the user cache,
    /// downloaded there on first use; `scratchnet info --data` says which]
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Worker threads [default: all cores]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub threads: Option<u16>,
}

impl Common {
    /// The data to read, fetched into the user cache on first use where
    /// nothing else holds it (see [`scratchnet::data::locate`]).
    pub fn data_path(&self) -> anyhow::Result<PathBuf> {
        data_path(self.data.as_deref())
    }
}

impl Command {
    /// `-v`, for the commands that have more to say.
    fn verbose(&self) -> bool {
        match self {
            Command::Train(a) => a.verbose,
            Command::Predict(a) => a.verbose,
            _ => false,
        }
    }

    /// `--threads`, for the commands that compute.
    fn threads(&self) -> Option<u16> {
        match self {
            Command::Train(a) => a.common.threads,
            Command::Eval(a) => a.common.threads,
            Command::Plot(a) => a.common.threads,
            Command::Sweep(a) => a.common.threads,
            Command::Bench(a) => a.common.threads,
            Command::Predict(a) => a.threads,
            Command::Serve(a) => a.threads,
            Command::Info(_)
            | Command::Completions(_)
            | Command::Download(_)
            | Command::Export(_) => None,
        }
    }
}

/// Starts the pool of `threads` (default: all cores), every thread with
/// subnormals flushed to zero.
fn start_pool(threads: Option<u16>) -> anyhow::Result<()> {
    let n = threads.map(usize::from).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    pool(n)
        .build_global()
        .map_err(|e| anyhow::anyhow!("cannot start {n} threads: {e}"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let v = match (cli.quiet, cli.command.verbose()) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    // A kernel family forced that this machine lacks stops every command.
    if let Err(e) = Kernels::choose()
        .map_err(anyhow::Error::msg)
        .and(start_pool(cli.command.threads()))
    {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    // The command runs on a pool thread, serial parts included: a parallel
    // section then starts from inside the pool, instead of waking it from
    // outside and sleeping until it ends (a third thread on two cores; see
    // docs/PERFORMANCE.md, "Commands run on a pool thread").
    let result = rayon::scope(|_| match cli.command {
        Command::Train(a) => train::run(*a, v),
        Command::Eval(a) => eval::run(a, v),
        Command::Download(a) => download::run(a, v),
        Command::Bench(a) => bench::run(a),
        Command::Info(a) => info::run(a, v),
        Command::Predict(a) => predict::run(a, v),
        Command::Sweep(a) => sweep::run(a, v),
        Command::Plot(a) => plot::run(a, v),
        Command::Completions(a) => completions::run(a),
        Command::Export(a) => export::run(a, v),
        Command::Serve(a) => serve::run(a, v),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every option and argument of every command says what it is for.
    #[test]
    fn every_flag_has_help() {
        let cli = Cli::command();
        let mut missing = Vec::new();
        for cmd in std::iter::once(&cli).chain(cli.get_subcommands()) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {id}", cmd.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help: {missing:?}");
    }
}
