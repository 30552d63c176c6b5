//! `kms-env`: parse the command line, run it, exit with the code it returns.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(kms_env::app::run(kms_env::cli::parse()))
}
