//! The `gatelog` command: parses arguments, runs one subcommand.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatelog: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
