//! Fail closed: every failure is reported together, the application never starts, the exit
//! code follows README "Exit codes" and no plaintext is ever printed.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

fn corrupt(kms_value: &str) -> String {
    let mut blob = STANDARD
        .decode(kms_value.strip_prefix("kms:").unwrap())
        .unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0x55;
    blob[last / 2] ^= 0x55;
    format!("kms:{}", STANDARD.encode(blob))
}

#[test]
fn missing_parameter_is_66_and_the_app_is_not_started() {
    let mut env = aws_env();
    let missing = unique("missing");
    env.insert("API_TOKEN".into(), format!("ssm://{missing}").into());
    env.insert("OK".into(), cli_encrypt(b"fine-plaintext-66").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("API_TOKEN"), "{}", r.stderr());
    assert!(r.stderr().contains("not found"), "{}", r.stderr());
    assert!(
        r.stderr().contains(&missing),
        "names the parameter: {}",
        r.stderr()
    );
    assert!(r.stdout.is_empty());
    assert_no_plaintext(&r, &[b"fine-plaintext-66"]);
}

#[test]
fn bad_base64_is_65_and_the_message_does_not_repeat_the_value() {
    let mut env = aws_env();
    env.insert("DB_PASSWORD".into(), "kms:th1s-is not!base64".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr()
            .contains("DB_PASSWORD (kms): malformed reference"),
        "{}",
        r.stderr()
    );
    assert!(!r.stderr().contains("th1s-is"), "{}", r.stderr());
}

#[test]
fn corrupted_ciphertext_is_65() {
    let mut env = aws_env();
    env.insert(
        "BROKEN".into(),
        corrupt(&cli_encrypt(b"corrupted-plaintext")).into(),
    );
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("BROKEN (kms): bad ciphertext"),
        "{}",
        r.stderr()
    );
    assert_no_plaintext(&r, &[b"corrupted-plaintext"]);
}

#[test]
fn several_failures_are_reported_together_and_the_first_by_name_sets_the_code() {
    let good = unique("good");
    put_parameter(&good, "good-plaintext-multi", "SecureString");
    let mut env = aws_env();
    env.insert("Z_MISSING".into(), format!("ssm:{}", unique("gone")).into());
    env.insert("M_BAD_B64".into(), "kms:%%%".into());
    env.insert(
        "B_CORRUPT".into(),
        corrupt(&cli_encrypt(b"multi-plaintext")).into(),
    );
    env.insert("Q_BAD_NAME".into(), "ssm:/has space".into());
    env.insert("GOOD".into(), format!("ssm:{good}").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert!(!dump.started());
    let err = r.stderr();
    assert!(err.contains("4 variables could not be resolved"), "{err}");
    for name in ["Z_MISSING", "M_BAD_B64", "B_CORRUPT", "Q_BAD_NAME"] {
        assert!(
            err.contains(&format!("  {name} (")),
            "{name} missing from: {err}"
        );
    }
    assert!(!err.contains("  GOOD ("), "{err}");
    // B_CORRUPT sorts first: bad ciphertext.
    assert_eq!(r.code, Some(65), "{err}");
    assert_no_plaintext(&r, &[b"good-plaintext-multi", b"multi-plaintext"]);
}

#[test]
fn nul_in_a_plaintext_is_65_never_truncated() {
    let mut env = aws_env();
    env.insert(
        "WITH_NUL".into(),
        cli_encrypt(b"before\0after-nul-plaintext").into(),
    );
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("WITH_NUL") && r.stderr().contains("NUL"),
        "{}",
        r.stderr()
    );
    assert_no_plaintext(&r, &[b"before", b"after-nul-plaintext"]);
}

#[test]
fn no_region_is_78() {
    let mut env = aws_env();
    env.remove(std::ffi::OsStr::new("AWS_REGION"));
    env.remove(std::ffi::OsStr::new("AWS_DEFAULT_REGION"));
    env.insert("S".into(), cli_encrypt(b"no-region-plaintext").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(78), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("region"), "{}", r.stderr());

    // --region fixes it.
    let (r, dump) = exec_dump(&env, &["--region", REGION], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("S").unwrap(), b"no-region-plaintext");
    assert_no_plaintext(&r, &[b"no-region-plaintext"]);
}

#[test]
fn verbose_diagnostics_never_show_a_plaintext() {
    let p = unique("verbose");
    put_parameter(&p, "verbose-ssm-plaintext", "SecureString");
    let mut env = aws_env();
    env.insert("K".into(), cli_encrypt(b"verbose-kms-plaintext").into());
    env.insert("P".into(), format!("ssm:{p}").into());
    let (r, dump) = exec_dump(&env, &["-vvv"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(dump.started());
    assert!(r.stderr().contains("resolved in"), "{}", r.stderr());
    assert!(
        r.stderr().contains("DEBUG"),
        "the SDK's log is on: {}",
        r.stderr()
    );
    assert_no_plaintext(&r, &[b"verbose-kms-plaintext", b"verbose-ssm-plaintext"]);
}
