//! Parameter Store forms (SecureString, String, version, label, ARN), exact bytes and scale.

use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;

#[test]
fn pinned_versions_labels_and_arns() {
    let name = unique("versions");
    put_parameter(&name, "version-one-plaintext", "SecureString");
    put_parameter(&name, "version-two-plaintext", "SecureString");
    aws(&[
        "ssm",
        "label-parameter-version",
        "--name",
        &name,
        "--parameter-version",
        "1",
        "--labels",
        "stable",
    ]);
    let arn = format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}");
    let mut env = aws_env();
    env.insert("LATEST".into(), format!("ssm://{name}").into());
    env.insert("V1".into(), format!("ssm:{name}:1").into());
    env.insert("V2".into(), format!("ssm://{name}:2").into());
    env.insert("LABEL".into(), format!("ssm:{name}:stable").into());
    env.insert("BY_ARN".into(), format!("ssm:{arn}").into());
    env.insert("BY_ARN_V1".into(), format!("ssm:{arn}:1").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("LATEST").unwrap(), b"version-two-plaintext");
    assert_eq!(dump.var("V1").unwrap(), b"version-one-plaintext");
    assert_eq!(dump.var("V2").unwrap(), b"version-two-plaintext");
    assert_eq!(dump.var("LABEL").unwrap(), b"version-one-plaintext");
    assert_eq!(dump.var("BY_ARN").unwrap(), b"version-two-plaintext");
    assert_eq!(dump.var("BY_ARN_V1").unwrap(), b"version-one-plaintext");
    assert_no_plaintext(&r, &[b"version-one-plaintext", b"version-two-plaintext"]);

    // A version or label that does not exist is "not found".
    let mut env = aws_env();
    env.insert("V9".into(), format!("ssm:{name}:9").into());
    env.insert("NOLABEL".into(), format!("ssm:{name}:nolabel").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("NOLABEL") && r.stderr().contains("V9"),
        "{}",
        r.stderr()
    );
}

#[test]
fn an_arn_reference_calls_the_arn_region() {
    // The parameter lives in eu-west-1 only; the configured region is us-east-1.
    let name = unique("eu");
    let mut env = aws_env();
    env.insert("AWS_DEFAULT_REGION".into(), "eu-west-1".into());
    let out = std::process::Command::new(venv().join("bin/aws"))
        .args([
            "ssm",
            "put-parameter",
            "--type",
            "SecureString",
            "--name",
            &name,
        ])
        .args(["--value", "eu-west-1-plaintext"])
        .env_clear()
        .envs(&env)
        .output()
        .unwrap();
    assert!(out.status.success());

    let mut env = aws_env();
    env.insert(
        "EU".into(),
        format!("ssm:arn:aws:ssm:eu-west-1:{ACCOUNT}:parameter{name}").into(),
    );
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("EU").unwrap(), b"eu-west-1-plaintext");

    // By plain name it is not in us-east-1.
    let mut env = aws_env();
    env.insert("EU".into(), format!("ssm:{name}").into());
    let (r, _) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(66), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"eu-west-1-plaintext"]);
}

/// Newline, both quotes, `$`, backslash, `=`, backticks, non-ASCII: exact bytes.
const HOSTILE: &str = "pa$$ w=rd\n'single' \"double\" `tick` \\back\\slash\n= ünï 🔑 $(id)";

#[test]
fn hostile_plaintexts_arrive_byte_for_byte() {
    let p = unique("hostile");
    put_parameter(&p, HOSTILE, "SecureString");
    let mut env = aws_env();
    env.insert("FROM_KMS".into(), cli_encrypt(HOSTILE.as_bytes()).into());
    env.insert("FROM_SSM".into(), format!("ssm:{p}").into());
    let non_utf8 = b"bytes \xff\xfe\x01 not utf-8".to_vec();
    env.insert("FROM_KMS_BYTES".into(), cli_encrypt(&non_utf8).into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("FROM_KMS").unwrap(), HOSTILE.as_bytes());
    assert_eq!(dump.var("FROM_SSM").unwrap(), HOSTILE.as_bytes());
    assert_eq!(dump.var("FROM_KMS_BYTES").unwrap(), non_utf8);
    assert_no_plaintext(&r, &[HOSTILE.as_bytes(), &non_utf8, b"pa$$ w=r"]);
}

#[test]
fn a_hundred_variables_mixing_kms_and_ssm() {
    let plaintexts: Vec<String> = (0..50)
        .map(|i| format!("scale-kms-plaintext-{i:03}"))
        .collect();
    let base = unique("scale");
    let parameters: Vec<(String, String, &str)> = (0..50)
        .map(|i| {
            let kind = if i % 2 == 0 { "SecureString" } else { "String" };
            (
                format!("{base}/p{i:03}"),
                format!("scale-ssm-plaintext-{i:03}"),
                kind,
            )
        })
        .collect();
    let ciphertexts = seed(&plaintexts, &parameters);

    let mut env: BTreeMap<OsString, OsString> = aws_env();
    for (i, ct) in ciphertexts.iter().enumerate() {
        env.insert(format!("KMS_{i:03}").into(), ct.into());
    }
    for (i, (name, _, _)) in parameters.iter().enumerate() {
        env.insert(format!("SSM_{i:03}").into(), format!("ssm:{name}").into());
    }
    let (r, dump) = exec_dump(&env, &["-v"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    // 50 distinct names in batches of 10.
    assert!(
        r.stderr()
            .contains("50 KMS ciphertexts and 50 SSM parameters in 5 GetParameters calls"),
        "{}",
        r.stderr()
    );
    for i in 0..50 {
        assert_eq!(
            dump.var(&format!("KMS_{i:03}")).unwrap(),
            plaintexts[i].as_bytes()
        );
        assert_eq!(
            dump.var(&format!("SSM_{i:03}")).unwrap(),
            parameters[i].1.as_bytes()
        );
    }
    let secrets: Vec<&[u8]> = plaintexts
        .iter()
        .map(String::as_bytes)
        .chain(parameters.iter().map(|p| p.1.as_bytes()))
        .collect();
    assert_no_plaintext(&r, &secrets);
}

#[test]
fn decrypt_requests_are_signed_and_authorised_as_aws_checks_them() {
    // moto checks each request's SigV4 signature against the user's secret key, then the
    // user's policy: kms-env's own Decrypt request (not the SDK's) must pass both, and a wrong
    // secret key must not. (moto denies IAM users in regions other than its default one
    // whatever the client, so the ARN-region routing is tested without IAM, elsewhere.)
    let iam = IamMoto::start();
    let mut encrypted = Vec::new();
    for context in ["app=web", "app=api"] {
        let r = run_with_stdin(
            kms_env(&iam.admin).args(["encrypt", "--key-id", &iam.key(), "--context", context]),
            format!("signed-{context}").as_bytes(),
        );
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        encrypted.push(r.stdout().trim().to_owned());
    }
    let decrypter = iam.user("decrypter", "kms:Decrypt");
    let other = iam.user("other", "ssm:GetParameters");
    let mut forged = decrypter.clone();
    forged.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        "not-the-secret-key-of-this-access-key".into(),
    );
    iam.enforce();

    let plaintexts: &[&[u8]] = &[b"signed-app=web", b"signed-app=api"];
    for (env, code) in [(decrypter, 0), (other, 77), (forged, 77)] {
        let mut env = env;
        env.insert("WEB".into(), encrypted[0].clone().into());
        env.insert("API".into(), encrypted[1].clone().into());
        env.insert("KMS_ENV_CONTEXT".into(), "app=web".into());
        let (r, dump) = exec_dump(&env, &[], &[]);
        if code == 0 {
            // The context is signed too: the right one decrypts, the other is refused (65).
            assert_eq!(r.code, Some(65), "{}", r.stderr());
            assert!(r.stderr().contains("API (kms): "), "{}", r.stderr());
            assert!(!r.stderr().contains("WEB (kms)"), "{}", r.stderr());
            env.remove(&OsString::from("API"));
            let (r, dump) = exec_dump(&env, &[], &[]);
            assert_eq!(r.code, Some(0), "{}", r.stderr());
            assert_eq!(dump.var("WEB").unwrap(), plaintexts[0]);
            assert_no_plaintext(&r, plaintexts);
        } else {
            assert_eq!(r.code, Some(code), "{}", r.stderr());
            assert!(
                r.stderr().contains("WEB (kms): access denied"),
                "{}",
                r.stderr()
            );
        }
        assert!(!dump.started());
        assert_no_plaintext(&r, plaintexts);
    }
}

#[test]
fn a_decrypt_request_is_aws_json_signed_for_kms_in_the_region() {
    // The request as it goes on the wire, against a server that checks its head and answers as
    // KMS does: AWS JSON 1.1 with the operation in X-Amz-Target, SigV4 for kms in the region,
    // kms-env's own User-Agent (what CloudTrail shows), the session token when there is one.
    let kms = http_server("", |_| {
        Reply::ok(
            r#"{"KeyId":"arn:aws:kms:eu-central-1:123456789012:key/k","Plaintext":"d2lyZS1wbGFpbnRleHQ=","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}"#
                .to_owned(),
        )
    });
    let mut env = aws_env();
    env.insert("AWS_REGION".into(), "eu-central-1".into());
    env.insert("AWS_ENDPOINT_URL_KMS".into(), kms.url.clone().into());
    env.insert("AWS_SESSION_TOKEN".into(), "session-token-value".into());
    env.insert("K".into(), "kms:AQIDBA==".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"wire-plaintext");
    let heads = kms.requests.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    let head = &heads[0];
    assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
    assert!(
        has_header(head, "content-type", "application/x-amz-json-1.1"),
        "{head}"
    );
    assert!(
        has_header(head, "x-amz-target", "TrentService.Decrypt"),
        "{head}"
    );
    assert!(
        has_header(
            head,
            "user-agent",
            concat!("kms-env/", env!("CARGO_PKG_VERSION"))
        ),
        "{head}"
    );
    assert!(
        has_header(head, "x-amz-security-token", "session-token-value"),
        "{head}"
    );
    let authorization = head
        .lines()
        .find_map(|l| l.strip_prefix("authorization: "))
        .unwrap_or_else(|| panic!("no authorization: {head}"));
    assert!(
        authorization.starts_with("AWS4-HMAC-SHA256 Credential=testing/")
            && authorization.contains("/eu-central-1/kms/aws4_request, SignedHeaders=")
            && authorization.contains("x-amz-security-token")
            && authorization.contains("x-amz-target"),
        "{authorization}"
    );
    assert_no_plaintext(&r, &[b"wire-plaintext"]);
}
