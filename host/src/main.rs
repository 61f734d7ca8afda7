//! The `sabot` binary: see [`sabot_host::cli`].

/// Task threads allocate and free small buffers (keys, batches, state values) at high rates:
/// mimalloc serves that better than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sabot_host::cli::main()
}
