//! The `opsflow` binary; everything lives in the library.

fn main() -> std::process::ExitCode {
    opsflow::cli::main()
}
