//! The `opsflow` binary; everything lives in the library.

/// A step allocates many small values (field maps, trace records, rule scopes); mimalloc
/// serves them faster than the system allocator, and per thread.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    opsflow::cli::main()
}
