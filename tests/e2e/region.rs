//! Region discovery: --region, AWS_REGION, the input's own region, ECS task metadata, IMDS,
//! and exit 78 saying what was tried.

use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

fn without_region() -> BTreeMap<OsString, OsString> {
    let mut env = aws_env();
    env.remove(OsStr::new("AWS_REGION"));
    env.remove(OsStr::new("AWS_DEFAULT_REGION"));
    env
}

#[test]
fn ecs_task_metadata_gives_the_region_after_the_environment() {
    let ciphertext = cli_encrypt(b"region-plaintext");
    // moto's keys are regional: the us-east-1 key decrypts only when us-east-1 is called.
    let right = task_metadata_server("us-east-1b");
    let mut env = without_region();
    env.insert(
        "ECS_CONTAINER_METADATA_URI_V4".into(),
        right.url.clone().into(),
    );
    env.insert("S".into(), ciphertext.clone().into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("S").unwrap(), b"region-plaintext");
    let asked = right.requests.lock().unwrap().clone();
    assert!(
        asked.iter().any(|h| h.starts_with("GET /v4/task-id/task ")),
        "{asked:?}"
    );

    // Metadata naming another region really sends the call there (and fails).
    let wrong = task_metadata_server("eu-west-1a");
    env.insert(
        "ECS_CONTAINER_METADATA_URI_V4".into(),
        wrong.url.clone().into(),
    );
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_ne!(r.code, Some(0));
    assert_ne!(r.code, Some(78), "{}", r.stderr());
    assert!(!dump.started());

    // AWS_REGION comes first: metadata is not even asked.
    let unused = task_metadata_server("eu-west-1a");
    env.insert(
        "ECS_CONTAINER_METADATA_URI_V4".into(),
        unused.url.clone().into(),
    );
    env.insert("AWS_REGION".into(), REGION.into());
    let (r, _) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(unused.requests.lock().unwrap().is_empty());

    // --region comes before AWS_REGION.
    env.insert("AWS_REGION".into(), "eu-west-1".into());
    let (r, _) = exec_dump(&env, &["--region", REGION], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_no_plaintext(&r, &[b"region-plaintext"]);
}

#[test]
fn an_env_file_region_comes_before_ecs_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.env");
    let r = run(kms_env(&aws_env()).args(["init", key_id(), file.to_str().unwrap()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let r = run(kms_env(&aws_env()).args(["add", file.to_str().unwrap(), "A=file-region-value"]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    let metadata = task_metadata_server("eu-west-1a");
    let mut env = without_region();
    env.insert(
        "ECS_CONTAINER_METADATA_URI_V4".into(),
        metadata.url.clone().into(),
    );
    let r = run(kms_env(&env).args(["show", file.to_str().unwrap()]));
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert!(r.stdout().contains("A=file-region-value"));
    assert!(metadata.requests.lock().unwrap().is_empty());
}

#[test]
fn no_region_anywhere_is_78_saying_what_was_tried() {
    let mut env = without_region();
    env.insert("S".into(), cli_encrypt(b"no-region-anywhere").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(78), "{}", r.stderr());
    assert!(!dump.started());
    let err = r.stderr();
    for tried in [
        "--region",
        "AWS_REGION",
        "profile",
        "ECS task metadata (ECS_CONTAINER_METADATA_URI_V4 not set)",
        "EC2 instance metadata (disabled)",
    ] {
        assert!(err.contains(tried), "{tried} missing from: {err}");
    }
}

#[test]
fn fips_or_dual_stack_with_an_endpoint_url_is_78_as_the_sdks_rules_say() {
    // The SDK's endpoint rules refuse a custom endpoint with FIPS or dual-stack; kms-env's own
    // calls go by the same rules, for every source.
    for (var, says) in [
        (
            "AWS_USE_FIPS_ENDPOINT",
            "Invalid Configuration: FIPS and custom endpoint are not supported",
        ),
        (
            "AWS_USE_DUALSTACK_ENDPOINT",
            "Invalid Configuration: Dualstack and custom endpoint are not supported",
        ),
    ] {
        let mut env = aws_env();
        env.insert(var.into(), "true".into());
        env.insert("K".into(), cli_encrypt(b"fips-plaintext").into());
        env.insert("P".into(), "ssm:/no/such/parameter".into());
        env.insert("S".into(), "sm:no-such-secret".into());
        let (r, dump) = exec_dump(&env, &[], &[]);
        assert_eq!(r.code, Some(78), "{}", r.stderr());
        assert!(!dump.started());
        for (name, service) in [
            ("K (kms)", "KMS"),
            ("P (ssm", "SSM"),
            ("S (sm", "Secrets Manager"),
        ] {
            assert!(r.stderr().contains(name), "{}", r.stderr());
            assert!(
                r.stderr().contains(&format!(
                    "no {service} endpoint for region {REGION}: {says}"
                )),
                "{}",
                r.stderr()
            );
        }
        assert_no_plaintext(&r, &[b"fips-plaintext"]);
    }
}
