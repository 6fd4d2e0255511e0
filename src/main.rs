//! The `gatelog` command: parses arguments, runs one subcommand.

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatelog: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
