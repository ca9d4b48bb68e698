//! The `scratchnet` command: a thin shell over the library.

mod cli;

/// The matrix-product crate allocates its packing buffers on every call; the
/// system allocator returns those large blocks to the kernel each time, and
/// the page faults that follow cost more than small products. mimalloc keeps
/// them. Without huge pages (`no_thp`): the kernel clears each fresh 2 MB page
/// whole, and a partly used one counts whole in the footprint.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Piped into `head`, a command-line tool should stop quietly, not panic
    // on a closed stdout: restore the default action of SIGPIPE.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    cli::main()
}
