//! `exec --init`: for images without an init, run the application as a child instead of
//! replacing this process. The wrapper becomes a child subreaper, forwards every catchable
//! signal to the application, reaps every zombie (orphaned grandchildren included) and exits
//! with the application's status (128 + N when signal N killed it), like tini or dumb-init.

use crate::error::{EX_CANNOT_EXEC, EX_NOT_FOUND, Error};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use std::ffi::CString;

/// The status the wrapper exits with for a child's wait status.
fn exit_code(status: WaitStatus) -> Option<u8> {
    match status {
        WaitStatus::Exited(_, code) => Some(u8::try_from(code & 0xff).unwrap_or(1)),
        WaitStatus::Signaled(_, signal, _) => Some(128u8.saturating_add(signal as u8)),
        _ => None,
    }
}

/// Every signal that can be caught and is worth forwarding.
fn forwarded() -> SigSet {
    let mut set = SigSet::all();
    for s in [Signal::SIGKILL, Signal::SIGSTOP] {
        set.remove(s);
    }
    set
}

/// Runs `argv` with `env` as a supervised child; returns the exit code to leave with.
pub fn run(
    shown: &str,
    program: &crate::exec::Program,
    argv: &[CString],
    env: &[CString],
) -> Result<u8, Error> {
    let cannot = |reason: String, code| Error::Exec {
        command: shown.to_owned(),
        reason,
        code,
    };
    // Orphans of the application are re-parented to us, so we can reap them.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| cannot(format!("cannot become a subreaper: {e}"), EX_CANNOT_EXEC))?;
    let signals = forwarded();
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old))
        .map_err(|e| cannot(format!("cannot block signals: {e}"), EX_CANNOT_EXEC))?;
    // Prepared before fork: the child may only call async-signal-safe functions.
    let not_found = format!("kms-env: cannot run {shown:?}: command not found\n");
    let not_executable = format!("kms-env: cannot run {shown:?}: not executable\n");

    // SAFETY: after fork the child only restores the signal mask and SIGPIPE, calls execve and, if that
    // fails, write and _exit: all async-signal-safe, no allocation, no lock.
    #[allow(unsafe_code)]
    let fork_result = unsafe { fork() };
    let child = match fork_result {
        Err(e) => return Err(cannot(format!("fork failed: {e}"), EX_CANNOT_EXEC)),
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
            crate::exec::default_sigpipe();
            let errno = program.exec(argv, env);
            let (message, code) = if errno == Errno::ENOENT {
                (&not_found, EX_NOT_FOUND)
            } else {
                (&not_executable, EX_CANNOT_EXEC)
            };
            let _ = nix::unistd::write(std::io::stderr(), message.as_bytes());
            // SAFETY: _exit is async-signal-safe and skips the parent's atexit handlers.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(i32::from(code))
            }
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    loop {
        let signal = signals
            .wait()
            .map_err(|e| cannot(format!("waiting for signals failed: {e}"), EX_CANNOT_EXEC))?;
        if signal != Signal::SIGCHLD {
            // The application may already be gone; the next SIGCHLD settles it.
            let _ = kill(child, signal);
            continue;
        }
        if let Some(code) = reap(child) {
            return Ok(code);
        }
    }
}

/// Reaps every child that has exited; the application's exit code once it has.
fn reap(child: Pid) -> Option<u8> {
    let mut result = None;
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(_) => return result,
            Ok(status) => {
                if status.pid() == Some(child) {
                    result = exit_code(status);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 42)), Some(42));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)),
            Some(143)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn kill_and_stop_are_not_forwarded() {
        let set = forwarded();
        assert!(!set.contains(Signal::SIGKILL));
        assert!(set.contains(Signal::SIGTERM));
        assert!(set.contains(Signal::SIGCHLD));
    }
}
