//! The `osa-server` binary: see the library's documentation for the program.

use std::process::ExitCode;

/// glibc's malloc keeps what each worker thread freed in that thread's arena, so a
/// long validation run's peak grew with the run; mimalloc returns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(osa_server::main_with_args(std::env::args_os()))
}
