//! CI encoding: batch `encrypt --env-file`, encryption context and name binding, values over
//! KMS's 4 KiB, the 128 KiB limit, and the `check` preflight with its IAM policy.

use crate::common::proxy;
use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;

fn encrypt_stdin(env: &BTreeMap<OsString, OsString>, args: &[&str], stdin: &[u8]) -> Run {
    run_with_stdin(
        kms_env(env)
            .args(["encrypt", "--key-id", key_id()])
            .args(args),
        stdin,
    )
}

/// `encrypt --env-file FILE --format ecs --skip LOG_LEVEL`.
fn encode_ecs(file: &std::path::Path) -> Run {
    run(kms_env(&aws_env()).args([
        "encrypt",
        "--key-id",
        key_id(),
        "--env-file",
        file.to_str().unwrap(),
        "--format",
        "ecs",
        "--skip",
        "LOG_LEVEL",
    ]))
}

const DOTENV: &str = r#"# application settings
export LOG_LEVEL=info
DB_PASSWORD='p@ss "w0rd" $HOME # not a comment'
API_TOKEN="tok\nline2 \"quoted\" \$x"
SPACED = hello world   # a comment
# A well-formed reference (one that does not parse is refused, see hardening.rs).
ALREADY=kms:AQICAHhexisting=
FROM_SSM=ssm:///prod/app/token
OTHER=other-secret-value
"#;

fn plaintexts() -> Vec<(&'static str, &'static str)> {
    vec![
        ("LOG_LEVEL", "info"),
        ("DB_PASSWORD", "p@ss \"w0rd\" $HOME # not a comment"),
        ("API_TOKEN", "tok\nline2 \"quoted\" $x"),
        ("SPACED", "hello world"),
        ("OTHER", "other-secret-value"),
    ]
}

#[test]
fn a_dotenv_file_becomes_ecs_json_that_the_shim_resolves_and_rerunning_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, DOTENV).unwrap();
    let r = encode_ecs(&file);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let secrets: Vec<&[u8]> = plaintexts()[1..]
        .iter()
        .map(|(_, v)| v.as_bytes())
        .collect();
    assert_no_plaintext(
        &Run {
            stdout: Vec::new(),
            stderr: r.stderr.clone(),
            ..r
        },
        &secrets,
    );
    let ecs: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let items = ecs.as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "LOG_LEVEL",
            "DB_PASSWORD",
            "API_TOKEN",
            "SPACED",
            "ALREADY",
            "FROM_SSM",
            "OTHER"
        ],
        "input order"
    );
    let value = |n: &str| {
        items.iter().find(|i| i["name"] == n).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(value("LOG_LEVEL"), "info", "--skip leaves it plain");
    assert_eq!(
        value("ALREADY"),
        "kms:AQICAHhexisting=",
        "references are left alone"
    );
    assert_eq!(value("FROM_SSM"), "ssm:///prod/app/token");
    for (name, _) in &plaintexts()[1..] {
        assert!(value(name).starts_with("kms:"), "{name}");
    }
    for secret in &secrets {
        assert!(!r.stdout().contains(std::str::from_utf8(secret).unwrap()));
    }

    // The shim started with those variables gives the app the original plaintexts.
    let mut env = aws_env();
    for (name, _) in plaintexts() {
        env.insert(name.into(), value(name).into());
    }
    let (r2, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r2.code, Some(0), "{}", r2.stderr());
    for (name, plain) in plaintexts() {
        assert_eq!(dump.var(name).unwrap(), plain.as_bytes(), "{name}");
    }
    assert_no_plaintext(&r2, &secrets);

    // Re-running on the output changes nothing.
    let mut again = String::new();
    for item in items {
        again.push_str(&format!(
            "{}={}\n",
            item["name"].as_str().unwrap(),
            item["value"].as_str().unwrap()
        ));
    }
    std::fs::write(&file, &again).unwrap();
    let r3 = encode_ecs(&file);
    assert_eq!(r3.code, Some(0), "{}", r3.stderr());
    assert_eq!(r3.stdout, r.stdout, "idempotent");
}

#[test]
fn dotenv_and_json_outputs_and_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, DOTENV).unwrap();
    let base = [
        "encrypt",
        "--key-id",
        key_id(),
        "--env-file",
        file.to_str().unwrap(),
    ];
    let r = run(kms_env(&aws_env())
        .args(base)
        .args(["--only", "DB_PASSWORD,SPACED"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let out = r.stdout();
    assert!(out.contains("LOG_LEVEL=info\n"), "{out}");
    assert!(out.contains("DB_PASSWORD=kms:"), "{out}");
    assert!(out.contains("SPACED=kms:"), "{out}");
    assert!(
        out.contains("API_TOKEN=\"tok\\nline2 \\\"quoted\\\" \\$x\"\n"),
        "not selected: {out}"
    );

    let r = run(kms_env(&aws_env()).args(base).args(["--format", "json"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let obj: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert!(obj["LOG_LEVEL"].as_str().unwrap().starts_with("kms:"));
    assert_eq!(obj.as_object().unwrap().len(), 7);

    let r = run(kms_env(&aws_env()).args(base).args(["--only", "NOPE"]));
    assert_eq!(r.code, Some(2), "{}", r.stderr());
}

#[test]
fn context_and_name_binding() {
    let env = aws_env();
    // --context: needed to decrypt, wrong context fails with 65.
    let r = encrypt_stdin(
        &env,
        &["--context", "app=web", "--context", "stage=prod"],
        b"ctx-secret",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let value = r.stdout().trim().to_owned();
    let mut with = env.clone();
    with.insert("KMS_ENV_CONTEXT".into(), "app=web,stage=prod".into());
    with.insert("S".into(), value.clone().into());
    let (r, dump) = exec_dump(&with, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("S").unwrap(), b"ctx-secret");
    let mut without = env.clone();
    without.insert("S".into(), value.into());
    let (r, dump) = exec_dump(&without, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());

    // --bind-name: the value carries the binding; exec needs no configuration.
    let r = encrypt_stdin(&env, &["--bind-name", "DB_PASSWORD"], b"bound-secret");
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let bound = r.stdout().trim().to_owned();
    assert!(bound.starts_with("kms:v1:"), "{bound}");
    let mut right = env.clone();
    right.insert("DB_PASSWORD".into(), bound.clone().into());
    let (r, dump) = exec_dump(&right, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("DB_PASSWORD").unwrap(), b"bound-secret");
    assert_no_plaintext(&r, &[b"bound-secret"]);

    // Copied into another variable: 65, the message names the variable and the context.
    let mut copied = env.clone();
    copied.insert("OTHER_VAR".into(), bound.clone().into());
    let (r, dump) = exec_dump(&copied, &[], &[]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("OTHER_VAR"), "{}", r.stderr());
    assert!(
        r.stderr().contains("encryption context did not match"),
        "{}",
        r.stderr()
    );
    assert_no_plaintext(&r, &[b"bound-secret"]);

    // decrypt --name reads a bound value.
    let r = run(kms_env(&env).args(["decrypt", "--name", "DB_PASSWORD", &bound]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(r.stdout, b"bound-secret");
    let r = run(kms_env(&env).args(["decrypt", &bound]));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
}

#[test]
fn large_values_use_an_authenticated_envelope() {
    let env = aws_env();
    let pem: Vec<u8> = (0..20 * 1024)
        .map(|i| b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/\n"[i % 39])
        .collect();
    for bind in [false, true] {
        let args: &[&str] = if bind {
            &["--bind-name", "TLS_BUNDLE"]
        } else {
            &[]
        };
        let r = encrypt_stdin(&env, args, &pem);
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        let value = r.stdout().trim().to_owned();
        assert!(value.starts_with("kms:v1:"));
        let mut run_env = env.clone();
        run_env.insert("TLS_BUNDLE".into(), value.clone().into());
        let (r, dump) = exec_dump(&run_env, &[], &[]);
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        assert_eq!(dump.var("TLS_BUNDLE").unwrap(), pem);
        assert_no_plaintext(&r, &[&pem[..64]]);

        let mut args = vec!["decrypt"];
        if bind {
            args.extend(["--name", "TLS_BUNDLE"]);
        }
        args.push(&value);
        let r = run(kms_env(&env).args(&args));
        assert_eq!(r.code, Some(0), "{}", r.stderr());
        assert_eq!(r.stdout, pem);

        if bind {
            let mut moved = env.clone();
            moved.insert("ELSEWHERE".into(), value.into());
            let (r, dump) = exec_dump(&moved, &[], &[]);
            assert_eq!(r.code, Some(65), "{}", r.stderr());
            assert!(!dump.started());
            assert!(r.stderr().contains("ELSEWHERE"), "{}", r.stderr());
        }
    }
    // 200 KiB cannot fit in one environment string.
    let r = encrypt_stdin(&env, &[], &vec![b'y'; 200 * 1024]);
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert!(r.stderr().contains("128 KiB"), "{}", r.stderr());
    assert!(r.stdout.is_empty());
}

#[test]
fn check_reports_without_values_and_exits_with_the_taxonomy() {
    let p = unique("check");
    put_parameter(&p, "check-ssm-plaintext", "SecureString");
    put_parameter(&p, "check-ssm-plaintext-2", "SecureString");
    let good = cli_encrypt(b"check-kms-plaintext");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("check.env");
    std::fs::write(
        &file,
        format!("GOOD_KMS={good}\nGOOD_SSM=ssm:{p}:1\nPLAIN=x\n"),
    )
    .unwrap();
    let r = run(kms_env(&aws_env()).args(["check", "--env-file", file.to_str().unwrap()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let table = r.stdout();
    assert!(table.starts_with("VARIABLE"), "{table}");
    let kms_line = table.lines().find(|l| l.starts_with("GOOD_KMS")).unwrap();
    assert!(
        kms_line.contains(&format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{}", key_id())),
        "{kms_line}"
    );
    assert!(kms_line.ends_with("ok"));
    let ssm_line = table.lines().find(|l| l.starts_with("GOOD_SSM")).unwrap();
    assert!(ssm_line.contains(&format!("parameter{p}")), "{ssm_line}");
    assert!(ssm_line.contains("  1  "), "version: {ssm_line}");
    assert!(!table.contains("PLAIN"));
    assert_no_plaintext(&r, &[b"check-kms-plaintext", b"check-ssm-plaintext"]);

    // The IAM policy names exactly the key and parameter ARNs.
    let r = run(kms_env(&aws_env()).args([
        "check",
        "--iam-policy",
        "--env-file",
        file.to_str().unwrap(),
    ]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let policy: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(policy["Version"], "2012-10-17");
    let st = policy["Statement"].as_array().unwrap();
    assert_eq!(st.len(), 2, "{policy}");
    assert_eq!(st[0]["Action"], "kms:Decrypt");
    assert_eq!(
        st[0]["Resource"],
        serde_json::json!([format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/{}", key_id())])
    );
    assert_eq!(st[1]["Action"], "ssm:GetParameters");
    assert_eq!(
        st[1]["Resource"],
        serde_json::json!([format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{p}")])
    );

    // From the environment, with a missing parameter and a bad ciphertext.
    let mut env = aws_env();
    env.insert("GOOD_KMS".into(), good.into());
    env.insert(
        "A_MISSING".into(),
        format!("ssm:{}", unique("absent")).into(),
    );
    env.insert("B_BAD".into(), "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into());
    let r = run(kms_env(&env).arg("check"));
    assert_eq!(r.code, Some(66), "A_MISSING sorts first: {}", r.stderr());
    assert!(
        r.stdout().contains("A_MISSING") && r.stdout().contains("not found"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stdout().contains("B_BAD") && r.stdout().contains("bad ciphertext"),
        "{}",
        r.stdout()
    );
    assert!(
        r.stderr().contains("2 variables failed the check"),
        "{}",
        r.stderr()
    );
    env.remove(std::ffi::OsStr::new("A_MISSING"));
    let r = run(kms_env(&env).arg("check"));
    assert_eq!(r.code, Some(65), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"check-kms-plaintext"]);
}

#[test]
fn check_policy_has_context_conditions_for_bound_values() {
    let env = aws_env();
    let r = encrypt_stdin(
        &env,
        &["--bind-name", "BOUND_ONE", "--context", "app=web"],
        b"b1",
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let mut run_env = env.clone();
    run_env.insert("BOUND_ONE".into(), r.stdout().trim().into());
    run_env.insert("KMS_ENV_CONTEXT".into(), "app=web".into());
    let r = run(kms_env(&run_env).args(["check", "--iam-policy"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let policy: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let cond = &policy["Statement"][0]["Condition"]["StringEquals"];
    assert_eq!(
        cond["kms:EncryptionContext:kms-env:name"],
        serde_json::json!(["BOUND_ONE"])
    );
    assert_eq!(cond["kms:EncryptionContext:app"], "web");
}

#[test]
fn encoding_never_calls_decrypt() {
    let proxy = proxy::start(moto().port, |_, _| proxy::Fault::Pass);
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    let r = encrypt_stdin(&env, &[], b"small");
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let r = encrypt_stdin(&env, &["--bind-name", "BIG"], &vec![b'z'; 10 * 1024]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, DOTENV).unwrap();
    let r = run(kms_env(&env)
        .args(["encrypt", "--key-id", key_id(), "--bind-name", "--env-file"])
        .arg(&file));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let ops = proxy.operations();
    assert!(ops.contains(&"TrentService.Encrypt".to_owned()), "{ops:?}");
    assert!(
        ops.contains(&"TrentService.GenerateDataKey".to_owned()),
        "{ops:?}"
    );
    assert!(
        ops.iter()
            .all(|o| o == "TrentService.Encrypt" || o == "TrentService.GenerateDataKey"),
        "{ops:?}"
    );
}
