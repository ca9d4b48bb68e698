//! `scratchnet download`.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use scratchnet::data::download::{download, mnist_sources, Progress};
use scratchnet::data::locate::mirrors;
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
    /// Mirror base URL to try first (repeatable); then those of $SCRATCHNET_MIRROR if set, else
    /// the public mirrors
    #[arg(long, value_name = "URL")]
    mirror: Vec<String>,
}

/// Shows a download: a bar in a terminal, a line per file otherwise.
pub(super) struct Bar {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// Where the data is fetched on the way to another command's work: its
    /// lines go to stderr, leaving stdout to that command's results.
    aside: bool,
    /// The mirrors that failed for the file under way.
    failures: Vec<String>,
}

impl Bar {
    /// For data fetched on first use by a command that needs it.
    pub(super) fn aside() -> Bar {
        Bar {
            bar: None,
            quiet: false,
            aside: true,
            failures: Vec::new(),
        }
    }
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
        self.failures.push(format!("{url}: {why}"));
    }
    fn done(&mut self, name: &str, skipped: bool) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
        let what = match (skipped, self.failures.len()) {
            (true, _) => "already present, checksum ok".to_string(),
            (false, 0) => "downloaded, checksum ok".to_string(),
            (false, n) => format!(
                "downloaded, checksum ok (after {n} mirror{} failed: {})",
                if n == 1 { "" } else { "s" },
                self.failures.join("; ")
            ),
        };
        self.failures.clear();
        match (self.quiet, self.aside) {
            (true, _) => {}
            (false, true) => eprintln!("{name}: {what}"),
            (false, false) => println!("{name}: {what}"),
        }
    }
}

pub fn run(args: DownloadArgs, v: super::Verbosity) -> Result<()> {
    check_output_dir("--dest", &args.dest)?;
    let mirrors = mirrors(&args.mirror);
    download(
        &args.dest,
        &mnist_sources(),
        &mirrors,
        &mut Bar {
            bar: None,
            quiet: v == super::Verbosity::Quiet,
            aside: false,
            failures: Vec::new(),
        },
    )?;
    if v > super::Verbosity::Quiet {
        println!("MNIST is in {}", args.dest.display());
    }
    Ok(())
}
