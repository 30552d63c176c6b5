//! `exec --init`: for images without an init, run the application as a child instead of
//! replacing this process. The wrapper becomes a child subreaper, forwards every catchable
//! signal to the application, reaps every zombie (orphaned grandchildren included) and exits
//! with the application's status (128 + N when signal N killed it), like tini or dumb-init.
//! With `--refresh`, SIGALRM starts a round of the [`Refresher`] at each interval; a change
//! stops and restarts the application, stops it for good, or signals it (README "Rotation").

use crate::error::{EX_CANNOT_EXEC, EX_NOT_FOUND, Error};
use crate::exec::Launch;
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use std::time::Duration;

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

/// How the application is stopped for a restart or an exit.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// Sent first (`--stop-signal`).
    pub signal: Signal,
    /// How long to wait before SIGKILL (`--grace`).
    pub grace: Duration,
}

/// What a refresh round found.
pub enum Change {
    /// Nothing to do (no change, or the round failed: the application keeps its values).
    Nothing,
    /// Stop the application and exit 0 (`--on-change exit`).
    Exit,
    /// Stop the application and start it again with this launch and its files.
    Restart(Launch, Option<tempfile::TempDir>),
    /// Send the application this signal (its files were rewritten in place).
    Signal(Signal),
}

/// The refresh loop of `exec --init --refresh` (see `app::refresh`).
pub trait Refresher {
    /// How long until the next round.
    fn next(&mut self) -> Duration;
    /// One round: resolve again and compare.
    fn round(&mut self) -> Change;
}

/// Runs `launch` as a supervised child (its `*_FILE` directory `files` removed when it has
/// exited); with `refresh`, rounds at its intervals. Returns the exit code to leave with.
pub fn run(
    launch: Launch,
    files: Option<tempfile::TempDir>,
    mut refresh: Option<(&mut dyn Refresher, Stop)>,
) -> Result<u8, Error> {
    let shown = launch.shown.clone();
    let cannot = |reason: String| Error::Exec {
        command: shown.clone(),
        reason,
        code: EX_CANNOT_EXEC,
    };
    // Orphans of the application are re-parented to us, so we can reap them.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| cannot(format!("cannot become a subreaper: {e}")))?;
    let signals = forwarded();
    let mut old = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&signals), Some(&mut old))
        .map_err(|e| cannot(format!("cannot block signals: {e}")))?;
    let mut current = (launch, files);
    let mut child = spawn(&current.0, &old)?;
    if let Some((r, _)) = refresh.as_mut() {
        arm(r.next());
    }
    loop {
        let signal = signals
            .wait()
            .map_err(|e| cannot(format!("waiting for signals failed: {e}")))?;
        match signal {
            Signal::SIGCHLD => {
                if let Some(code) = reap(child) {
                    return Ok(code);
                }
            }
            Signal::SIGALRM if refresh.is_some() => {
                let Some((r, stop)) = refresh.as_mut() else {
                    continue;
                };
                match r.round() {
                    Change::Nothing => {}
                    Change::Signal(s) => {
                        let _ = kill(child, s);
                    }
                    Change::Exit => {
                        halt(child, stop);
                        return Ok(0);
                    }
                    Change::Restart(launch, files) => {
                        halt(child, stop);
                        // The old launch and its files go now that the application is gone.
                        current = (launch, files);
                        child = spawn(&current.0, &old)?;
                    }
                }
                arm(r.next());
            }
            other => {
                // The application may already be gone; the next SIGCHLD settles it.
                let _ = kill(child, other);
            }
        }
    }
}

/// Delivers SIGALRM after `after` (whole seconds, at least one).
fn arm(after: Duration) {
    let secs = u32::try_from(after.as_secs().max(1)).unwrap_or(u32::MAX);
    nix::unistd::alarm::set(secs);
}

/// Stops `child`: its stop signal, then SIGKILL after the grace period; reaps it.
fn halt(child: Pid, stop: &Stop) {
    let _ = kill(child, stop.signal);
    let until = std::time::Instant::now() + stop.grace;
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if std::time::Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                return;
            }
            _ => return,
        }
    }
}

/// Forks and execs `launch` in the child, with the signal mask `old` and SIGPIPE at its default.
fn spawn(launch: &Launch, old: &SigSet) -> Result<Pid, Error> {
    // Prepared before fork: the child may only call async-signal-safe functions.
    let shown = &launch.shown;
    let not_found = format!("kms-env: cannot run {shown:?}: command not found\n");
    let not_executable = format!("kms-env: cannot run {shown:?}: not executable\n");
    // SAFETY: after fork the child only restores the signal mask and SIGPIPE, calls execve and,
    // if that fails, write and _exit: all async-signal-safe, no allocation, no lock.
    #[allow(unsafe_code)]
    let fork_result = unsafe { fork() };
    match fork_result {
        Err(e) => Err(Error::Exec {
            command: shown.clone(),
            reason: format!("fork failed: {e}"),
            code: EX_CANNOT_EXEC,
        }),
        Ok(ForkResult::Child) => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(old), None);
            crate::exec::default_sigpipe();
            let errno = launch.program.exec(&launch.argv, &launch.env);
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
        Ok(ForkResult::Parent { child }) => Ok(child),
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
