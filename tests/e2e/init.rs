//! `exec --init`: the wrapper supervises the application instead of replacing itself.

use crate::common::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

#[test]
fn signals_reach_the_application() {
    let mut env = aws_env();
    env.insert("S".into(), cli_encrypt(b"init-signal-plaintext").into());
    for signal in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let script = r#"trap 'echo "got-$1"; exit 7' TERM INT HUP; test "$S" = init-signal-plaintext || exit 99; echo "ready $$"; while :; do sleep 0.05; done"#;
        let mut child = spawn(kms_env(&env).args([
            "exec",
            "--init",
            "--",
            "sh",
            "-c",
            script,
            "sh",
            signal.as_str(),
        ]));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready "), "{line}");
        let app_pid: u32 = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
        assert_ne!(app_pid, child.id(), "a child, not the wrapper itself");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), format!("got-{}", signal.as_str()));
        let status = child.wait_with_output().unwrap();
        assert_eq!(status.status.code(), Some(7), "{signal}");
        assert!(!String::from_utf8_lossy(&status.stderr).contains("init-signal-plaintext"));
    }
}

#[test]
fn exit_codes_pass_through_and_a_signal_death_is_128_plus_n() {
    let env = aws_env();
    let r = run(kms_env(&env).args(["exec", "--init", "--", "sh", "-c", "exit 42"]));
    assert_eq!(r.code, Some(42));
    let r = run(kms_env(&env).args(["exec", "--init", "--", "sh", "-c", "kill -TERM $$"]));
    assert_eq!(r.code, Some(143));
    let r = run(kms_env(&env).args(["exec", "--init", "--", "no-such-command-kms-env"]));
    assert_eq!(r.code, Some(127), "{}", r.stderr());
    // KMS_ENV_INIT=1 turns it on too.
    let mut on = env.clone();
    on.insert("KMS_ENV_INIT".into(), "1".into());
    let r = run(kms_env(&on).args(["exec", "--", "sh", "-c", "echo $$; exit 3"]));
    assert_eq!(r.code, Some(3));
}

#[test]
fn orphaned_grandchildren_are_adopted_and_reaped() {
    // The app starts a grandchild that outlives its parent subshell, checks that the wrapper
    // adopted it, waits until it has exited, then counts zombies whose parent is the wrapper.
    let script = r#"
(sleep 0.4 &)
sleep 0.1
adopted=0
for f in /proc/[0-9]*/status; do
  grep -q "^PPid:[[:space:]]*$PPID\$" "$f" 2>/dev/null && grep -q "^Name:[[:space:]]*sleep" "$f" 2>/dev/null && adopted=$((adopted+1))
done
sleep 0.8
zombies=0
for f in /proc/[0-9]*/status; do
  grep -q "^PPid:[[:space:]]*$PPID\$" "$f" 2>/dev/null && grep -q "^State:[[:space:]]*Z" "$f" 2>/dev/null && zombies=$((zombies+1))
done
echo "adopted=$adopted zombies=$zombies"
"#;
    let r = run(kms_env(&aws_env()).args(["exec", "--init", "--", "sh", "-c", script]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(r.stdout().trim(), "adopted=1 zombies=0");
}

#[test]
fn stdin_stays_attached() {
    let mut child = kms_env(&aws_env())
        .args([
            "exec",
            "--init",
            "--",
            "sh",
            "-c",
            "read line; echo \"got $line\"",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "hello from stdin").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got hello from stdin\n"
    );
}
