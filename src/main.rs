//! The `opsflow` binary; everything lives in the library but its allocator.

mod allocator;

/// A step allocates many small values (field maps, trace records, rule scopes); mimalloc
/// serves them faster than the system allocator, and per thread. Its version 2 (the `v2`
/// feature) rather than 3: with 3, the in-memory bench spent about 7 % of its time in the
/// kernel clearing freshly touched pages, and with 2 under 1 %. `allocator` says how it is
/// called.
#[global_allocator]
static ALLOCATOR: allocator::MiMalloc = allocator::MiMalloc;

fn main() -> std::process::ExitCode {
    opsflow::cli::main()
}
