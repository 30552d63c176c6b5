//! Credentials and network: the ECS task role for real, no credentials, unreachable and
//! hanging endpoints, all bounded by the deadline.

use crate::common::*;
use std::time::Duration;

#[test]
fn the_ecs_task_role_provides_the_credentials() {
    let creds = credentials_server();
    let p = unique("task-role");
    put_parameter(&p, "task-role-plaintext", "SecureString");
    let mut env = keyless_env();
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

/// Resolves one `kms:` value with `env` and an ECS task role beside it; returns the request
/// lines the task role's endpoint saw.
fn resolve_beside_a_task_role(
    mut env: std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString>,
    plaintext: &[u8],
) -> Vec<String> {
    let creds = credentials_server();
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        creds.url.clone().into(),
    );
    env.insert("K".into(), cli_encrypt(plaintext).into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), plaintext);
    assert_no_plaintext(&r, &[plaintext, b"task-role-secret"]);
    creds.requests.lock().unwrap().clone()
}

/// When the environment's keys load, kms-env's credentials chain is the environment's provider
/// alone (README "AWS configuration"); this and the next test pin that it answers as the
/// default chain does on both sides of that check.
#[test]
fn static_keys_in_the_environment_come_before_the_task_role() {
    let requests = resolve_beside_a_task_role(aws_env(), b"static-first-plaintext");
    assert!(
        requests.is_empty(),
        "the credentials server was asked although the environment has keys: {requests:?}"
    );
}

#[test]
fn a_blank_secret_key_in_the_environment_falls_through_to_the_task_role() {
    let mut env = aws_env();
    env.insert("AWS_SECRET_ACCESS_KEY".into(), " ".into());
    let requests = resolve_beside_a_task_role(env, b"fall-through-plaintext");
    assert!(
        requests
            .first()
            .is_some_and(|r| r.starts_with("GET /v2/credentials/task ")),
        "the task role was not asked: {requests:?}"
    );
}

#[test]
fn a_profile_with_credential_process_provides_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("asked");
    let script = dir.path().join("creds.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ntouch '{}'\necho '{{\"Version\": 1, \"AccessKeyId\": \"AKIDPROCESS\", \
             \"SecretAccessKey\": \"process-secret\", \"SessionToken\": \"process-token\"}}'\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.path().join("config");
    std::fs::write(
        &config,
        format!("[profile app]\ncredential_process = {}\n", script.display()),
    )
    .unwrap();
    let mut env = keyless_env();
    env.insert("AWS_CONFIG_FILE".into(), config.into());
    env.insert("AWS_PROFILE".into(), "app".into());
    env.insert("K".into(), cli_encrypt(b"profile-process-plaintext").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"profile-process-plaintext");
    assert!(
        marker.exists(),
        "the profile's credential_process was not run"
    );
    assert_no_plaintext(&r, &[b"profile-process-plaintext", b"process-secret"]);
}

/// A loopback EC2 instance metadata service (IMDSv2) with one role.
fn instance_metadata() -> JsonServer {
    const TOKEN: &str = "imds-session-token";
    http_server("", |head| {
        let line = head.lines().next().unwrap_or_default();
        let path = line.split(' ').nth(1).unwrap_or_default();
        if line.starts_with("PUT ") && path == "/latest/api/token" {
            return Reply {
                status: "200 OK",
                headers: "x-aws-ec2-metadata-token-ttl-seconds: 21600\r\n",
                body: TOKEN.to_owned(),
            };
        }
        if !has_header(head, "x-aws-ec2-metadata-token", TOKEN) {
            return Reply::status("401 Unauthorized");
        }
        match path {
            "/latest/meta-data/iam/security-credentials/" => Reply::ok("app-instance-role".into()),
            "/latest/meta-data/iam/security-credentials/app-instance-role" => Reply::ok(
                r#"{"Code":"Success","LastUpdated":"2026-01-01T00:00:00Z","Type":"AWS-HMAC","AccessKeyId":"AKIDINSTANCE","SecretAccessKey":"instance-secret","Token":"instance-token","Expiration":"2099-01-01T00:00:00Z"}"#.to_owned(),
            ),
            _ => Reply::status("404 Not Found"),
        }
    })
}

#[test]
fn ec2_instance_metadata_provides_the_credentials_last() {
    let imds = instance_metadata();
    let mut env = keyless_env();
    env.remove(std::ffi::OsStr::new("AWS_EC2_METADATA_DISABLED"));
    env.insert(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        imds.url.clone().into(),
    );
    env.insert("K".into(), cli_encrypt(b"instance-role-plaintext").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"instance-role-plaintext");
    let seen = imds.requests.lock().unwrap();
    assert!(
        seen.iter()
            .any(|r| r
                .starts_with("GET /latest/meta-data/iam/security-credentials/app-instance-role ")),
        "the role's credentials were not asked for: {seen:?}"
    );
    assert_no_plaintext(&r, &[b"instance-role-plaintext", b"instance-secret"]);
}

#[test]
fn no_credentials_at_all_is_77_with_a_hint() {
    let mut env = keyless_env();
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
    // Plain HTTP goes through the SDK's client, HTTPS through kms-env's own: both say the same.
    for scheme in ["http", "https"] {
        let port = free_port();
        let mut env = aws_env();
        env.insert(
            "AWS_ENDPOINT_URL".into(),
            format!("{scheme}://127.0.0.1:{port}").into(),
        );
        env.insert("K".into(), "kms:AQIDBAUGBwgJCgsMDQ4PEA==".into());
        env.insert("P".into(), "ssm:/closed/port".into());
        let (r, dump) = exec_dump(&env, &["--timeout", "30"], &[]);
        let err = r.stderr();
        assert_eq!(r.code, Some(69), "{scheme}: {err}");
        assert!(!dump.started());
        assert!(err.contains("K (kms): unreachable"), "{scheme}: {err}");
        assert!(
            err.contains("P (ssm /closed/port): unreachable"),
            "{scheme}: {err}"
        );
        assert!(
            err.contains(&format!("127.0.0.1:{port}")),
            "{scheme}: names the endpoint: {err}"
        );
        assert!(
            !err.contains("{ ") && !err.contains("Error {"),
            "{scheme}: no Debug output: {err}"
        );
        assert!(r.elapsed < Duration::from_secs(15), "took {:?}", r.elapsed);
    }
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

#[test]
fn eks_irsa_web_identity_through_sts() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "eyJhbGciOiJSUzI1NiJ9.irsa-test-token.sig").unwrap();
    let proxy = proxy::start(moto().port, |_, _| proxy::Fault::Pass);
    let mut env = keyless_env();
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    env.insert("AWS_WEB_IDENTITY_TOKEN_FILE".into(), token.into());
    env.insert(
        "AWS_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/app-irsa".into(),
    );
    env.insert("K".into(), cli_encrypt(b"irsa-kms-plaintext").into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"irsa-kms-plaintext");
    let bodies = proxy.bodies.lock().unwrap().clone();
    assert!(
        bodies.iter().any(|b| {
            let b = String::from_utf8_lossy(b);
            b.contains("Action=AssumeRoleWithWebIdentity") && b.contains("irsa-test-token")
        }),
        "STS was asked with the token"
    );
    assert_no_plaintext(&r, &[b"irsa-kms-plaintext", b"irsa-test-token"]);
}

/// A loopback EKS Pod Identity agent: answers credentials only with the right token.
fn pod_identity_agent(token: &'static str) -> JsonServer {
    http_server("/v1/credentials", move |head| {
        if has_header(head, "authorization", token) {
            Reply::ok(r#"{"AccessKeyId":"AKIDPODID","SecretAccessKey":"pod-identity-secret","Token":"pod-token","Expiration":"2099-01-01T00:00:00Z"}"#.to_owned())
        } else {
            Reply {
                status: "403 Forbidden",
                headers: "",
                body: r#"{"message":"missing token"}"#.to_owned(),
            }
        }
    })
}

#[test]
fn eks_pod_identity_sends_the_token_from_its_file() {
    let agent = pod_identity_agent("pod-identity-token-1");
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token, "pod-identity-token-1").unwrap();
    let mut env = keyless_env();
    env.insert(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
        agent.url.clone().into(),
    );
    env.insert(
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".into(),
        token.into(),
    );
    env.insert(
        "K".into(),
        cli_encrypt(b"pod-identity-kms-plaintext").into(),
    );
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), b"pod-identity-kms-plaintext");
    assert!(
        agent.requests.lock().unwrap().iter().all(|head| has_header(
            head,
            "authorization",
            "pod-identity-token-1"
        )),
        "every request carried the token"
    );
    assert_no_plaintext(
        &r,
        &[
            b"pod-identity-kms-plaintext",
            b"pod-identity-secret",
            b"pod-identity-token-1",
        ],
    );
}

#[test]
fn https_proxy_tunnels_aws_calls_but_never_the_credentials_endpoint() {
    use crate::common::tls::{PROXIED_HOST, tls_front};
    let (front, ca_pem) = tls_front();
    let port = front.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &ca_pem).unwrap();
    let (proxy_url, tunnels) = proxy::connect_proxy();
    let creds = credentials_server();
    let base = |proxy_var: &str| {
        let mut env = keyless_env();
        env.insert(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            creds.url.clone().into(),
        );
        env.insert(
            "AWS_ENDPOINT_URL".into(),
            format!("https://{PROXIED_HOST}:{port}").into(),
        );
        env.insert("AWS_CA_BUNDLE".into(), ca.clone().into());
        env.insert(proxy_var.into(), proxy_url.clone().into());
        env.insert("HTTP_PROXY".into(), proxy_url.clone().into());
        env.insert("K".into(), cli_encrypt(b"proxied-plaintext").into());
        env
    };
    for var in ["HTTPS_PROXY", "https_proxy"] {
        let before = tunnels.lock().unwrap().len();
        let (r, dump) = exec_dump(&base(var), &[], &[]);
        assert_eq!(r.code, Some(0), "{var}: {}", r.stderr());
        assert_eq!(dump.var("K").unwrap(), b"proxied-plaintext");
        let log = tunnels.lock().unwrap().clone();
        assert!(log.len() > before, "{var}: a tunnel was made");
        assert!(
            log[before..]
                .iter()
                .all(|t| *t == format!("{PROXIED_HOST}:{port}")),
            "only the AWS endpoint went through the proxy: {log:?}"
        );
        assert_no_plaintext(&r, &[b"proxied-plaintext", b"task-role-secret"]);
    }
    assert!(
        !creds.requests.lock().unwrap().is_empty(),
        "the credentials endpoint was reached directly"
    );
    // NO_PROXY sends the endpoint around the proxy (where its name does not resolve).
    let before = tunnels.lock().unwrap().len();
    let mut env = base("HTTPS_PROXY");
    env.insert("NO_PROXY".into(), PROXIED_HOST.into());
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("cannot resolve"), "{}", r.stderr());
    assert_eq!(tunnels.lock().unwrap().len(), before);
    // A proxy setting that is not a URL is a configuration error before any call.
    let mut env = base("HTTPS_PROXY");
    env.insert("HTTPS_PROXY".into(), "not a url".into());
    let (r, _) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(78), "{}", r.stderr());
    assert!(
        r.stderr().contains("HTTPS_PROXY is not a proxy URL"),
        "{}",
        r.stderr()
    );
}
