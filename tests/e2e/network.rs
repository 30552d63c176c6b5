//! Credentials and network: the ECS task role for real, no credentials, unreachable and
//! hanging endpoints, all bounded by the deadline.

use crate::common::*;
use std::ffi::OsStr;
use std::time::Duration;

#[test]
fn the_ecs_task_role_provides_the_credentials() {
    let creds = credentials_server();
    let p = unique("task-role");
    put_parameter(&p, "task-role-plaintext", "SecureString");
    let mut env = aws_env();
    env.remove(OsStr::new("AWS_ACCESS_KEY_ID"));
    env.remove(OsStr::new("AWS_SECRET_ACCESS_KEY"));
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        creds.url.clone().into(),
    );
    env.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
        "task-auth-token".into(),
    );
    env.insert("K".into(), cli_encrypt(b"task-role-kms-plaintext").into());
    env.insert("P".into(), format!("ssm:{p}").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"task-role-kms-plaintext");
    assert_eq!(dump.var("P").unwrap(), b"task-role-plaintext");
    let requests = creds.requests.lock().unwrap();
    assert!(!requests.is_empty(), "the credentials server was asked");
    assert!(
        requests[0].starts_with("GET /v2/credentials/task "),
        "{}",
        requests[0]
    );
    assert!(
        requests[0]
            .to_ascii_lowercase()
            .contains("authorization: task-auth-token"),
        "{}",
        requests[0]
    );
    assert_no_plaintext(
        &r,
        &[
            b"task-role-kms-plaintext",
            b"task-role-plaintext",
            b"task-role-secret",
        ],
    );
}

#[test]
fn no_credentials_at_all_is_77_with_a_hint() {
    let mut env = aws_env();
    env.remove(OsStr::new("AWS_ACCESS_KEY_ID"));
    env.remove(OsStr::new("AWS_SECRET_ACCESS_KEY"));
    env.insert("K".into(), cli_encrypt(b"no-creds-plaintext").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(77), "{}", r.stderr());
    assert!(!dump.started());
    let err = r.stderr();
    assert!(err.contains("K (kms): no credentials"), "{err}");
    assert!(
        err.contains("hint:") && err.contains("AWS_CONTAINER_CREDENTIALS"),
        "{err}"
    );
    assert_no_plaintext(&r, &[b"no-creds-plaintext"]);
}

#[test]
fn a_closed_port_is_69_well_within_the_deadline() {
    let mut env = aws_env();
    env.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://127.0.0.1:{}", free_port()).into(),
    );
    env.insert("K".into(), "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into());
    env.insert("P".into(), "ssm:/closed/port".into());
    let (r, dump) = exec_dump(&env, &["--timeout", "30"], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("K (kms): unreachable"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("P (ssm /closed/port): unreachable"),
        "{}",
        r.stderr()
    );
    assert!(r.elapsed < Duration::from_secs(15), "took {:?}", r.elapsed);
}

#[test]
fn a_server_that_never_answers_is_69_at_the_deadline() {
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), black_hole().into());
    env.insert("KMS_ENV_TIMEOUT".into(), "2".into());
    env.insert("K".into(), "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into());
    env.insert("P".into(), "ssm:/hanging".into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("K (kms): timed out"), "{}", r.stderr());
    assert!(
        r.stderr().contains("P (ssm /hanging): timed out"),
        "{}",
        r.stderr()
    );
    assert!(r.elapsed >= Duration::from_secs(2), "took {:?}", r.elapsed);
    assert!(r.elapsed < Duration::from_secs(8), "took {:?}", r.elapsed);
}

#[test]
fn service_specific_endpoints_are_honoured() {
    // The general endpoint is dead; the per-service ones point at moto.
    let p = unique("endpoint");
    put_parameter(&p, "endpoint-plaintext", "String");
    let mut env = aws_env();
    let m = moto().url.clone();
    env.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://127.0.0.1:{}", free_port()).into(),
    );
    env.insert("AWS_ENDPOINT_URL_KMS".into(), m.clone().into());
    env.insert("AWS_ENDPOINT_URL_SSM".into(), m.into());
    env.insert("K".into(), cli_encrypt(b"endpoint-kms-plaintext").into());
    env.insert("P".into(), format!("ssm:{p}").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"endpoint-kms-plaintext");
    assert_eq!(dump.var("P").unwrap(), b"endpoint-plaintext");
    assert_no_plaintext(&r, &[b"endpoint-kms-plaintext", b"endpoint-plaintext"]);
}
