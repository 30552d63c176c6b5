//! `encrypt` and `decrypt` against the AWS CLI, in both directions.

use crate::common::*;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

fn ours_encrypt(stdin: &[u8], extra: &[&str]) -> Run {
    run_with_stdin(
        kms_env(&aws_env())
            .args(["encrypt", "--key-id", key_id()])
            .args(extra),
        stdin,
    )
}

/// Decrypts a `kms:` value with `aws kms decrypt` and returns the plaintext bytes.
fn cli_decrypt(value: &str) -> Vec<u8> {
    let blob = STANDARD
        .decode(value.trim().strip_prefix("kms:").unwrap())
        .unwrap();
    let b64 = aws_kms_blob("decrypt", "--ciphertext-blob", &blob, "Plaintext", &[]);
    STANDARD.decode(b64).unwrap()
}

#[test]
fn our_encrypt_output_decrypts_with_the_aws_cli_exactly() {
    let plaintext = "line one\nquote ' \" $x `y` \\ = ünïcödé 🔑\n".as_bytes();
    let r = ours_encrypt(plaintext, &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let out = r.stdout();
    assert!(out.starts_with("kms:") && out.ends_with('\n'), "{out}");
    assert_eq!(
        cli_decrypt(&out),
        plaintext,
        "stdin is read exactly, newline kept"
    );
    assert!(
        r.stderr().contains("whitespace"),
        "warns about the trailing newline"
    );
    assert_no_plaintext(&r, &[b"line one", "ünïcödé".as_bytes()]);
}

#[test]
fn trim_removes_trailing_whitespace_and_an_argument_is_taken_as_is() {
    let r = ours_encrypt(b"trimmed-secret \n\n", &["--trim"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(cli_decrypt(&r.stdout()), b"trimmed-secret");
    assert!(r.stderr.is_empty(), "{}", r.stderr());

    let r = run(kms_env(&aws_env()).args(["encrypt", "--key-id", key_id(), "arg secret"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(cli_decrypt(&r.stdout()), b"arg secret");
    assert_no_plaintext(&r, &[b"arg secret"]);
}

#[test]
fn key_id_comes_from_kms_env_key_id_too() {
    let mut env = aws_env();
    env.insert("KMS_ENV_KEY_ID".into(), key_id().into());
    let r = run(kms_env(&env).args(["encrypt", "from-env-key"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(cli_decrypt(&r.stdout()), b"from-env-key");
}

#[test]
fn encrypt_refuses_what_could_never_be_an_env_value() {
    let r = ours_encrypt(b"a\0b-nul-secret", &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(r.stdout.is_empty());
    let r = ours_encrypt(&[b'x'; 200 * 1024], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(r.stderr().contains("128 KiB"), "{}", r.stderr());
    let r = ours_encrypt(b"", &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"b-nul-secret"]);
}

#[test]
fn encrypt_with_an_unknown_key_is_66() {
    let r = run(kms_env(&aws_env()).args([
        "encrypt",
        "--key-id",
        "00000000-0000-0000-0000-000000000000",
        "unknown-key-secret",
    ]));
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"unknown-key-secret"]);
}

#[test]
fn decrypt_reads_cli_ciphertexts_in_every_spelling_and_ssm_references() {
    let value = cli_encrypt(b"decrypt-me\n");
    let raw = value.strip_prefix("kms:").unwrap().to_owned();
    let url_safe = format!(
        "kms:{}",
        URL_SAFE_NO_PAD.encode(STANDARD.decode(&raw).unwrap())
    );
    for input in [value.as_str(), raw.as_str(), url_safe.as_str()] {
        let r = run(kms_env(&aws_env()).args(["decrypt", input]));
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        assert_eq!(r.stdout, b"decrypt-me\n", "exact bytes, nothing added");
        assert!(r.stderr.is_empty());
    }

    // From stdin, with the newline `echo` adds.
    let r = run_with_stdin(
        kms_env(&aws_env()).arg("decrypt"),
        format!("{value}\n").as_bytes(),
    );
    assert_eq!(r.stdout, b"decrypt-me\n");

    let p = unique("decrypt");
    put_parameter(&p, "from-parameter-store", "SecureString");
    let r = run(kms_env(&aws_env()).args(["decrypt", &format!("ssm://{p}")]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(r.stdout, b"from-parameter-store");
}

#[test]
fn decrypt_failures_use_the_exit_codes() {
    let r = run(kms_env(&aws_env()).args(["decrypt", "kms:!!!"]));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    let r = run(kms_env(&aws_env()).args(["decrypt", &format!("ssm:{}", unique("nope"))]));
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert!(r.stderr().contains("not found"), "{}", r.stderr());
}

#[test]
fn usage_errors_are_2() {
    let r = run(kms_env(&aws_env()).arg("exec"));
    assert_eq!(r.code, Some(2));
    let r = run(kms_env(&aws_env()).args(["encrypt", "x"]));
    assert_eq!(r.code, Some(2), "no key id");
    let r = run(kms_env(&aws_env()).args(["exec", "--timeout", "soon", "--", "true"]));
    assert_eq!(r.code, Some(2));
}
