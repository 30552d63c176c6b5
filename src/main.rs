//! `kms-env`: resolve AWS KMS ciphertexts and SSM Parameter Store references in the environment,
//! then `execve` the application. See README.md and DESIGN.md for the contract.

mod app;
mod cli;
mod dotenv;
mod envfile;
mod error;
mod exec;
mod export;
mod plan;
mod reference;
mod report;
mod resolve;
mod sealed;
mod secret;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(app::run(cli::Cli::parse()))
}
