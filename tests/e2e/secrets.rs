//! Secrets Manager (`sm:`) against moto, with secrets made by the AWS CLI: every reference form
//! gives the application the exact bytes; failures fail closed with the right code and no value
//! in any output; one secret is fetched once however many variables use it; `check` and
//! `check --iam-policy` name exactly the secrets.

use crate::common::*;

/// `put-secret-value`: a new AWSCURRENT version (the old one becomes AWSPREVIOUS).
fn put_secret_value(name: &str, value: &str) -> String {
    aws(&[
        "secretsmanager",
        "put-secret-value",
        "--secret-id",
        name,
        "--secret-string",
        value,
        "--query",
        "VersionId",
    ])
}

const FIRST: &str = r#"{"username":"app","password":"old p@ss'\"$x","port":5432}"#;
const SECOND: &str = r#"{"username":"app","password":"n3w p@ss w0rd'\"$x\n","port":5432,"enabled":true,"nested":{"a":[1,"two"]},"auth":{"to/ken":"tok~en"},"nil":null}"#;

#[test]
fn every_form_gives_the_application_the_exact_bytes() {
    let name = secret_name("sm-forms");
    let (arn, first_id) = create_secret(&name, FIRST, &[]);
    put_secret_value(&name, SECOND);
    aws(&[
        "secretsmanager",
        "update-secret-version-stage",
        "--secret-id",
        &name,
        "--version-stage",
        "STABLE",
        "--move-to-version-id",
        &first_id,
    ]);
    let bang = format!("rds!db-{}", name.rsplit('-').next().unwrap());
    create_secret(&bang, r#"{"password":"bang-plaintext"}"#, &[]);
    let binary_name = secret_name("sm-binary");
    let binary: &[u8] = &[0xff, 0xfe, b'k', b'e', b'y', 0x01, b'='];
    create_binary_secret(&binary_name, binary);
    let far_name = secret_name("sm-far");
    let (far_arn, _) = create_secret(
        &far_name,
        "far-region-plaintext",
        &["--region", "eu-west-1"],
    );
    assert!(far_arn.contains(":eu-west-1:"), "{far_arn}");

    let mut env = aws_env();
    let mut set = |k: &str, v: String| env.insert(k.into(), v.into());
    set("WHOLE", format!("sm:{name}"));
    set("PASS", format!("sm:{name}#password"));
    set("PREV", format!("sm:{name}:AWSPREVIOUS#password"));
    set("BY_ID", format!("sm:{name}:{first_id}#password"));
    set("STABLE", format!("sm:{name}:STABLE#password"));
    set("PORT", format!("sm:{name}#port"));
    set("ENABLED", format!("sm:{name}#enabled"));
    set("NESTED", format!("sm:{name}#nested"));
    set("POINTER", format!("sm:{name}#/auth/to~1ken"));
    set("INDEX", format!("sm:{name}#/nested/a/1"));
    set("BY_ARN", format!("sm:{arn}#username"));
    set("ARN_PREV", format!("sm:{arn}:AWSPREVIOUS#password"));
    set("ECS_TAIL", format!("sm:{arn}:password:AWSPREVIOUS:"));
    set("ECS_KEY", format!("sm:{arn}:password::"));
    set("ECS_ID", format!("sm:{arn}:::{first_id}"));
    set("BANG", format!("sm:{bang}#password"));
    set("BINARY", format!("sm:{binary_name}"));
    set("FAR", format!("sm:{far_arn}"));
    set("PLAIN_ARN", arn.clone());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let new_pass: &[u8] = b"n3w p@ss w0rd'\"$x\n";
    let old_pass: &[u8] = b"old p@ss'\"$x";
    let want: &[(&str, &[u8])] = &[
        ("WHOLE", SECOND.as_bytes()),
        ("PASS", new_pass),
        ("PREV", old_pass),
        ("BY_ID", old_pass),
        ("STABLE", old_pass),
        ("PORT", b"5432"),
        ("ENABLED", b"true"),
        ("NESTED", br#"{"a":[1,"two"]}"#),
        ("POINTER", b"tok~en"),
        ("INDEX", b"two"),
        ("BY_ARN", b"app"),
        ("ARN_PREV", old_pass),
        ("ECS_TAIL", old_pass),
        ("ECS_KEY", new_pass),
        ("ECS_ID", FIRST.as_bytes()),
        ("BANG", b"bang-plaintext"),
        ("BINARY", binary),
        ("FAR", b"far-region-plaintext"),
        ("PLAIN_ARN", arn.as_bytes()),
    ];
    for (var, value) in want {
        assert_eq!(
            dump.var(var).as_deref(),
            Some(*value),
            "{var}: {:?}",
            dump.var(var)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        );
    }
    assert_no_plaintext(
        &r,
        &[
            new_pass,
            old_pass,
            b"bang-plaintext",
            b"far-region-plaintext",
            b"tok~en",
        ],
    );

    // decrypt and export know sm: too.
    let r = run(kms_env(&aws_env()).args(["decrypt", &format!("sm:{name}:AWSPREVIOUS#password")]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(r.stdout, old_pass);
    let mut env = aws_env();
    env.insert("PASS".into(), format!("sm:{name}#password").into());
    let r = run(kms_env(&env).args(["export", "--format", "json"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let exported: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(exported["PASS"].as_str().unwrap().as_bytes(), new_pass);
}

#[test]
fn one_secret_used_by_five_variables_is_fetched_once_at_awscurrent() {
    let name = secret_name("sm-once");
    create_secret(&name, SECOND, &[]);
    let proxy = proxy::start(moto().port, |_, _| proxy::Fault::Pass);
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    for (var, key) in [
        ("A", "#username"),
        ("B", "#password"),
        ("C", "#/auth/to~1ken"),
        ("D", ""),
        ("E", ":AWSCURRENT#port"),
    ] {
        env.insert(var.into(), format!("sm:{name}{key}").into());
    }
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("A").unwrap(), b"app");
    assert_eq!(dump.var("E").unwrap(), b"5432");
    let calls = proxy.bodies_of("secretsmanager.GetSecretValue");
    assert_eq!(calls.len(), 1, "{:?}", proxy.operations());
    assert_eq!(calls[0]["SecretId"], name.as_str());
    // The stage is sent explicitly: resource policies that condition on it need it.
    assert_eq!(calls[0]["VersionStage"], "AWSCURRENT");
}

#[test]
fn failures_fail_closed_with_the_right_code_and_never_show_a_value() {
    let name = secret_name("sm-fail");
    create_secret(&name, SECOND, &[]);
    let text = secret_name("sm-text");
    create_secret(&text, "Vb4-text-value", &[]);
    let deleted = secret_name("sm-deleted");
    create_secret(&deleted, "Wq2-gone-value", &[]);
    aws(&["secretsmanager", "delete-secret", "--secret-id", &deleted]);
    let cases: &[(&str, String, i32, &str)] = &[
        ("MISSING_KEY", format!("sm:{name}#nope"), 66, "nope"),
        ("NULL_KEY", format!("sm:{name}#nil"), 66, "nil"),
        ("NOT_JSON", format!("sm:{text}#key"), 65, "not JSON"),
        (
            "NO_SECRET",
            format!("sm:{}", secret_name("sm-absent")),
            66,
            "ResourceNotFoundException",
        ),
        ("DELETED", format!("sm:{deleted}"), 66, "deleted"),
        (
            "NO_STAGE",
            format!("sm:{name}:NOSUCHSTAGE"),
            66,
            "not found",
        ),
        (
            "URL_FORM",
            format!("sm://{name}"),
            65,
            "sm:// is not a form",
        ),
        ("BAD_NAME", "sm:has space".to_owned(), 65, "malformed"),
    ];
    let plaintexts: &[&[u8]] = &[b"n3w p@ss w0rd", b"Vb4-text-value", b"Wq2-gone-value"];
    for (var, value, code, says) in cases {
        let mut env = aws_env();
        env.insert((*var).into(), value.into());
        let (r, dump) = exec_dump(&env, &[], &[]);
        assert_eq!(r.code, Some(*code), "{var}: {}", r.stderr());
        assert!(!dump.started(), "{var}");
        let err = r.stderr();
        assert!(err.contains(&format!("  {var} (sm")), "{var}: {err}");
        assert!(err.contains(says), "{var}: {err}");
        assert_no_plaintext(&r, plaintexts);
    }
    // All together: one message, the first by name decides.
    let mut env = aws_env();
    for (var, value, _, _) in cases {
        env.insert((*var).into(), value.into());
    }
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert!(!dump.started());
    assert!(
        r.stderr()
            .contains(&format!("{} variables could not be resolved", cases.len())),
        "{}",
        r.stderr()
    );
    assert_eq!(r.code, Some(65), "BAD_NAME sorts first: {}", r.stderr());
    assert_no_plaintext(&r, plaintexts);
}

#[test]
fn a_role_without_access_is_77_and_one_with_it_reads_the_secret() {
    let iam = IamMoto::start();
    iam.cli(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "iam/db",
        "--secret-string",
        r#"{"password":"iam-plaintext"}"#,
    ]);
    let reader = iam.user("reader", "secretsmanager:GetSecretValue");
    let other = iam.user("other", "kms:Decrypt");
    iam.enforce();

    for (env, code) in [(reader, 0), (other, 77)] {
        let mut env = env;
        env.insert("DB_PASSWORD".into(), "sm:iam/db#password".into());
        let (r, dump) = exec_dump(&env, &[], &[]);
        assert_eq!(r.code, Some(code), "{}", r.stderr());
        if code == 0 {
            assert_eq!(dump.var("DB_PASSWORD").unwrap(), b"iam-plaintext");
        } else {
            assert!(!dump.started());
            assert!(
                r.stderr()
                    .contains("DB_PASSWORD (sm iam/db#password): access denied"),
                "{}",
                r.stderr()
            );
        }
        assert_no_plaintext(&r, &[b"iam-plaintext"]);
    }
}

#[test]
fn check_reports_secrets_and_the_policy_names_exactly_their_arns() {
    let by_name = secret_name("sm-check");
    let (name_arn, first_id) = create_secret(&by_name, FIRST, &[]);
    put_secret_value(&by_name, SECOND);
    let by_arn = secret_name("sm-check-arn");
    let (arn, _) = create_secret(&by_arn, "arn-plaintext", &[]);
    let by_id = secret_name("sm-check-id");
    let (id_arn, id_version) = create_secret(&by_id, "id-plaintext", &[]);
    let mut env = aws_env();
    env.insert("A_USER".into(), format!("sm:{by_name}#username").into());
    env.insert(
        "B_PREV".into(),
        format!("sm:{by_name}:AWSPREVIOUS#password").into(),
    );
    env.insert("C_ARN".into(), format!("sm:{arn}").into());
    env.insert("D_ID".into(), format!("sm:{by_id}:{id_version}").into());

    let r = run(kms_env(&env).arg("check"));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let table = r.stdout();
    let line = |var: &str| table.lines().find(|l| l.starts_with(var)).unwrap();
    assert!(line("A_USER").contains(&name_arn), "{table}");
    assert!(line("A_USER").contains("AWSCURRENT"), "{table}");
    assert!(line("B_PREV").contains(&first_id), "{table}");
    assert!(line("B_PREV").contains("AWSPREVIOUS"), "{table}");
    assert!(line("D_ID").contains(&id_version), "{table}");
    assert!(table.lines().skip(1).all(|l| l.ends_with("ok")), "{table}");
    assert_no_plaintext(&r, &[b"arn-plaintext", b"id-plaintext", b"old p@ss"]);

    let r = run(kms_env(&env).args(["check", "--iam-policy"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let policy: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert!(
        statements
            .iter()
            .all(|s| s["Action"] == "secretsmanager:GetSecretValue"),
        "{policy}"
    );
    let mut resources: Vec<String> = statements
        .iter()
        .flat_map(|s| s["Resource"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    resources.sort();
    let wildcard = format!("{}-??????", &name_arn[..name_arn.len() - 7]);
    let id_wildcard = format!("{}-??????", &id_arn[..id_arn.len() - 7]);
    let mut want = vec![wildcard.clone(), arn.clone(), id_wildcard.clone()];
    want.sort();
    assert_eq!(resources, want, "{policy}");
    let stages_of = |resource: &str| {
        statements
            .iter()
            .find(|s| {
                s["Resource"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r == resource)
            })
            .unwrap()["Condition"]["StringEquals"]["secretsmanager:VersionStage"]
            .clone()
    };
    assert_eq!(
        stages_of(&wildcard),
        serde_json::json!(["AWSCURRENT", "AWSPREVIOUS"])
    );
    assert_eq!(stages_of(&arn), serde_json::json!("AWSCURRENT"));
    assert_eq!(stages_of(&id_wildcard), serde_json::Value::Null, "{policy}");
}

#[test]
fn an_http_403_that_is_not_the_service_s_own_error_is_access_denied_for_every_source() {
    let p = unique("forbidden");
    put_parameter(&p, "Qx7-ssm-403-value", "SecureString");
    let name = secret_name("sm-forbidden");
    create_secret(&name, "Qx7-sm-403-value", &[]);
    let ciphertext = cli_encrypt(b"Qx7-kms-403-value");
    for (var, value) in [
        ("K", ciphertext),
        ("P", format!("ssm:{p}")),
        ("S", format!("sm:{name}")),
    ] {
        for (content_type, body) in [
            (
                "text/html",
                "<html><body><h1>403 Forbidden</h1></body></html>",
            ),
            (
                "text/xml",
                "<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>",
            ),
        ] {
            let proxy = proxy::start(moto().port, move |_, _| {
                proxy::Fault::Raw(403, content_type, body)
            });
            let mut env = aws_env();
            env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
            env.insert(var.into(), value.clone().into());
            let (r, dump) = exec_dump(&env, &[], &[]);
            assert_eq!(r.code, Some(77), "{var} {content_type}: {}", r.stderr());
            assert!(!dump.started());
            assert!(r.stderr().contains("access denied"), "{}", r.stderr());
            assert_no_plaintext(
                &r,
                &[
                    b"Qx7-kms-403-value",
                    b"Qx7-ssm-403-value",
                    b"Qx7-sm-403-value",
                ],
            );
        }
    }
}

#[test]
fn encrypt_env_file_leaves_sm_references_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    std::fs::write(&file, "DB=sm:prod/db#password\nTOKEN=tok-plaintext\n").unwrap();
    let r = run(kms_env(&aws_env())
        .args(["encrypt", "--key-id", key_id(), "--env-file"])
        .arg(&file));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let out = r.stdout();
    // Quoted because of the '#', the same value.
    assert!(out.contains("DB=\"sm:prod/db#password\"\n"), "{out}");
    assert!(out.contains("TOKEN=kms:"), "{out}");
    assert_no_plaintext(&r, &[b"tok-plaintext"]);
}

#[test]
fn secrets_manager_faults_map_to_the_taxonomy() {
    let name = secret_name("sm-faults");
    create_secret(&name, "Jt5-fault-value", &[]);
    let with_proxy = |fault: proxy::Fault, timeout: &str| {
        let op = "secretsmanager.GetSecretValue";
        // Throttling passes after two requests; the other faults stay.
        let transient = matches!(fault, proxy::Fault::Error(_, "ThrottlingException"));
        let proxy = proxy::start(moto().port, move |n, o| {
            if o != op || (transient && n >= 2) {
                proxy::Fault::Pass
            } else {
                fault.clone()
            }
        });
        let mut env = aws_env();
        env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
        env.insert("KMS_ENV_TIMEOUT".into(), timeout.into());
        env.insert("S".into(), format!("sm:{name}").into());
        exec_dump(&env, &[], &[])
    };
    // Throttled twice, then answered: the application starts with the value.
    let (r, dump) = with_proxy(proxy::Fault::Error(400, "ThrottlingException"), "20s");
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("S").unwrap(), b"Jt5-fault-value");
    // The role cannot use the secret's KMS key.
    let (r, dump) = with_proxy(proxy::Fault::Error(400, "DecryptionFailure"), "5s");
    assert_eq!(r.code, Some(77), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("access denied: DecryptionFailure"),
        "{}",
        r.stderr()
    );
    // A service that keeps failing.
    let (r, dump) = with_proxy(proxy::Fault::Error(500, "InternalServiceError"), "5s");
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    // Nothing listening.
    let mut env = aws_env();
    env.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://127.0.0.1:{}", free_port()).into(),
    );
    env.insert("S".into(), format!("sm:{name}").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(r.stderr().contains("S (sm "), "{}", r.stderr());
    assert!(r.stderr().contains("unreachable"), "{}", r.stderr());
    assert!(!dump.started());
    assert_no_plaintext(&r, &[b"Jt5-fault-value"]);
}
