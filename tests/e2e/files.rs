//! `*_FILE` delivery: the plaintext of a `*_FILE` reference goes to a 0400 file in a fresh 0700
//! directory, the variable holds its path, nothing is left behind on failure, and `--init`
//! removes the directory when the application exits.

use crate::common::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The `kms-env.*` directories inside `dir`.
fn runs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("kms-env.")
        })
        .collect()
}

#[test]
fn every_kind_goes_to_a_0400_file_with_the_exact_bytes() {
    let p = unique("file-ssm");
    put_parameter(&p, "ssm-file-value\n", "SecureString");
    let binary_name = secret_name("file-bin");
    let der: &[u8] = &[0x30, 0x82, 0x00, 0x00, 0x02, 0x01, 0x00, 0xff, b'\n'];
    create_binary_secret(&binary_name, der);
    let files = tempfile::tempdir().unwrap();
    let mut env = aws_env();
    env.insert("KEY_FILE".into(), cli_encrypt(b"kms-file-value").into());
    env.insert("PARAM_FILE".into(), format!("ssm:{p}").into());
    env.insert("DER_FILE".into(), format!("sm:{binary_name}").into());
    env.insert(
        "URL_FILE".into(),
        format!("tmpl:x={{{{ ssm:{p} | base64 }}}}").into(),
    );
    env.insert("PLAIN_FILE".into(), "/etc/hostname".into());
    // mapbox's secure:<base64> (no KMS_DATA_KEY) and a kms:v1: value bound to its variable.
    let mapbox = cli_encrypt(b"secure-file-value").replacen("kms:", "secure:", 1);
    env.insert("SECURE_FILE".into(), mapbox.into());
    let bound = run_with_stdin(
        kms_env(&aws_env()).args(["encrypt", "--key-id", key_id(), "--bind-name", "V1_FILE"]),
        b"v1-file-value",
    );
    assert_eq!(bound.code, Some(0), "{}", bound.stderr());
    env.insert("V1_FILE".into(), bound.stdout().trim().into());
    let (r, dump) = exec_dump(&env, &["--files-dir", files.path().to_str().unwrap()], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let dirs = runs(files.path());
    assert_eq!(dirs.len(), 1, "one fresh directory per run");
    assert_eq!(mode(&dirs[0]), 0o700);
    let want: &[(&str, &[u8])] = &[
        ("KEY", b"kms-file-value"),
        ("PARAM", b"ssm-file-value\n"),
        ("DER", der),
        ("URL", b"x=c3NtLWZpbGUtdmFsdWUK"),
        ("SECURE", b"secure-file-value"),
        ("V1", b"v1-file-value"),
    ];
    for (stem, bytes) in want {
        let path =
            PathBuf::from(String::from_utf8(dump.var(&format!("{stem}_FILE")).unwrap()).unwrap());
        assert!(path.is_absolute(), "{path:?}");
        assert_eq!(path, dirs[0].join(stem));
        assert_eq!(std::fs::read(&path).unwrap(), *bytes, "{stem}");
        assert_eq!(mode(&path), 0o400, "{stem}");
        assert_eq!(dump.var(stem), None, "no {stem} without _FILE");
    }
    assert_eq!(
        dump.var("PLAIN_FILE").unwrap(),
        b"/etc/hostname",
        "plain values stay"
    );
    assert_no_plaintext(
        &r,
        &[
            b"kms-file-value",
            b"ssm-file-value",
            b"secure-file-value",
            b"v1-file-value",
        ],
    );
}

#[test]
fn the_default_directory_is_dev_shm_and_owner_can_be_set() {
    let mut env = aws_env();
    env.insert("A_FILE".into(), cli_encrypt(b"shm-file-value").into());
    env.insert("KMS_ENV_FILES_OWNER".into(), "65534:65534".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let path = PathBuf::from(String::from_utf8(dump.var("A_FILE").unwrap()).unwrap());
    let dir = path.parent().unwrap().to_owned();
    assert_eq!(dir.parent().unwrap(), Path::new("/dev/shm"), "{path:?}");
    assert_eq!(std::fs::read(&path).unwrap(), b"shm-file-value");
    let (m, d) = (
        std::fs::metadata(&path).unwrap(),
        std::fs::metadata(&dir).unwrap(),
    );
    assert_eq!(
        (m.uid(), m.gid(), d.uid(), d.gid()),
        (65534, 65534, 65534, 65534)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failure_in_one_of_five_references_leaves_no_file_behind() {
    let files = tempfile::tempdir().unwrap();
    let mut env = aws_env();
    for i in 0..4 {
        env.insert(
            format!("S{i}_FILE").into(),
            cli_encrypt(format!("five-value-{i}").as_bytes()).into(),
        );
    }
    env.insert(
        "S4_FILE".into(),
        format!("ssm:{}", unique("file-gone")).into(),
    );
    let (r, dump) = exec_dump(&env, &["--files-dir", files.path().to_str().unwrap()], &[]);
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert!(!dump.started());
    assert!(runs(files.path()).is_empty());
    // A command that cannot run: the files are removed too.
    env.remove(std::ffi::OsStr::new("S4_FILE"));
    let r = run(kms_env(&env)
        .args(["exec", "--files-dir", files.path().to_str().unwrap(), "--"])
        .arg("/nonexistent/app"));
    assert_eq!(r.code, Some(127), "{}", r.stderr());
    assert!(runs(files.path()).is_empty());
    assert_no_plaintext(&r, &[b"five-value-"]);
}

#[test]
fn with_init_the_directory_goes_when_the_application_exits_or_is_killed() {
    let files = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let copy = out.path().join("copy");
    let mut env = aws_env();
    env.insert("A_FILE".into(), cli_encrypt(b"init-file-value").into());
    for (script, code) in [
        (format!("cat \"$A_FILE\" > '{}'; exit 3", copy.display()), 3),
        (
            format!("cat \"$A_FILE\" > '{}'; kill -TERM $$", copy.display()),
            143,
        ),
    ] {
        let r = run(kms_env(&env)
            .args([
                "exec",
                "--init",
                "--files-dir",
                files.path().to_str().unwrap(),
            ])
            .args(["--", "sh", "-c", &script]));
        assert_eq!(r.code, Some(code), "{}", r.stderr());
        assert_eq!(
            std::fs::read(&copy).unwrap(),
            b"init-file-value",
            "it was there"
        );
        assert!(runs(files.path()).is_empty(), "and it is gone");
    }
}
