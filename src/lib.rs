//! kms-env: resolve AWS KMS ciphertexts, SSM Parameter Store and Secrets Manager references in the
//! environment, then `execve` the application. The binary (`src/main.rs`) is a thin shell over
//! [`app::run`]; the modules are public so that the fuzz targets in `fuzz/` can reach the
//! parsers. ARCHITECTURE.md maps the modules; README.md is the user's guide.

pub mod app;
pub mod aws;
pub mod cli;
pub mod deadline;
pub mod dotenv;
pub mod envfile;
pub mod error;
pub mod exec;
pub mod export;
pub mod load;
pub mod plan;
pub mod reference;
pub mod report;
pub mod sealed;
pub mod secret;
pub mod source;
pub mod supervise;
pub mod template;
pub mod value;
