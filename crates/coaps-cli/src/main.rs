//! The `coaps` binary; see the `coaps_cli` library for the commands.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(coaps_cli::main_with_args(std::env::args_os()))
}
