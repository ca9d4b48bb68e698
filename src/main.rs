//! The `scratchnet` command: a thin shell over the library.

mod cli;

/// The matrix-product crate allocates its packing buffers on every call; the
/// system allocator returns those large blocks to the kernel each time, and
/// the page faults that follow cost more than small products. mimalloc keeps them.
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
    // No transparent huge pages: the kernel clears each fresh 2 MB page whole
    // and it counts whole in the footprint, used or not (docs/PERFORMANCE.md).
    #[cfg(target_os = "linux")]
    // SAFETY: a flag of this process's memory policy; no pointer is passed.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    cli::main()
}
