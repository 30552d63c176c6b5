//! `kms-env exec`: injection, pass-through, argv, exit code, PID and signals.

use crate::common::*;
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader};
use std::os::unix::ffi::OsStrExt;

#[test]
fn values_are_injected_and_everything_else_is_byte_identical() {
    let db = unique("db");
    let cfg = unique("cfg");
    put_parameter(&db, "ssm-secure-plaintext", "SecureString");
    put_parameter(&cfg, "ssm-string-plaintext", "String");
    let kms = cli_encrypt(b"kms-plaintext-1");

    // Deliberately unsorted: the child must see the wrapper's order, not a sorted one.
    let mut vars: Vec<(OsString, OsString)> = vec![
        ("Z_PLAIN".into(), "info".into()),
        ("A_KMS".into(), kms.clone().into()),
        ("E_WEIRD".into(), os(b"a=b\nc 'd' \"e\" $f \xff\xfe")),
        ("C_STRING".into(), format!("ssm:{cfg}").into()),
        (
            "F_ARN_LIKE".into(),
            "arn:aws:ssm:us-east-1:123456789012:parameter/x".into(),
        ),
        ("B_SECURE".into(), format!("ssm://{db}").into()),
        ("G_EMPTY".into(), "".into()),
        ("H_KMS_AGAIN".into(), kms.into()),
    ];
    vars.extend(aws_env());

    // `env -i NAME=VALUE…` starts the wrapper with exactly this environment, in this order,
    // and the application is `env -0` itself (a shell would reorder its environment).
    let mut cmd = std::process::Command::new("/usr/bin/env");
    cmd.arg("-i");
    for (k, v) in &vars {
        let mut kv = k.clone();
        kv.push("=");
        kv.push(v);
        cmd.arg(kv);
    }
    cmd.arg(env!("CARGO_BIN_EXE_kms-env"))
        .args(["exec", "--", "/usr/bin/env", "-0"]);
    let r = run(&mut cmd);
    assert_eq!(r.code, Some(0), "{}", r.stderr());

    let mut expected = Vec::new();
    for (k, v) in &vars {
        let v = match k.to_str().unwrap() {
            "A_KMS" | "H_KMS_AGAIN" => b"kms-plaintext-1".to_vec(),
            "B_SECURE" => b"ssm-secure-plaintext".to_vec(),
            "C_STRING" => b"ssm-string-plaintext".to_vec(),
            _ => v.as_bytes().to_vec(),
        };
        expected.extend_from_slice(k.as_bytes());
        expected.push(b'=');
        expected.extend_from_slice(&v);
        expected.push(0);
    }
    assert_eq!(
        r.stdout, expected,
        "the child's environment is exact and in order"
    );
    // stdout is the child's own; the wrapper itself printed nothing.
    assert!(r.stderr.is_empty(), "{}", r.stderr());

    // argv with spaces, quotes, empty strings and dashes passes as is.
    let args = [
        "two words",
        "'single'",
        "\"double\"",
        "",
        "$HOME",
        "-v",
        "--",
        "ünï",
    ];
    let (r, dump) = exec_dump(&aws_env().into_iter().chain(vars).collect(), &[], &args);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let want_args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    assert_eq!(dump.args(), want_args);
    assert_no_plaintext(
        &r,
        &[
            b"kms-plaintext-1",
            b"ssm-secure-plaintext",
            b"ssm-string-plaintext",
        ],
    );
}

#[test]
fn nothing_to_resolve_means_no_aws_at_all() {
    let (url, connections) = connection_counter();
    let mut env = std::collections::BTreeMap::<OsString, OsString>::new();
    env.insert("PATH".into(), "/usr/bin:/bin".into());
    env.insert("AWS_ENDPOINT_URL".into(), url.into());
    env.insert("PLAIN".into(), "value".into());
    // No region, no credentials: loading the AWS configuration would fail or call out.
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("PLAIN").unwrap(), b"value");
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[test]
fn the_application_exit_code_comes_back() {
    let mut env = aws_env();
    env.insert("S".into(), cli_encrypt(b"exit-code-plaintext").into());
    let r = run(kms_env(&env).args(["exec", "--", "sh", "-c", "test -n \"$S\" && exit 42"]));
    assert_eq!(r.code, Some(42), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"exit-code-plaintext"]);
}

#[test]
fn the_application_keeps_the_wrapper_pid_and_gets_its_signals() {
    let mut env = aws_env();
    env.insert("S".into(), cli_encrypt(b"signal-plaintext").into());
    let script =
        r#"trap 'echo got-term; exit 43' TERM; echo "pid=$$"; while :; do sleep 0.05; done"#;
    let mut child = spawn(kms_env(&env).args(["exec", "--", "sh", "-c", script]));
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        format!("pid={}", child.id()),
        "same PID as the wrapper"
    );

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    line.clear();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "got-term");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(43));
    let r = Run {
        code: out.status.code(),
        stdout: line.into_bytes(),
        stderr: out.stderr,
        elapsed: Default::default(),
    };
    assert_no_plaintext(&r, &[b"signal-plaintext"]);
}

#[test]
fn command_not_found_is_127_and_not_executable_is_126() {
    let env = aws_env();
    let r = run(kms_env(&env).args(["exec", "--", "no-such-command-kms-env"]));
    assert_eq!(r.code, Some(127));
    assert!(
        r.stderr().contains("no-such-command-kms-env"),
        "{}",
        r.stderr()
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-executable");
    std::fs::write(&file, "#!/bin/sh\n").unwrap();
    let r = run(kms_env(&env).arg("exec").arg(&file));
    assert_eq!(r.code, Some(126), "{}", r.stderr());
}

#[test]
fn path_lookup_uses_path() {
    let dir = tempfile::tempdir().unwrap();
    let tool = dir.path().join("my-app");
    std::fs::write(&tool, "#!/bin/sh\nexit 7\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut env = aws_env();
    env.insert(
        "PATH".into(),
        format!("{}:/usr/bin:/bin", dir.path().display()).into(),
    );
    let r = run(kms_env(&env).args(["exec", "my-app"]));
    assert_eq!(r.code, Some(7), "{}", r.stderr());
}

#[test]
fn an_environment_grown_past_arg_max_is_a_clear_error_not_e2big() {
    // 40 short references to 4000-byte parameters: 160 KB once resolved. With `ulimit -s 512`
    // the kernel allows 128 KiB of arguments and environment.
    let base = unique("big");
    let params: Vec<(String, String, &str)> = (0..40)
        .map(|i| {
            (
                format!("{base}/p{i}"),
                format!("Zq-big-{i}-{}", "a".repeat(3990)),
                "String",
            )
        })
        .collect();
    seed(&[], &params);
    let mut env = aws_env();
    for (i, (name, _, _)) in params.iter().enumerate() {
        env.insert(format!("V{i}").into(), format!("ssm:{name}").into());
    }
    let dump = Dump::new();
    let r = run(std::process::Command::new("bash")
        .args(["-c", "ulimit -s 512 && exec \"$@\"", "bash"])
        .arg(env!("CARGO_BIN_EXE_kms-env"))
        .args(["exec", "--"])
        .args(dump.command(&[]))
        .env_clear()
        .envs(&env));
    assert_eq!(r.code, Some(126), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("ARG_MAX"), "{}", r.stderr());
    assert!(!r.stderr().contains("Zq-big"), "{}", r.stderr());

    // The same environment with the default stack limit starts the application.
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("V7").unwrap(), params[7].1.as_bytes());
}

/// The shell command that prints its own open descriptors with their targets.
/// (One command, no pipeline: a shell holds a pipeline's pipes while its first command runs.)
const LIST_DESCRIPTORS: &str = "find /proc/$$/fd -mindepth 1 -printf '%f %l\\n'";

/// The descriptor numbers of a [`LIST_DESCRIPTORS`] listing, in order.
fn numbers(listing: &str) -> Vec<u32> {
    let mut numbers: Vec<u32> = listing
        .lines()
        .filter_map(|l| l.split(' ').next()?.parse().ok())
        .collect();
    numbers.sort_unstable();
    numbers
}

/// `command` run with only stdin, stdout and stderr open: bash closes every other descriptor it
/// inherited (from the test process, where other tests' descriptors come and go) first.
fn with_only_stdio(command: &[&OsStr]) -> std::process::Command {
    let mut cmd = std::process::Command::new("bash");
    cmd.args([
        "-c",
        "for fd in /proc/$$/fd/*; do n=${fd##*/}; [ \"$n\" -gt 2 ] && eval \"exec $n>&-\"; done; exec \"$@\"",
        "bash",
    ])
    .args(command)
    .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn the_application_inherits_no_descriptor_of_the_calls() {
    // kms-env leaves its runtime and its 20 open connections to execve (they are close-on-exec)
    // instead of closing them one by one: none may reach the application, with or without
    // --init. What the shell has when started the same way directly (its pipe) is the
    // expectation.
    let sh: [&OsStr; 3] = ["sh".as_ref(), "-c".as_ref(), LIST_DESCRIPTORS.as_ref()];
    let direct = run(&mut with_only_stdio(&sh));
    assert_eq!(direct.code, Some(0), "{}", direct.stderr());
    assert_eq!(numbers(&direct.stdout()), [0, 1, 2], "{}", direct.stdout());
    let plaintexts: Vec<String> = (0..20).map(|i| format!("fd-plaintext-{i:02}")).collect();
    let values = seed(&plaintexts, &[]);
    let mut env = aws_env();
    for (i, v) in values.iter().enumerate() {
        env.insert(format!("FD{i:02}").into(), v.into());
    }
    let bin: &OsStr = env!("CARGO_BIN_EXE_kms-env").as_ref();
    for extra in [&[][..], &["--init"][..]] {
        let mut command = vec![bin, "exec".as_ref()];
        command.extend(extra.iter().map(|e| OsStr::new(*e)));
        command.push("--".as_ref());
        command.extend(sh);
        let r = run(with_only_stdio(&command).env_clear().envs(&env));
        assert_eq!(r.code, Some(0), "{extra:?}: {}", r.stderr());
        assert_eq!(
            numbers(&r.stdout()),
            numbers(&direct.stdout()),
            "{extra:?}: {}",
            r.stdout()
        );
    }
}
