//! The `otc` binary: parses the command line and runs [`otc_client::cli::run`].

use clap::Parser;

fn main() -> std::process::ExitCode {
    otc_client::cli::run(otc_client::cli::Args::parse())
}
