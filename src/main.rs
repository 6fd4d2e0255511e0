//! The `gatelog` command: parses arguments, runs one subcommand.

mod cli;

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
