//! The `haven` binary: the controller (`haven serve`) and the staff commands.

/// jemalloc, not glibc's malloc: with 10,000 devices' connections allocating and freeing
/// small buffers on two threads, glibc's bins (`unlink_chunk`, `malloc_consolidate`) took
/// a sixth to a fifth of the controller's time, and a lockdown reached the 10,000th device
/// about a fifth sooner with jemalloc in the same sitting (issue 14, BENCHMARKS.md). mimalloc
/// was tried earlier and was worse on both latency and memory.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    haven_controller::cli::main()
}
