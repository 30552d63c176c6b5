//! `kms-env decrypt`: the plaintext of one value of any reference form, on stdout.

use super::{Then, options, read_value, resolve_plan, write_stdout};
use crate::cli::{DecryptArgs, Global};
use crate::error::Error;
use crate::plan::Plan;
use crate::reference::has_reference_prefix;
use crate::source::kms::{DATA_KEY_VAR, KMS_PREFIX};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// `kms-env decrypt [VALUE | -]`: a bare base64 value is read as `kms:`.
pub fn decrypt(global: &Global, args: DecryptArgs) -> Result<(), Error> {
    let input = read_value(args.value)?;
    let input = input.trim_ascii();
    let value = if has_reference_prefix(input) {
        input.to_vec()
    } else {
        [KMS_PREFIX.as_bytes(), input].concat()
    };
    // A secure: value of the original kms-env needs the environment's data key.
    let mut env: Vec<(OsString, OsString)> = std::env::var_os(DATA_KEY_VAR)
        .map(|k| (OsString::from(DATA_KEY_VAR), k))
        .into_iter()
        .collect();
    let name = args.name.unwrap_or_else(|| "VALUE".to_owned());
    env.push((OsString::from(name), OsString::from_vec(value)));
    let plan = Plan::new(env, &options(global, false, &[]));
    // One value: report its reason, not a list of variables.
    let vars = resolve_plan(global, plan, None, Then::Ends).map_err(|e| match e {
        Error::Resolve(mut failures) if !failures.is_empty() => {
            Error::Value(failures.swap_remove(0).reason)
        }
        other => other,
    })?;
    match vars.last() {
        Some((_, value)) => write_stdout(value.bytes()),
        None => Err(Error::Usage("nothing to decrypt".into())),
    }
}
