//! `tmpl:` values against moto: a `DATABASE_URL` from a JSON secret with a password that needs
//! percent-encoding (checked with Python's `urllib.parse.unquote`), every reference kind inside
//! one template, the filters, the literal `{{`, one fetch shared with a plain reference, and
//! malformed templates failing closed.

use crate::common::*;

const PASSWORD: &str = "p@ss:w/o?r#d%40 ünï 🔑&=+";

fn db_secret(tag: &str) -> String {
    let name = secret_name(tag);
    let doc = serde_json::json!({"username": "app", "password": PASSWORD, "port": 5432});
    create_secret(&name, &doc.to_string(), &[]);
    name
}

/// Python's `urllib.parse.unquote` of `text`.
fn unquote(text: &[u8]) -> Vec<u8> {
    let r = run_with_stdin(
        std::process::Command::new(venv().join("bin/python")).args([
            "-c",
            "import sys, urllib.parse; sys.stdout.buffer.write(urllib.parse.unquote(sys.stdin.read()).encode())",
        ]),
        text,
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    r.stdout
}

#[test]
fn a_database_url_round_trips_through_urlencode_and_shares_the_fetch() {
    let name = db_secret("tmpl-db");
    let proxy = proxy::start(moto().port, |_, _| proxy::Fault::Pass);
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    env.insert(
        "DATABASE_URL".into(),
        format!(
            "tmpl:postgres://{{{{ sm:{name}#username }}}}:{{{{sm:{name}#password | urlencode}}}}@db.internal:{{{{ sm:{name}#port }}}}/app"
        )
        .into(),
    );
    env.insert("PASSWORD".into(), format!("sm:{name}#password").into());
    env.insert("NOT_A_TEMPLATE".into(), "{{ sm:x }} stays".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let url = dump.var("DATABASE_URL").unwrap();
    let text = String::from_utf8(url.clone()).unwrap();
    let (creds, host) = text
        .strip_prefix("postgres://")
        .unwrap()
        .split_once('@')
        .unwrap();
    assert_eq!(host, "db.internal:5432/app");
    let (user, encoded) = creds.split_once(':').unwrap();
    assert_eq!(user, "app");
    assert!(
        encoded
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
        "{encoded}"
    );
    assert_eq!(unquote(encoded.as_bytes()), PASSWORD.as_bytes());
    assert_eq!(dump.var("PASSWORD").unwrap(), PASSWORD.as_bytes());
    assert_eq!(dump.var("NOT_A_TEMPLATE").unwrap(), b"{{ sm:x }} stays");
    let gets = proxy
        .operations()
        .iter()
        .filter(|o| *o == "secretsmanager.GetSecretValue")
        .count();
    assert_eq!(
        gets, 1,
        "the template and the plain reference share one fetch"
    );
    assert_no_plaintext(&r, &[PASSWORD.as_bytes(), b"p@ss:w/o"]);
}

#[test]
fn every_kind_inside_one_template_with_filters_and_a_literal_brace() {
    let p = unique("tmpl-ssm");
    put_parameter(&p, "ssm \"quoted\"\nline", "SecureString");
    let kms = cli_encrypt(b"kms-part-value");
    let name = db_secret("tmpl-kinds");
    let mut env = aws_env();
    env.insert(
        "MIXED".into(),
        format!(
            "tmpl:\\{{{{literal}}}} k={{{{ {kms} }}}} s={{{{ ssm:{p} | json }}}} b={{{{ sm:{name}#username | base64 }}}}"
        )
        .into(),
    );
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(
        dump.var("MIXED").unwrap(),
        br#"{{literal}} k=kms-part-value s=ssm \"quoted\"\nline b=YXBw"#
    );
    // check shows the references a template uses; the policy covers them.
    let r = run(kms_env(&env).arg("check"));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let line = r
        .stdout()
        .lines()
        .find(|l| l.starts_with("MIXED"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains("tmpl (kms, ssm ") && line.contains(&p),
        "{line}"
    );
    let r = run(kms_env(&env).args(["check", "--iam-policy"]));
    let policy: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let actions: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "kms:Decrypt",
            "ssm:GetParameters",
            "secretsmanager:GetSecretValue"
        ],
        "{policy}"
    );
    assert_no_plaintext(&r, &[b"kms-part-value", b"ssm \"quoted\""]);
}

#[test]
fn malformed_templates_fail_closed_naming_the_variable_and_the_position() {
    for (value, at) in [
        ("tmpl:x {{ sm:a/b#password", 2),
        ("tmpl:{{ }}", 0),
        ("tmpl:ab{{ hunter2 }}", 2),
        ("tmpl:{{ sm:a#b | shout }}", 0),
        ("tmpl:{{ kms:hunter2 }}", 0),
    ] {
        let mut env = aws_env();
        env.insert("T".into(), value.into());
        let (r, dump) = exec_dump(&env, &[], &[]);
        assert_eq!(r.code, Some(65), "{value}: {}", r.stderr());
        assert!(!dump.started());
        let err = r.stderr();
        assert!(err.contains("  T (tmpl"), "{err}");
        assert!(err.contains(&format!("position {at}")), "{value}: {err}");
        assert_no_plaintext(&r, &[b"hunter2"]);
    }
}
