//! `kms-env show FILE`: an env file with every reference resolved, on stdout (debugging only).

use super::files::read_unique_file;
use super::{Then, options, resolve_plan, write_stdout};
use crate::cli::{Global, ShowArgs};
use crate::envfile::REGION_VAR;
use crate::error::Error;
use crate::plan::Plan;
use crate::secret::Secret;
use crate::value::Value;
use std::collections::HashMap;
use std::ffi::OsString;
use tracing::warn;

/// `kms-env show FILE`: the file with every reference resolved, on stdout.
pub fn show(global: &Global, args: ShowArgs) -> Result<(), Error> {
    let mut file = read_unique_file(&args.file)?;
    warn!("show prints secrets in plaintext; use it for debugging only");
    let pairs: Vec<(OsString, OsString)> = file
        .pairs()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let plan = Plan::new(pairs, &options(global, true, &[]));
    let fallback = file.get(REGION_VAR).map(str::to_owned);
    let vars = resolve_plan(global, plan, fallback.as_deref(), Then::Ends)?;
    let mut resolved: HashMap<String, Secret> = HashMap::new();
    for (name, value) in vars {
        if let Value::Secret(s) = value {
            resolved.insert(name.to_string_lossy().into_owned(), s);
        }
    }
    file.map_values::<Error>(|key, _| {
        Ok(resolved
            .get(key)
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned()))
    })?;
    let text = Secret::new(file.render().into_bytes());
    write_stdout(text.expose())
}
