//! Replacing this process with the application: argv and the final environment to `execve`.
//!
//! The command is looked up in the application's `PATH` as glibc's `execvpe` does (see
//! [`Program`]), and the application replaces us: it keeps our PID, our stdin/stdout/stderr and
//! receives its signals directly. Only a failed exec returns; its errno becomes 127 (not found) or 126 (cannot run).
//! Before `execve`, the sizes are checked against the kernel's limits (128 KiB per string,
//! `ARG_MAX` in all), so an environment grown by resolution gets a clear error, not `E2BIG`.

use crate::error::{EX_CANNOT_EXEC, EX_NOT_FOUND, Error, printable};
use crate::value::{MAX_ENV_STRING, Value};
use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, signal};
use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use zeroize::Zeroize;

/// Zeroizes the plaintexts of an environment that was not used.
fn scrub(env: Vec<CString>) {
    for entry in env {
        entry.into_bytes_with_nul().zeroize();
    }
}

/// Builds `NAME=VALUE` strings for `execve`. Neither part can hold NUL: names and plain values
/// come from the OS environment and secrets with NUL were refused while planning.
fn environment(vars: Vec<(OsString, Value)>) -> Vec<CString> {
    vars.into_iter()
        .filter_map(|(name, value)| {
            let value_bytes = match &value {
                Value::Plain(v) => v.as_bytes(),
                Value::Secret(s) => s.expose(),
                // Delivered to a file before exec; its plaintext never enters an environment.
                Value::File(_) => return None,
            };
            let mut entry = Vec::with_capacity(name.len() + 1 + value_bytes.len() + 1);
            entry.extend_from_slice(name.as_bytes());
            entry.push(b'=');
            entry.extend_from_slice(value_bytes);
            CString::new(entry).ok()
        })
        .collect()
}

/// Checks argv and the environment against the kernel's limits: each string (with its NUL)
/// at most [`MAX_ENV_STRING`], all strings and their pointers at most `arg_max`.
fn check_sizes(argv: &[CString], env: &[CString], arg_max: usize) -> Result<(), String> {
    let pointer = std::mem::size_of::<usize>();
    for e in env {
        let len = e.as_bytes_with_nul().len();
        if len > MAX_ENV_STRING {
            let bytes = e.as_bytes();
            let name = bytes.split(|&b| b == b'=').next().unwrap_or_default();
            return Err(format!(
                "{} is {len} bytes as NAME=VALUE; Linux allows {MAX_ENV_STRING} per environment string",
                printable(&String::from_utf8_lossy(name))
            ));
        }
    }
    if let Some(a) = argv
        .iter()
        .find(|a| a.as_bytes_with_nul().len() > MAX_ENV_STRING)
    {
        return Err(format!(
            "an argument is {} bytes; Linux allows {MAX_ENV_STRING} per argument",
            a.as_bytes_with_nul().len()
        ));
    }
    let total: usize = argv
        .iter()
        .chain(env)
        .map(|s| s.as_bytes_with_nul().len() + pointer)
        .sum::<usize>()
        + 2 * pointer;
    if total > arg_max {
        return Err(format!(
            "the arguments and the resolved environment total {total} bytes, over the kernel's \
             limit of {arg_max} (ARG_MAX, a quarter of the stack limit `ulimit -s`)"
        ));
    }
    Ok(())
}

/// Gives SIGPIPE back the default disposition the wrapper inherited: Rust's runtime ignores it
/// in its own process and `execve` would hand that on, so `yes | head -1` in the application
/// would print "Broken pipe" (std's `Command` resets it in its children for the same reason).
/// The signal mask is untouched here; `--init` restores it in its child. Async-signal-safe.
pub fn default_sigpipe() {
    set_sigpipe(SigHandler::SigDfl);
}

fn set_sigpipe(handler: SigHandler) {
    // SAFETY: SIG_DFL and SIG_IGN install no handler code; signal(2) is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        let _ = signal(Signal::SIGPIPE, handler);
    }
}

/// Where a command is run from: each candidate path in `PATH` order, with the argv that runs it
/// through `/bin/sh` should it be a script without a `#!` line, all made before any `execve`
/// (the `--init` child may not allocate). `PATH` is the **application's**: a `PATH` that was
/// itself a reference is looked up resolved, not as the literal `ssm:/…` the wrapper started
/// with. The search follows glibc's `execvpe`: a name with `/` is run as is; an empty `PATH`
/// entry is the working directory; without `PATH`, `/bin:/usr/bin`.
pub struct Program {
    candidates: Vec<(CString, Vec<CString>)>,
}

impl Program {
    /// The candidates for `argv[0]` in the environment `env`.
    pub fn find(argv: &[CString], env: &[CString]) -> Program {
        let Some(file) = argv.first().map(|f| f.as_bytes()) else {
            return Program {
                candidates: Vec::new(),
            };
        };
        let with_sh = |path: CString| {
            let mut sh = vec![c"/bin/sh".to_owned(), path.clone()];
            sh.extend(argv.iter().skip(1).cloned());
            (path, sh)
        };
        if file.is_empty() {
            return Program {
                candidates: Vec::new(),
            };
        }
        if file.contains(&b'/') {
            return Program {
                candidates: CString::new(file).ok().map(with_sh).into_iter().collect(),
            };
        }
        let path: &[u8] = env
            .iter()
            .find_map(|e| e.as_bytes().strip_prefix(b"PATH="))
            .unwrap_or(b"/bin:/usr/bin");
        let candidates = path
            .split(|&b| b == b':')
            .filter_map(|dir| {
                let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
                CString::new([dir, b"/", file].concat()).ok()
            })
            .map(with_sh)
            .collect();
        Program { candidates }
    }

    /// Runs the first candidate that can be run, with `argv` and `env`; only returns on
    /// failure, with the errno `execvpe` would give: ENOENT when nothing was found, EACCES when
    /// only unrunnable files were. Async-signal-safe: no allocation.
    pub fn exec(&self, argv: &[CString], env: &[CString]) -> Errno {
        let mut denied = false;
        for (path, sh) in &self.candidates {
            let errno = match nix::unistd::execve(path, argv, env) {
                Err(Errno::ENOEXEC) => match nix::unistd::execve(c"/bin/sh", sh, env) {
                    Err(e) => e,
                    Ok(never) => match never {},
                },
                Err(e) => e,
                Ok(never) => match never {},
            };
            match errno {
                Errno::EACCES => denied = true,
                Errno::ENOENT
                | Errno::ENOTDIR
                | Errno::ESTALE
                | Errno::ENODEV
                | Errno::ETIMEDOUT => {}
                other => return other,
            }
        }
        if denied { Errno::EACCES } else { Errno::ENOENT }
    }
}

/// The kernel's limit for argv and environment together.
fn arg_max() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::ARG_MAX)
        .ok()
        .flatten()
        .and_then(|v| usize::try_from(v).ok())
        .unwrap_or(MAX_ENV_STRING)
}

/// Everything `execve` needs, checked against the kernel's limits; the environment's plaintexts
/// are zeroized when it is dropped.
pub struct Launch {
    /// The command as given, for messages.
    pub shown: String,
    /// The arguments.
    pub argv: Vec<CString>,
    /// The environment, `NAME=VALUE`.
    pub env: Vec<CString>,
    /// Where the command is run from.
    pub program: Program,
}

impl Drop for Launch {
    fn drop(&mut self) {
        scrub(std::mem::take(&mut self.env));
    }
}

/// Prepares `command` with the environment `vars`.
pub fn prepare(command: &[OsString], vars: Vec<(OsString, Value)>) -> Result<Launch, Error> {
    let shown = command
        .first()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default();
    let argv: Result<Vec<CString>, _> = command
        .iter()
        .map(|a| CString::new(a.clone().into_vec()))
        .collect();
    let Ok(argv) = argv else {
        return Err(Error::Usage("an argument contains a NUL byte".into()));
    };
    if argv.is_empty() {
        return Err(Error::Usage("no command given".into()));
    }
    let env = environment(vars);
    let program = Program::find(&argv, &env);
    if let Err(reason) = check_sizes(&argv, &env, arg_max()) {
        scrub(env);
        return Err(Error::Exec {
            command: shown,
            reason,
            code: EX_CANNOT_EXEC,
        });
    }
    Ok(Launch {
        shown,
        argv,
        env,
        program,
    })
}

/// Runs `command` with the environment `vars`: replaces this process (`execve`), or with
/// `init` supervises it as a child (see `supervise`). Returns the exit code to leave with,
/// which without `init` only ever comes back as an error.
pub fn exec(command: &[OsString], vars: Vec<(OsString, Value)>, init: bool) -> Result<u8, Error> {
    let launch = prepare(command, vars)?;
    if init {
        return crate::supervise::run(launch, None, None);
    }
    default_sigpipe();
    let errno = launch.program.exec(&launch.argv, &launch.env);
    // Still the wrapper: a closed stderr must not kill it before it reports.
    set_sigpipe(SigHandler::SigIgn);
    let shown = launch.shown.clone();
    drop(launch);
    let (reason, code) = match errno {
        Errno::ENOENT => ("command not found".to_owned(), EX_NOT_FOUND),
        Errno::E2BIG => (
            "the argument list and environment are too large (E2BIG)".to_owned(),
            EX_CANNOT_EXEC,
        ),
        other => (other.desc().to_owned(), EX_CANNOT_EXEC),
    };
    Err(Error::Exec {
        command: shown,
        reason,
        code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn sizes_within_limits_pass() {
        assert!(check_sizes(&[c("app")], &[c("A=1")], 2 * 1024 * 1024).is_ok());
    }

    #[test]
    fn a_string_over_128_kib_is_named() {
        let big = c(&format!("DB_CERT={}", "x".repeat(MAX_ENV_STRING)));
        let e = check_sizes(&[c("app")], &[c("A=1"), big], usize::MAX).unwrap_err();
        assert!(e.starts_with("DB_CERT is "), "{e}");
        assert!(!e.contains("xxxx"));
    }

    #[test]
    fn the_total_is_checked_against_arg_max() {
        let env: Vec<CString> = (0..40)
            .map(|i| c(&format!("V{i}={}", "a".repeat(4000))))
            .collect();
        let e = check_sizes(&[c("app")], &env, 131_072).unwrap_err();
        assert!(e.contains("ARG_MAX"), "{e}");
        assert!(check_sizes(&[c("app")], &env, 2 * 1024 * 1024).is_ok());
    }
}
