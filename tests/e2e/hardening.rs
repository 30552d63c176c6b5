//! Defects found by a hostile review, each fixed with a test that failed before: the inherited
//! SIGPIPE, look-alike references in `encrypt --env-file`, duplicate keys, the `--timeout`
//! bound, `add` values no environment can hold, empty `KMS_ENV_*` variables, and control
//! characters in variable names.

use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;

/// An environment with nothing to resolve and no AWS configuration.
fn bare_env() -> BTreeMap<OsString, OsString> {
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/nonexistent"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect()
}

/// The application's ignored-signal mask, from /proc.
fn ignored_mask(extra: &[&str]) -> u64 {
    let r = run(kms_env(&bare_env()).arg("exec").args(extra).args([
        "--",
        "sh",
        "-c",
        "grep ^SigIgn: /proc/$$/status",
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let hex = r
        .stdout()
        .trim()
        .trim_start_matches("SigIgn:")
        .trim()
        .to_owned();
    u64::from_str_radix(&hex, 16).unwrap()
}

#[test]
fn the_application_gets_sigpipe_at_its_default_with_and_without_init() {
    const SIGPIPE_BIT: u64 = 1 << (13 - 1);
    for extra in [&[][..], &["--init"][..]] {
        assert_eq!(ignored_mask(extra) & SIGPIPE_BIT, 0, "{extra:?}");
        let r = run(kms_env(&bare_env()).arg("exec").args(extra).args([
            "--",
            "sh",
            "-c",
            "yes | head -1",
        ]));
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        assert_eq!(r.stdout(), "y\n");
        assert!(
            !r.stderr().contains("Broken pipe"),
            "{extra:?}: {}",
            r.stderr()
        );
    }
}

fn encrypt_file(contents: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, contents).unwrap();
    run(kms_env(&aws_env())
        .args(["encrypt", "--key-id", "alias/none", "--env-file"])
        .arg(&file))
}

#[test]
fn encrypt_env_file_refuses_look_alike_references_and_duplicate_keys() {
    for (contents, key) in [
        ("OK=fine\nPASSWORD=kms:hunter2\n", "PASSWORD"),
        ("TOKEN=ssm:my token\n", "TOKEN"),
        ("S=sm://prod/db\n", "S"),
        ("A=1\nB=2\nA=hunter2\n", "A"),
    ] {
        let r = encrypt_file(contents);
        assert_eq!(r.code, Some(65), "{contents}: {}", r.stderr());
        assert!(r.stderr().contains(key), "{}", r.stderr());
        assert!(r.stdout.is_empty(), "nothing printed: {}", r.stdout());
        assert_no_plaintext(&r, &[b"hunter2", b"my token"]);
    }
}

#[test]
fn show_refuses_a_file_with_a_key_twice() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, "KMS_DATA_KEY=AQI=\nAWS_REGION=us-east-1\nA=x\nA=y\n").unwrap();
    let r = run(kms_env(&aws_env()).arg("show").arg(&file));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(
        r.stderr().contains("A is given more than once"),
        "{}",
        r.stderr()
    );
    assert!(r.stdout.is_empty());
}

#[test]
fn every_form_of_timeout_has_one_upper_bound_and_none_panics() {
    for timeout in ["584542046090y", "1000y", "86400", "25h", "0", "-3"] {
        let flag = format!("--timeout={timeout}");
        let r = run(kms_env(&bare_env()).args([flag.as_str(), "exec", "--", "true"]));
        assert_eq!(r.code, Some(2), "{timeout}: {}", r.stderr());
        assert!(r.stderr().contains("--timeout"), "{}", r.stderr());
    }
    let r = run(kms_env(&bare_env()).args(["--timeout", "23h", "exec", "--", "true"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
}

#[test]
fn add_refuses_a_value_no_environment_can_hold_and_leaves_the_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    let original = "KMS_DATA_KEY=AQI=\nAWS_REGION=us-east-1\n";
    std::fs::write(&file, original).unwrap();
    // Through stdin: argv could not carry it either.
    let big = "x".repeat(200 * 1024);
    let r = run_with_stdin(
        kms_env(&aws_env())
            .arg("add")
            .arg(&file)
            .args(["--stdin", "CERT"]),
        big.as_bytes(),
    );
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(
        r.stderr().contains("CERT") && r.stderr().contains("128 KiB"),
        "{}",
        r.stderr()
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
}

#[test]
fn empty_kms_env_variables_count_as_unset() {
    let mut env = bare_env();
    for var in [
        "KMS_ENV_CONTEXT",
        "KMS_ENV_TIMEOUT",
        "KMS_ENV_LOG_LEVEL",
        "KMS_ENV_INIT",
        "KMS_ENV_START_JITTER",
        "KMS_ENV_REGION",
    ] {
        env.insert(var.into(), "".into());
    }
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(dump.started());

    // An empty KMS_ENV_REGION does not hide AWS_REGION.
    let mut env = aws_env();
    env.insert("KMS_ENV_REGION".into(), "".into());
    env.insert("KMS_ENV_TIMEOUT".into(), "".into());
    env.insert("S".into(), cli_encrypt(b"empty-vars-value").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("S").unwrap(), b"empty-vars-value");
    assert_no_plaintext(&r, &[b"empty-vars-value"]);
}

#[test]
fn control_characters_in_names_are_escaped_in_messages_and_tables() {
    let mut env = bare_env();
    env.insert(os(b"FORGED\nkms-env: all good\x1b[2K"), "kms:!!".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());
    let err = r.stderr();
    assert!(
        err.contains("FORGED\\nkms-env: all good\\u{1b}[2K (kms)"),
        "{err}"
    );
    assert!(!err.contains("\nkms-env: all good"), "{err}");
    assert!(!r.stderr.contains(&0x1b), "{err}");

    let r = run(kms_env(&env).arg("check"));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!r.stdout.contains(&0x1b) && !r.stderr.contains(&0x1b));
    assert!(r.stdout().contains("FORGED\\nkms-env"), "{}", r.stdout());
}

/// Fails if `text` holds Rust `Debug` output (`Foo { source: … }`, `Some(…)`, `Os { code … }`).
fn assert_no_debug(text: &str) {
    for marker in [
        "{ ", " }", "Some(", "None", "source:", "kind:", "Os {", "Error(",
    ] {
        assert!(
            !text.contains(marker),
            "Debug output ({marker:?}) in: {text}"
        );
    }
}

#[test]
fn every_failure_class_is_a_sentence_with_the_hint_for_its_cause() {
    let closed = free_port();
    let token = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(token.path(), "token-with-a-newline\n").unwrap();
    let not_pem = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_pem.path(), "not a certificate").unwrap();
    let throttle = proxy::start(moto().port, |_, _| {
        proxy::Fault::Error(400, "ThrottlingException")
    });
    let deny = proxy::start(moto().port, |_, _| {
        proxy::Fault::Error(400, "AccessDeniedException")
    });
    let closed_url = format!("http://127.0.0.1:{closed}");
    let token_path = token.path().to_str().unwrap().to_owned();
    let pem_path = not_pem.path().to_str().unwrap().to_owned();
    let hole = black_hole();
    // (what, variables to set or, when empty, remove, exit code, the message says, a hint says)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, i32, &'a str, &'a str);
    let cases: Vec<Case> = vec![
        (
            "closed port",
            vec![("AWS_ENDPOINT_URL", &closed_url)],
            69,
            "cannot connect to 127.0.0.1:",
            "AWS_ENDPOINT_URL",
        ),
        (
            "unknown host",
            vec![("AWS_ENDPOINT_URL", "http://kms-env-test.invalid")],
            69,
            "cannot resolve the endpoint's host kms-env-test.invalid:80",
            "AWS_ENDPOINT_URL",
        ),
        (
            "no answer",
            vec![("AWS_ENDPOINT_URL", &hole), ("KMS_ENV_TIMEOUT", "1500ms")],
            69,
            "timed out",
            "--timeout",
        ),
        (
            "throttled",
            vec![
                ("AWS_ENDPOINT_URL", &throttle.url),
                ("KMS_ENV_TIMEOUT", "1s"),
            ],
            69,
            "throttled",
            "",
        ),
        (
            "denied",
            vec![("AWS_ENDPOINT_URL", &deny.url)],
            77,
            "access denied: AccessDeniedException",
            "",
        ),
        (
            "unusable token file",
            vec![
                ("AWS_ACCESS_KEY_ID", ""),
                (
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "http://127.0.0.1:9/creds",
                ),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", &token_path),
            ],
            78,
            "credentials provider",
            "_TOKEN_FILE",
        ),
        (
            "no region",
            vec![("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "")],
            78,
            "no AWS region found",
            "--region",
        ),
        (
            "bad CA bundle",
            vec![("AWS_CA_BUNDLE", &pem_path)],
            78,
            "no PEM certificate",
            "PEM files of CA certificates",
        ),
    ];
    for (what, vars, code, says, hint) in cases {
        let mut env = aws_env();
        for (k, v) in vars {
            if v.is_empty() {
                env.remove(std::ffi::OsStr::new(k));
                if k == "AWS_ACCESS_KEY_ID" {
                    env.remove(std::ffi::OsStr::new("AWS_SECRET_ACCESS_KEY"));
                }
            } else {
                env.insert(k.into(), v.into());
            }
        }
        env.insert("K".into(), "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into());
        let (r, dump) = exec_dump(&env, &[], &[]);
        let err = r.stderr();
        assert_eq!(r.code, Some(code), "{what}: {err}");
        assert!(!dump.started(), "{what}");
        assert!(err.contains("  K (kms): "), "{what}: {err}");
        assert!(err.contains(says), "{what}: {err}");
        if !hint.is_empty() {
            let hints: Vec<&str> = err.lines().filter(|l| l.starts_with("hint: ")).collect();
            assert!(hints.iter().any(|h| h.contains(hint)), "{what}: {err}");
            if hint != "--region" {
                assert!(
                    !hints.iter().any(|h| h.contains("--region")),
                    "{what}: the region hint for another cause: {err}"
                );
            }
        }
        assert_no_debug(&err);
    }
}

#[test]
fn a_path_that_is_a_reference_is_used_resolved_for_the_command_lookup() {
    let p = unique("path-ref");
    put_parameter(&p, "/usr/local/bin:/usr/bin:/bin", "String");
    let mut env = aws_env();
    env.insert("PATH".into(), format!("ssm:{p}").into());
    let dump = Dump::new();
    // A bare command name: found through the resolved PATH, not the literal `ssm:/…`.
    let script = format!("env -0 > '{}/env'", dump.dir.path().display());
    let r = run(kms_env(&env).args(["exec", "--", "sh", "-c", &script]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("PATH").unwrap(), b"/usr/local/bin:/usr/bin:/bin");
    let r = run(kms_env(&env).args(["exec", "--init", "--", "sh", "-c", "exit 7"]));
    assert_eq!(r.code, Some(7), "{}", r.stderr());
    let r = run(kms_env(&env).args(["exec", "--", "no-such-command-kms-env"]));
    assert_eq!(r.code, Some(127), "{}", r.stderr());
}

#[test]
fn endless_inputs_end_with_an_error_not_with_the_memory() {
    for args in [
        &["check", "--env-file", "/dev/zero"][..],
        &["show", "/dev/zero"][..],
        &["add", "/dev/zero", "A=b"][..],
        &[
            "encrypt",
            "--key-id",
            "alias/none",
            "--env-file",
            "/dev/zero",
        ][..],
    ] {
        let r = run(kms_env(&aws_env()).args(args));
        assert_eq!(r.code, Some(65), "{args:?}: {}", r.stderr());
        assert!(r.stderr().contains("larger than 8 MiB"), "{}", r.stderr());
    }
    let r = run(kms_env(&aws_env())
        .args(["encrypt", "--key-id", "alias/none"])
        .stdin(std::fs::File::open("/dev/zero").unwrap()));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(r.stderr().contains("more than 1 MiB"), "{}", r.stderr());
}

#[test]
fn init_and_add_write_through_symlinks_and_keep_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.env");
    let link = dir.path().join("link.env");
    std::fs::write(&real, "LOG_LEVEL=info\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o640)).unwrap();
    // The suite runs as root (CI does; the chroot test needs it too): the file belongs to
    // another user, as when root edits a service account's file.
    std::os::unix::fs::chown(&real, Some(65534), Some(65534)).expect("the suite runs as root");
    std::os::unix::fs::symlink("real.env", &link).unwrap();
    let r = run(kms_env(&aws_env()).arg("init").arg(key_id()).arg(&link));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let r = run(kms_env(&aws_env())
        .arg("add")
        .arg(&link)
        .arg("DB_PASSWORD=link-plaintext"));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let meta = std::fs::metadata(&real).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    let text = std::fs::read_to_string(&real).unwrap();
    assert!(text.starts_with("KMS_DATA_KEY="), "{text}");
    assert!(text.contains("DB_PASSWORD=secure:"), "{text}");
    assert!(!text.contains("link-plaintext"));
}

#[test]
fn check_warns_about_quoted_references_that_docker_would_pass_on_literally() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, "A=\"kms:!!\"\nB='plain'\n").unwrap();
    let r = run(kms_env(&aws_env()).args(["check", "--env-file"]).arg(&file));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(
        r.stderr().contains("the value of A is in quotes"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("value of B"), "{}", r.stderr());
}

#[test]
fn install_copies_the_executable_atomically_with_mode_0755() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let r = run(kms_env(&bare_env()).arg("install").arg(dir.path()));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let installed = dir.path().join("kms-env");
    let meta = std::fs::metadata(&installed).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_kms-env")).unwrap()
    );
    // Only the binary: no temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // The copy works.
    let r = run(std::process::Command::new(&installed)
        .env_clear()
        .envs(bare_env())
        .args(["exec", "--", "true"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let r = run(kms_env(&bare_env())
        .arg("install")
        .arg("/nonexistent-kms-env-dir"));
    assert_eq!(r.code, Some(74), "{}", r.stderr());
    assert!(r.stderr().contains("cannot install into"), "{}", r.stderr());
}

#[test]
fn five_hundred_references_under_ulimit_n_256_queue_instead_of_failing_with_emfile() {
    let plaintexts: Vec<String> = (0..500).map(|i| format!("fd-limit-value-{i:03}")).collect();
    let values = seed(&plaintexts, &[]);
    let mut env = aws_env();
    for (i, v) in values.iter().enumerate() {
        env.insert(format!("S{i:03}").into(), v.into());
    }
    let dump = Dump::new();
    let script = format!("env -0 > '{}/env'", dump.dir.path().display());
    let r = run(std::process::Command::new("sh")
        .env_clear()
        .envs(&env)
        .args(["-c", "ulimit -n 256 && exec \"$0\" exec -- sh -c \"$1\""])
        .arg(env!("CARGO_BIN_EXE_kms-env"))
        .arg(&script));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    for i in [0, 255, 499] {
        assert_eq!(
            dump.var(&format!("S{i:03}")).unwrap(),
            format!("fd-limit-value-{i:03}").as_bytes()
        );
    }
}

/// A loopback endpoint that answers 200 and then streams a body without end.
fn endless_body() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                );
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                while stream.write_all(chunk.as_bytes()).is_ok() {}
            });
        }
    });
    url
}

#[test]
fn an_endless_response_body_fails_the_call_instead_of_filling_the_memory() {
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), endless_body().into());
    env.insert("KMS_ENV_TIMEOUT".into(), "60s".into());
    env.insert("K".into(), "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.elapsed < std::time::Duration::from_secs(30),
        "{:?}",
        r.elapsed
    );
    assert!(
        r.stderr().contains("is larger than 4 MiB"),
        "{}",
        r.stderr()
    );
    assert_no_debug(&r.stderr());
}
