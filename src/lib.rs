//! kms-env: resolve AWS KMS ciphertexts and SSM Parameter Store references in the environment,
//! then `execve` the application. The binary (`src/main.rs`) is a thin shell over [`app::run`];
//! the modules are public so that the fuzz targets in `fuzz/` can reach the parsers. The
//! contract is DESIGN.md; README.md is the user's guide.

pub mod app;
pub mod cli;
pub mod dotenv;
pub mod envfile;
pub mod error;
pub mod exec;
pub mod export;
pub mod plan;
pub mod reference;
pub mod report;
pub mod resolve;
pub mod sealed;
pub mod secret;
pub mod supervise;
