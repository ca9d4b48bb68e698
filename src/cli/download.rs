//! `scratchnet download`.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use scratchnet::data::download::{download, mnist_sources, Progress, MIRRORS};
use scratchnet::fsutil::check_output_dir;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  scratchnet download --dest data/mnist\n  scratchnet download --dest ~/mnist --mirror https://my.mirror/mnist/"
)]
pub struct DownloadArgs {
    /// Directory to put the four files in
    #[arg(long, default_value = "data/mnist", value_name = "DIR")]
    dest: PathBuf,
    /// Mirror base URL to try first (repeatable); the public mirrors follow
    #[arg(long, value_name = "URL")]
    mirror: Vec<String>,
}

struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Progress for Bar {
    fn start(&mut self, name: &str, url: &str, len: Option<u64>) {
        if self.quiet {
            // Results and errors only.
        } else if std::io::stderr().is_terminal() {
            let b = ProgressBar::new(len.unwrap_or(0));
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:30} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap(),
            );
            b.set_message(name.to_string());
            self.bar = Some(b);
        } else {
            eprintln!("fetching {url}");
        }
    }
    fn advance(&mut self, bytes: u64) {
        if let Some(b) = &self.bar {
            b.inc(bytes);
        }
    }
    fn failed(&mut self, url: &str, why: &str) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        eprintln!("  {url}: {why}; trying the next mirror");
    }
    fn done(&mut self, name: &str, skipped: bool) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        println!(
            "{name}: {}",
            if skipped {
                "already present, checksum ok"
            } else {
                "downloaded, checksum ok"
            }
        );
    }
}

pub fn run(args: DownloadArgs, v: super::Verbosity) -> Result<()> {
    check_output_dir("--dest", &args.dest)?;
    let mirrors: Vec<String> = args
        .mirror
        .iter()
        .map(|m| {
            if m.ends_with('/') {
                m.clone()
            } else {
                format!("{m}/")
            }
        })
        .chain(MIRRORS.iter().map(|m| m.to_string()))
        .collect();
    download(
        &args.dest,
        &mnist_sources(),
        &mirrors,
        &mut Bar {
            bar: None,
            quiet: v == super::Verbosity::Quiet,
        },
    )?;
    println!("MNIST is in {}", args.dest.display());
    Ok(())
}
