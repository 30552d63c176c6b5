//! Replacing this process with the application: argv and the final environment to `execve`.
//!
//! The command is looked up in `PATH` exactly as `execvp` does (glibc's `execvpe`, through
//! `nix`), so the application keeps our PID, our stdin/stdout/stderr and receives its signals
//! directly. Only a failed exec returns; its errno becomes 127 (not found) or 126 (cannot run).

use crate::error::{EX_CANNOT_EXEC, EX_NOT_FOUND, Error};
use crate::plan::Value;
use nix::errno::Errno;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use zeroize::Zeroize;

/// Builds `NAME=VALUE` strings for `execve`. Neither part can hold NUL: names and plain values
/// come from the OS environment and secrets with NUL were refused while planning.
fn environment(vars: Vec<(OsString, Value)>) -> Vec<CString> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let value_bytes = match &value {
                Value::Plain(v) => v.as_bytes(),
                Value::Secret(s) => s.expose(),
            };
            let mut entry = Vec::with_capacity(name.len() + 1 + value_bytes.len() + 1);
            entry.extend_from_slice(name.as_bytes());
            entry.push(b'=');
            entry.extend_from_slice(value_bytes);
            CString::new(entry).ok()
        })
        .collect()
}

/// Replaces the process with `command` and the environment `vars`. Returns only on failure.
pub fn exec(command: &[OsString], vars: Vec<(OsString, Value)>) -> Error {
    let shown = command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv: Result<Vec<CString>, _> = command
        .iter()
        .map(|a| CString::new(a.clone().into_vec()))
        .collect();
    let Ok(argv) = argv else {
        return Error::Usage("an argument contains a NUL byte".into());
    };
    let Some(program) = argv.first() else {
        return Error::Usage("no command given".into());
    };
    let env = environment(vars);
    let errno = match nix::unistd::execvpe(program, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    // Scrub the plaintexts before reporting.
    for entry in env {
        entry.into_bytes_with_nul().zeroize();
    }
    let (reason, code) = match errno {
        Errno::ENOENT => ("command not found".to_owned(), EX_NOT_FOUND),
        Errno::E2BIG => (
            "the argument list and environment are too large (E2BIG)".to_owned(),
            EX_CANNOT_EXEC,
        ),
        other => (other.desc().to_owned(), EX_CANNOT_EXEC),
    };
    Error::Exec {
        command: shown,
        reason,
        code,
    }
}
