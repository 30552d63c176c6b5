//! Drop-in compatibility: env files of the original npm kms-env 0.3.0 (driven through its own
//! library code against moto), its legacy cipher, mapbox's `secure:<base64>`, shush's
//! `KMS_ENCRYPTED_*`, and `export` as the replacement of `eval $(kms-env decrypt)`.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn node_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/kms-env").exists(),
        "the original kms-env is not installed in tests/node: run ./scripts/test"
    );
    dir
}

/// Runs the original kms-env's library code (tests/node/original.js).
fn original(args: &[&str]) -> Run {
    let dir = node_dir();
    run(Command::new("node")
        .arg(dir.join("original.js"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(aws_env())
        .env("AWS_REGION", REGION))
}

fn original_ok(args: &[&str]) -> Run {
    let r = original(args);
    assert_eq!(r.code, Some(0), "original kms-env {args:?}: {}", r.stderr());
    r
}

/// The `KEY=VALUE` pairs of an env file, as Docker's --env-file or ECS would set them.
fn file_env(path: &Path) -> Vec<(OsString, OsString)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().into(), v.trim().into())
        })
        .collect()
}

fn with_file_env(path: &Path) -> BTreeMap<OsString, OsString> {
    let mut env = aws_env();
    env.extend(file_env(path));
    env
}

/// Values the original can store: spaces, both quotes, `$`, `=`, unicode, empty.
const VALUES: &[(&str, &str)] = &[
    ("SPACES", "pass word with spaces"),
    ("QUOTES", r#"it's a "quoted" value"#),
    ("DOLLAR", "pa$$word$HOME${x}"),
    ("EQUALS", "a=b==c"),
    ("UNICODE", "ünïcödé 🔑 密码"),
    ("EMPTY", ""),
    ("BACKSLASH", r"back\slash\n"),
];

fn entries() -> Vec<String> {
    VALUES.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn secrets() -> Vec<&'static [u8]> {
    VALUES
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(_, v)| v.as_bytes())
        .collect()
}

/// An env file made by the original's `init` and `add` with [`VALUES`].
fn original_file(dir: &tempfile::TempDir) -> String {
    let file = new_file(dir);
    original_ok(&["init", &file, key_id()]);
    let entries = entries();
    let mut args = vec!["add", file.as_str()];
    args.extend(entries.iter().map(String::as_str));
    original_ok(&args);
    file
}

fn new_file(dir: &tempfile::TempDir) -> String {
    dir.path().join("app.env").to_str().unwrap().to_owned()
}

#[test]
fn files_written_by_the_original_are_read_exactly_by_exec_decrypt_and_show() {
    let dir = tempfile::tempdir().unwrap();
    let file = original_file(&dir);
    std::fs::write(
        &file,
        std::fs::read_to_string(&file).unwrap() + "\nPLAIN_SETTING=info",
    )
    .unwrap();

    // exec: every value exact, KMS_DATA_KEY gone from the child, AWS_REGION kept.
    let (r, dump) = exec_dump(&with_file_env(Path::new(&file)), &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    for (k, v) in VALUES {
        assert_eq!(dump.var(k).unwrap(), v.as_bytes(), "{k}");
    }
    assert_eq!(dump.var("PLAIN_SETTING").unwrap(), b"info");
    assert_eq!(dump.var("KMS_DATA_KEY"), None);
    assert_eq!(dump.var("AWS_REGION").unwrap(), REGION.as_bytes());
    assert_no_plaintext(&r, &secrets());

    // --keep-references keeps the encrypted data key.
    let (r, dump) = exec_dump(
        &with_file_env(Path::new(&file)),
        &["--keep-references"],
        &[],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let pairs = file_env(Path::new(&file));
    let data_key = &pairs.iter().find(|(k, _)| k == "KMS_DATA_KEY").unwrap().1;
    assert_eq!(
        dump.var("KMS_DATA_KEY").unwrap(),
        data_key.as_encoded_bytes()
    );

    // decrypt: one secure: value with KMS_DATA_KEY in the environment.
    let quotes = &pairs.iter().find(|(k, _)| k == "QUOTES").unwrap().1;
    let mut env = aws_env();
    env.insert("KMS_DATA_KEY".into(), data_key.clone());
    let r = run(kms_env(&env).arg("decrypt").arg(quotes));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(r.stdout, VALUES[1].1.as_bytes());

    // show: the file with its values decrypted, a warning on stderr.
    let r = run(kms_env(&aws_env()).args(["show", &file]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let shown = r.stdout();
    for (k, v) in VALUES {
        assert!(shown.contains(&format!("\n{k}={v}\n")), "{k} in {shown}");
    }
    assert!(shown.starts_with("KMS_DATA_KEY="), "{shown}");
    assert!(r.stderr().contains("plaintext"), "{}", r.stderr());
    assert!(!r.stderr().contains(VALUES[0].1));
}

#[test]
fn files_written_by_us_are_read_exactly_by_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let file = new_file(&dir);
    let r = run(kms_env(&aws_env()).args(["init", key_id(), &file]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.starts_with("KMS_DATA_KEY="), "{text}");
    assert!(text.contains(&format!("\nAWS_REGION={REGION}\n")), "{text}");

    let mut cmd = kms_env(&aws_env());
    cmd.args(["add", &file]).args(entries());
    let r = run(&mut cmd);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_no_plaintext(&r, &secrets());
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in secrets() {
        assert!(
            !text.contains(std::str::from_utf8(secret).unwrap()),
            "{text}"
        );
    }

    // --stdin: the value never touches argv; exactly what was piped, newline included.
    let r = run_with_stdin(
        kms_env(&aws_env()).args(["add", &file, "--stdin", "FROM_STDIN"]),
        b"piped secret value",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr());

    let shown = original_ok(&["show", &file]).stdout();
    for (k, v) in VALUES {
        assert!(
            shown.contains(&format!("\n{k}={v}\n")) || shown.ends_with(&format!("\n{k}={v}")),
            "{k} in {shown}"
        );
    }
    assert!(shown.contains("\nFROM_STDIN=piped secret value"), "{shown}");

    // add replaces in place; with no region configured, the file's AWS_REGION is used.
    let mut no_region = aws_env();
    no_region.remove(std::ffi::OsStr::new("AWS_REGION"));
    no_region.remove(std::ffi::OsStr::new("AWS_DEFAULT_REGION"));
    let r = run(kms_env(&no_region).args(["add", &file, "SPACES=replaced value"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let shown = original_ok(&["show", &file]).stdout();
    assert!(shown.contains("\nSPACES=replaced value\n"), "{shown}");
    assert_eq!(shown.matches("SPACES=").count(), 1);
    let r = run(kms_env(&no_region).args(["show", &file]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(r.stdout().contains("\nSPACES=replaced value\n"));
}

#[test]
fn legacy_create_cipher_values_decrypt() {
    let dir = tempfile::tempdir().unwrap();
    let file = new_file(&dir);
    original_ok(&["init", &file, key_id()]);
    original_ok(&["legacy", &file, "OLD=legacy p@ss 'w\"rd' $x", "OLD_EMPTY="]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("OLD=secure:") && !text.contains("OLD=secure:$"),
        "{text}"
    );
    let (r, dump) = exec_dump(&with_file_env(Path::new(&file)), &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("OLD").unwrap(), b"legacy p@ss 'w\"rd' $x");
    assert_eq!(dump.var("OLD_EMPTY").unwrap(), b"");
    assert_no_plaintext(&r, &[b"legacy p@ss"]);

    // Files of versions up to 0.2.0 said `KEY = VALUE`: show and add read them, add writes
    // `KEY=VALUE`.
    let old_style: String = text
        .lines()
        .map(|l| l.replacen('=', " = ", 1) + "\n")
        .collect();
    std::fs::write(&file, old_style).unwrap();
    let r = run(kms_env(&aws_env()).args(["show", &file]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(
        r.stdout().contains("\nOLD=legacy p@ss 'w\"rd' $x\n"),
        "{}",
        r.stdout()
    );
    let r = run(kms_env(&aws_env()).args(["add", &file, "NEW=new"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let rewritten = std::fs::read_to_string(&file).unwrap();
    assert!(!rewritten.contains(" = "), "{rewritten}");
    let shown = original_ok(&["show", &file]).stdout();
    assert!(shown.contains("OLD=legacy p@ss 'w\"rd' $x"), "{shown}");
    assert!(shown.contains("NEW=new"), "{shown}");
}

#[test]
fn init_on_a_file_with_values_rotates_the_data_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = original_file(&dir);
    original_ok(&["legacy", &file, "OLD=legacy value"]);
    let before = file_env(Path::new(&file));

    let r = run(kms_env(&aws_env()).args(["init", key_id(), &file]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let after = file_env(Path::new(&file));
    assert_eq!(after.len(), before.len());
    for ((k1, v1), (k2, v2)) in before.iter().zip(&after) {
        assert_eq!(k1, k2, "order kept");
        if k1 != "AWS_REGION" {
            assert_ne!(v1, v2, "{k1:?} re-encrypted");
        }
    }
    // The legacy value is rewritten in the current format.
    let old = &after.iter().find(|(k, _)| k == "OLD").unwrap().1;
    assert!(old.to_str().unwrap().contains('$'));
    // The original still reads everything.
    let shown = original_ok(&["show", &file]).stdout();
    for (k, v) in VALUES {
        assert!(shown.contains(&format!("{k}={v}")), "{k} in {shown}");
    }
    assert!(shown.contains("OLD=legacy value"), "{shown}");
}

#[test]
fn mapbox_and_shush_conventions() {
    let kms = cli_encrypt(b"mapbox-plaintext");
    let shush = cli_encrypt(b"shush-plaintext");
    let mut env = aws_env();
    env.insert(
        "MAPBOX".into(),
        format!("secure:{}", kms.strip_prefix("kms:").unwrap()).into(),
    );
    env.insert(
        "KMS_ENCRYPTED_DB_PASSWORD".into(),
        shush.strip_prefix("kms:").unwrap().into(),
    );
    env.insert("DB_PASSWORD".into(), "placeholder".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("MAPBOX").unwrap(), b"mapbox-plaintext");
    assert_eq!(dump.var("DB_PASSWORD").unwrap(), b"shush-plaintext");
    assert_eq!(dump.var("KMS_ENCRYPTED_DB_PASSWORD"), None);
    assert_no_plaintext(&r, &[b"mapbox-plaintext", b"shush-plaintext"]);

    let (r, dump) = exec_dump(&env, &["--keep-references"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(
        dump.var("KMS_ENCRYPTED_DB_PASSWORD").unwrap(),
        shush.strip_prefix("kms:").unwrap().as_bytes()
    );

    // A broken shush value is reported under the name the operator wrote.
    env.insert("KMS_ENCRYPTED_DB_PASSWORD".into(), "not base64!".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("KMS_ENCRYPTED_DB_PASSWORD"),
        "{}",
        r.stderr()
    );
}

/// Hostile values for `eval`.
const HOSTILE: &[(&str, &str)] = &[
    ("H_QUOTE", "it's"),
    ("H_DQUOTE", "say \"hi\""),
    ("H_NEWLINE", "line1\nline2\n"),
    (
        "H_SUBST",
        "$(touch /tmp/kms-env-pwned) `touch /tmp/kms-env-pwned2` ${HOME}",
    ),
    ("H_BACKSLASH", "a\\b\\\\c\\n"),
    ("H_BANG", "wow! !! !$"),
    ("H_UNICODE", "ünï 🔑"),
    ("H_ALL", "'\"'\"' $x\n\\ `y` !"),
];

#[test]
fn export_shell_evals_to_the_exact_bytes_in_sh_dash_and_bash() {
    let p = unique("export");
    put_parameter(&p, HOSTILE[2].1, "SecureString");
    let mut env = aws_env();
    for (k, v) in HOSTILE {
        env.insert((*k).into(), cli_encrypt(v.as_bytes()).into());
    }
    env.insert("H_FROM_SSM".into(), format!("ssm:{p}").into());
    env.insert("UNRELATED".into(), "not printed".into());
    let r = run(kms_env(&env).args(["export", "--format", "shell"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let script = r.stdout();
    assert!(
        !script.contains("UNRELATED"),
        "only resolved variables by default"
    );

    for shell in ["sh", "dash", "bash"] {
        let dump = Dump::new();
        // eval, then exec the dump application (argv-free) to capture the exact bytes.
        let program = format!(
            "eval \"$KMS_ENV_EXPORT\"; unset KMS_ENV_EXPORT; exec sh -c 'env -0 > \"$0\"' '{}/env'",
            dump.dir.path().display()
        );
        let out = Command::new(shell)
            .args(["-c", &program])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("KMS_ENV_EXPORT", &script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (k, v) in HOSTILE {
            assert_eq!(dump.var(k).unwrap(), v.as_bytes(), "{shell} {k}");
        }
        assert_eq!(dump.var("H_FROM_SSM").unwrap(), HOSTILE[2].1.as_bytes());
    }
    assert!(!Path::new("/tmp/kms-env-pwned").exists());
    assert!(!Path::new("/tmp/kms-env-pwned2").exists());
    let secrets: Vec<&[u8]> = HOSTILE.iter().map(|(_, v)| v.as_bytes()).collect();
    assert_no_plaintext(
        &Run {
            stdout: Vec::new(),
            ..r
        },
        &secrets,
    );
}

#[test]
fn export_json_is_exact_and_dotenv_refuses_what_it_cannot_hold() {
    let mut env = aws_env();
    for (k, v) in HOSTILE {
        env.insert((*k).into(), cli_encrypt(v.as_bytes()).into());
    }
    let r = run(kms_env(&env).args(["export", "--format", "json"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let parsed: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    for (k, v) in HOSTILE {
        assert_eq!(parsed[k], *v, "{k}");
    }
    assert_eq!(parsed.as_object().unwrap().len(), HOSTILE.len());

    let r = run(kms_env(&env).args(["export", "--format", "dotenv"]));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(r.stdout.is_empty(), "nothing printed on refusal");
    assert!(
        r.stderr().contains("H_NEWLINE") || r.stderr().contains("H_ALL"),
        "{}",
        r.stderr()
    );
    let secrets: Vec<&[u8]> = HOSTILE.iter().map(|(_, v)| v.as_bytes()).collect();
    assert_no_plaintext(&r, &secrets);

    let mut env = aws_env();
    env.insert("OK".into(), cli_encrypt(b"a 'b' \"c\" = $d").into());
    let r = run(kms_env(&env).args(["export", "--format", "dotenv", "--all"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(r.stdout().contains("\nOK=a 'b' \"c\" = $d\n") || r.stdout().starts_with("OK="));
    assert!(
        r.stdout().contains("AWS_REGION=us-east-1\n"),
        "--all prints plain ones too"
    );
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn failing_or_killed_add_and_init_leave_the_file_intact() {
    let dir = tempfile::tempdir().unwrap();
    let file = new_file(&dir);
    original_ok(&["init", &file, key_id()]);
    original_ok(&["add", &file, "A=first value"]);
    let before = snapshot(dir.path());

    // A data key KMS rejects (its last byte flipped).
    let text = std::fs::read_to_string(&file).unwrap();
    let encoded = text
        .lines()
        .next()
        .unwrap()
        .strip_prefix("KMS_DATA_KEY=")
        .unwrap();
    let mut blob = STANDARD.decode(encoded).unwrap();
    *blob.last_mut().unwrap() ^= 0x55;
    let broken = text.replacen(encoded, &STANDARD.encode(blob), 1);
    std::fs::write(&file, &broken).unwrap();
    let broken_snapshot = snapshot(dir.path());
    let r = run(kms_env(&aws_env()).args(["add", &file, "B=never written"]));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert_eq!(snapshot(dir.path()), broken_snapshot);
    let r = run(kms_env(&aws_env()).args(["init", key_id(), &file]));
    assert_ne!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(snapshot(dir.path()), broken_snapshot);
    std::fs::write(&file, &text).unwrap();
    assert_eq!(snapshot(dir.path()), before);

    // An unknown key for init.
    let r = run(kms_env(&aws_env()).args(["init", "alias/does-not-exist", &file]));
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert_eq!(snapshot(dir.path()), before);

    // A malformed line is an error naming the line.
    let bad = dir.path().join("bad.env");
    std::fs::write(&bad, "KMS_DATA_KEY=AQID\nnot a pair\n").unwrap();
    let r = run(kms_env(&aws_env()).args(["add", bad.to_str().unwrap(), "X=1"]));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(r.stderr().contains("line 2"), "{}", r.stderr());
    std::fs::remove_file(&bad).unwrap();

    // Killed while waiting for KMS.
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), black_hole().into());
    let child = kms_env(&env)
        .args(["add", &file, "B=killed"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait_with_output();
    assert_eq!(
        snapshot(dir.path()),
        before,
        "no change, no temporary file left"
    );
}

#[test]
fn migrate_moves_a_file_of_the_original_to_kms_values_without_printing_a_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let file = original_file(&dir);
    let before = std::fs::read(&file).unwrap();
    for extra in [&[][..], &["--bind-name"][..]] {
        let r = run(kms_env(&aws_env()).arg("migrate").arg(&file).args(extra));
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        assert_no_plaintext(&r, &secrets());
        let migrated = r.stdout();
        assert!(!migrated.contains("secure:"), "{migrated}");
        assert!(!migrated.contains("KMS_DATA_KEY"), "{migrated}");
        assert!(migrated.contains("SPACES=kms:"), "{migrated}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            before,
            "the file is not changed"
        );
        // The migrated file gives the application the same bytes.
        let out = dir.path().join("migrated.env");
        std::fs::write(&out, &migrated).unwrap();
        let (r, dump) = exec_dump(&with_file_env(&out), &[], &[]);
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        for (k, v) in VALUES {
            assert_eq!(dump.var(k).unwrap(), v.as_bytes(), "{k}");
        }
        assert_no_plaintext(&r, &secrets());
    }
}
