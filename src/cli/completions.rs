//! `scratchnet completions`: shell completion scripts.

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Example:\n  scratchnet completions bash > ~/.local/share/bash-completion/completions/scratchnet"
)]
pub struct CompletionsArgs {
    /// The shell to write completions for
    shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<()> {
    clap_complete::generate(
        args.shell,
        &mut super::Cli::command(),
        "scratchnet",
        &mut std::io::stdout(),
    );
    Ok(())
}
