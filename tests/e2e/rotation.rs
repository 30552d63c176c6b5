//! `exec --init --refresh`: a parameter changed with the AWS CLI while the application runs
//! restarts it (after SIGTERM), stops it (`exit`), or rewrites its file and signals it
//! (`signal:HUP`); rounds that fail or find no change leave it alone.

use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

/// The environment for a supervised application with one-second rounds.
fn refreshing(extra: &[(&str, String)]) -> BTreeMap<OsString, OsString> {
    let mut env = aws_env();
    env.insert("KMS_ENV_TEST_REFRESH_FLOOR".into(), "1".into());
    for (k, v) in extra {
        env.insert((*k).into(), v.into());
    }
    env
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `path` holds `what` (at most 20 s).
fn wait_for(path: &Path, what: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    while !log_of(path).contains(what) {
        assert!(Instant::now() < until, "no {what:?} in: {}", log_of(path));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An application that logs its start and SIGTERM, then idles.
fn app(log: &Path) -> String {
    format!(
        "trap 'echo term >> {0}; exit 0' TERM; echo \"start $V\" >> {0}; while :; do sleep 0.1; done",
        log.display()
    )
}

/// `kms-env exec --init --refresh 1s EXTRA… -- sh -c SCRIPT`, running.
fn supervised(
    env: &BTreeMap<OsString, OsString>,
    extra: &[&str],
    script: &str,
) -> std::process::Child {
    spawn(
        kms_env(env)
            .args(["exec", "--init", "--refresh", "1s"])
            .args(extra)
            .args(["--", "sh", "-c", script]),
    )
}

fn stop(child: std::process::Child) -> Run {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let started = Instant::now();
    Run::finished(child.wait_with_output().unwrap(), started)
}

#[test]
fn a_changed_parameter_restarts_the_application_after_sigterm() {
    let p = unique("rotate-restart");
    put_parameter(&p, "first-rotated-value", "SecureString");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let env = refreshing(&[("V", format!("ssm:{p}"))]);
    let child = supervised(&env, &["-v"], &app(&log));
    wait_for(&log, "start first-rotated-value");
    // Rounds without a change do not restart.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(log_of(&log).matches("start").count(), 1, "{}", log_of(&log));
    put_parameter(&p, "second-rotated-value", "SecureString");
    wait_for(&log, "start second-rotated-value");
    let text = log_of(&log);
    let term = text
        .find("term")
        .expect("the first incarnation got SIGTERM");
    assert!(term < text.find("start second").unwrap(), "{text}");
    let r = stop(child);
    assert!(r.stderr().contains("refresh: changed: V"), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"first-rotated-value", b"second-rotated-value"]);
}

#[test]
fn on_change_exit_stops_the_application_and_exits_0() {
    let p = unique("rotate-exit");
    put_parameter(&p, "exit-first-value", "String");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let env = refreshing(&[
        ("V", format!("ssm:{p}")),
        ("KMS_ENV_ON_CHANGE", "exit".into()),
    ]);
    let child = supervised(&env, &[], &app(&log));
    wait_for(&log, "start exit-first-value");
    put_parameter(&p, "exit-second-value", "String");
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log_of(&log).contains("term"), "{}", log_of(&log));
    assert_eq!(log_of(&log).matches("start").count(), 1);
}

#[test]
fn signal_hup_rewrites_the_file_in_place_and_keeps_the_pid() {
    let p = unique("rotate-hup");
    put_parameter(&p, "hup-first-value", "SecureString");
    let dir = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let script = format!(
        "trap 'echo \"hup $$ $(cat \"$S_FILE\")\" >> {0}' HUP; echo \"start $$ $S_FILE\" >> {0}; while :; do sleep 0.1; done",
        log.display()
    );
    let env = refreshing(&[("S_FILE", format!("ssm:{p}"))]);
    let child = supervised(
        &env,
        &[
            "--on-change",
            "signal:HUP",
            "--files-dir",
            files.path().to_str().unwrap(),
        ],
        &script,
    );
    wait_for(&log, "start ");
    put_parameter(&p, "hup-second-value", "SecureString");
    wait_for(&log, "hup-second-value");
    let text = log_of(&log);
    let start: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("start"))
        .unwrap()
        .split(' ')
        .collect();
    let hup: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("hup"))
        .unwrap()
        .split(' ')
        .collect();
    assert_eq!(start[1], hup[1], "the same process: {text}");
    assert_eq!(text.matches("start").count(), 1, "{text}");
    // The path did not change and holds the new value.
    assert_eq!(std::fs::read(start[2]).unwrap(), b"hup-second-value");
    let r = stop(child);
    assert_no_plaintext(&r, &[b"hup-first-value", b"hup-second-value"]);
}

#[test]
fn rounds_that_fail_leave_the_application_running() {
    let p = unique("rotate-down");
    put_parameter(&p, "down-value", "String");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    // The first request passes; every later one is throttled or refused.
    let proxy = proxy::start(moto().port, |n, _| {
        if n == 0 {
            proxy::Fault::Pass
        } else if n % 2 == 1 {
            proxy::Fault::Error(400, "ThrottlingException")
        } else {
            proxy::Fault::Reset
        }
    });
    let env = refreshing(&[
        ("V", format!("ssm:{p}")),
        ("AWS_ENDPOINT_URL", proxy.url.clone()),
        ("KMS_ENV_TIMEOUT", "2s".into()),
    ]);
    let child = supervised(&env, &[], &app(&log));
    wait_for(&log, "start down-value");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(log_of(&log).matches("start").count(), 1, "{}", log_of(&log));
    assert!(!log_of(&log).contains("term"));
    let r = stop(child);
    assert!(
        r.stderr().contains("the application keeps its values"),
        "{}",
        r.stderr()
    );
    assert_no_plaintext(&r, &[b"down-value"]);
}

#[test]
fn refresh_without_init_is_a_usage_error() {
    let r = run(kms_env(&refreshing(&[])).args(["exec", "--refresh", "10s", "--", "true"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr());
    assert!(
        r.stderr().contains("--refresh needs --init"),
        "{}",
        r.stderr()
    );
}
