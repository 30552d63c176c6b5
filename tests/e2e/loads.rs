//! Loading many variables from one spec (`--load`, `KMS_ENV_LOAD`) against moto: every page of a
//! path, nested paths, labels, every key of a JSON secret, prefixes, and the ways a load fails
//! closed (a collision, a refused name, an empty path) or yields to the environment.

use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;

/// 37 parameters directly under a fresh root, two nested ones, one labelled `stable`. Returns
/// the root.
fn seed_path(tag: &str) -> String {
    let root = unique(tag);
    let mut params: Vec<(String, String, &str)> = (0..37)
        .map(|i| {
            (
                format!("{root}/k{i:02}"),
                format!("load-value-{i:02}"),
                "SecureString",
            )
        })
        .collect();
    params.push((
        format!("{root}/nested/deep.key"),
        "deep-value".into(),
        "String",
    ));
    params.push((
        format!("{root}/nested/x"),
        "nested-x".into(),
        "SecureString",
    ));
    seed(&[], &params);
    aws(&[
        "ssm",
        "label-parameter-version",
        "--name",
        &format!("{root}/nested/x"),
        "--labels",
        "stable",
    ]);
    root
}

fn with(pairs: &[(&str, &str)]) -> BTreeMap<OsString, OsString> {
    let mut env = aws_env();
    for (k, v) in pairs {
        env.insert((*k).into(), (*v).into());
    }
    env
}

#[test]
fn a_path_loads_every_page_once_and_nested_paths_and_labels_work() {
    let root = seed_path("load-pages");
    let proxy = proxy::start(moto().port, |_, _| proxy::Fault::Pass);
    let mut env = with(&[("K05", "explicit wins")]);
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    let spec = format!("ssm:{root}/*");
    let (r, dump) = exec_dump(&env, &["--load", &spec, "-v"], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    for i in 0..37 {
        let want = if i == 5 {
            "explicit wins".to_owned()
        } else {
            format!("load-value-{i:02}")
        };
        assert_eq!(
            dump.var(&format!("K{i:02}")).unwrap(),
            want.as_bytes(),
            "K{i:02}"
        );
    }
    assert_eq!(dump.var("NESTED_X"), None, "one level only");
    let pages = proxy
        .operations()
        .iter()
        .filter(|o| *o == "AmazonSSM.GetParametersByPath")
        .count();
    assert_eq!(pages, 4, "37 parameters, 10 a page, each page once");
    assert!(
        r.stderr().contains("K05 is set in the environment"),
        "{}",
        r.stderr()
    );
    assert!(r.stderr().contains(": 36 variables"), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"load-value-", b"explicit wins"]);

    // Every level, through KMS_ENV_LOAD, with a prefix; the helper variable is not passed on.
    let env = with(&[("KMS_ENV_LOAD", &format!("APP_=ssm:{root}/**"))]);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("APP_NESTED_DEEP_KEY").unwrap(), b"deep-value");
    assert_eq!(dump.var("APP_NESTED_X").unwrap(), b"nested-x");
    assert_eq!(dump.var("APP_K00").unwrap(), b"load-value-00");
    assert_eq!(dump.var("KMS_ENV_LOAD"), None);

    // A label picks only the parameters that carry it.
    let env = with(&[("KMS_ENV_LOAD", &format!("ssm:{root}/**:stable"))]);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("NESTED_X").unwrap(), b"nested-x");
    assert_eq!(dump.var("K00"), None);
}

#[test]
fn every_key_of_a_json_secret_with_a_prefix() {
    let name = secret_name("load-secret");
    let doc = r#"{"user":"app","password":"p@ss w0rd'\"$x","port":5432,"ratio":0.5,"on":true,"nested":{"a":[1,"b"]},"nil":null,"api-key":"k-1","2fa":"otp","url":"https://x/?a=b"}"#;
    create_secret(&name, doc, &[]);
    let env = with(&[
        ("KMS_ENV_LOAD", &format!("CFG_=sm:{name}#*")),
        ("ONE", &format!("sm:{name}#user")),
    ]);
    let proxy = proxy::start(moto().port, |_, _| proxy::Fault::Pass);
    let mut env = env;
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let want: &[(&str, &[u8])] = &[
        ("CFG_USER", b"app"),
        ("CFG_PASSWORD", b"p@ss w0rd'\"$x"),
        ("CFG_PORT", b"5432"),
        ("CFG_RATIO", b"0.5"),
        ("CFG_ON", b"true"),
        ("CFG_NESTED", br#"{"a":[1,"b"]}"#),
        ("CFG_API_KEY", b"k-1"),
        ("CFG_2FA", b"otp"),
        ("CFG_URL", b"https://x/?a=b"),
        ("ONE", b"app"),
    ];
    for (var, value) in want {
        assert_eq!(dump.var(var).as_deref(), Some(*value), "{var}");
    }
    assert_eq!(dump.var("CFG_NIL"), None, "null sets nothing");
    let gets = proxy
        .operations()
        .iter()
        .filter(|o| *o == "secretsmanager.GetSecretValue")
        .count();
    assert_eq!(gets, 1, "the load and the reference share one fetch");
    assert_no_plaintext(&r, &[b"p@ss w0rd"]);
}

#[test]
fn loads_fail_closed_on_collisions_refused_names_and_empty_paths() {
    let a = unique("load-a");
    let b = unique("load-b");
    let c = unique("load-c");
    seed(
        &[],
        &[
            (format!("{a}/shared"), "from-a-value".into(), "String"),
            (format!("{b}/shared"), "from-b-value".into(), "String"),
            (format!("{c}/ld_preload"), "/tmp/evil.so".into(), "String"),
            (
                format!("{c}/looks"),
                "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into(),
                "String",
            ),
        ],
    );
    let cases: Vec<(String, i32, String)> = vec![
        (
            format!("ssm:{a}/*,ssm:{b}/*"),
            65,
            format!("{a}/shared and {b}/shared both map to SHARED"),
        ),
        (format!("ssm:{c}/*"), 65, "would set LD_PRELOAD".to_owned()),
        (
            format!("ssm:{}/*", unique("load-none")),
            66,
            "loads nothing".to_owned(),
        ),
        ("ssm:/no-star".to_owned(), 65, "an ssm: load is".to_owned()),
    ];
    for (load, code, says) in &cases {
        let env = with(&[("KMS_ENV_LOAD", load)]);
        let (r, dump) = exec_dump(&env, &[], &[]);
        assert_eq!(r.code, Some(*code), "{load}: {}", r.stderr());
        assert!(!dump.started(), "{load}");
        assert!(r.stderr().contains("KMS_ENV_LOAD ("), "{}", r.stderr());
        assert!(r.stderr().contains(says.as_str()), "{load}: {}", r.stderr());
        assert_no_plaintext(&r, &[b"from-a-value", b"from-b-value", b"/tmp/evil.so"]);
    }
    // A prefix makes the refused name a safe one; ?optional allows an empty path.
    let env = with(&[(
        "KMS_ENV_LOAD",
        &format!("SAFE_=ssm:{c}/*\nssm:{}/*?optional", unique("load-none")),
    )]);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("SAFE_LD_PRELOAD").unwrap(), b"/tmp/evil.so");
    // A loaded value is never resolved again.
    assert_eq!(
        dump.var("SAFE_LOOKS").unwrap(),
        b"kms:AQIDBAUGBwgJCgsMDQ4PEA=="
    );
    assert_eq!(dump.var("LD_PRELOAD"), None);
}

#[test]
fn check_lists_loaded_variables_and_the_policy_grants_the_path() {
    let root = unique("load-check");
    seed(
        &[],
        &[(
            format!("{root}/db/user"),
            "check-user-value".into(),
            "String",
        )],
    );
    let env = with(&[("KMS_ENV_LOAD", &format!("ssm:{root}/**"))]);
    let r = run(kms_env(&env).arg("check"));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let line = r
        .stdout()
        .lines()
        .find(|l| l.starts_with("DB_USER"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{}", r.stdout()));
    assert!(line.contains(&format!("parameter{root}/db/user")), "{line}");
    assert!(line.ends_with("ok"), "{line}");
    let r = run(kms_env(&env).args(["check", "--iam-policy"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let policy: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let st = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "ssm:GetParametersByPath")
        .unwrap_or_else(|| panic!("{policy}"))
        .clone();
    let base = format!("arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{root}");
    assert_eq!(
        st["Resource"],
        serde_json::json!([base.clone(), format!("{base}/*")])
    );
    assert_no_plaintext(&r, &[b"check-user-value"]);
    // export includes loaded variables.
    let r = run(kms_env(&env).args(["export", "--format", "json"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let exported: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(exported["DB_USER"], "check-user-value");
}
