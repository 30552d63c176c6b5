//! TLS in minimal images: a loopback TLS front for moto whose certificate comes from a CA made
//! here. Without that CA the wrapper refuses the endpoint (69, certificate not trusted); with
//! `AWS_CA_BUNDLE` or `SSL_CERT_FILE` it works.

use crate::common::tls::tls_front;
use crate::common::*;

#[test]
fn a_private_ca_is_refused_until_given_by_aws_ca_bundle_or_ssl_cert_file() {
    let (url, ca_pem) = tls_front();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), url.into());
    env.insert("S".into(), cli_encrypt(b"tls-plaintext").into());

    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr().contains("S (kms): unreachable"),
        "{}",
        r.stderr()
    );
    assert!(
        r.stderr().contains("certificate") && r.stderr().contains("UnknownIssuer"),
        "says the certificate is not trusted: {}",
        r.stderr()
    );

    for var in ["AWS_CA_BUNDLE", "SSL_CERT_FILE"] {
        let mut with_ca = env.clone();
        with_ca.insert(var.into(), ca_file.clone().into());
        let (r, dump) = exec_dump(&with_ca, &[], &[]);
        assert_eq!(r.code, Some(0), "{var}: {}", r.stderr());
        assert_eq!(dump.var("S").unwrap(), b"tls-plaintext");
        assert_no_plaintext(&r, &[b"tls-plaintext"]);
    }

    let mut missing = env.clone();
    missing.insert("AWS_CA_BUNDLE".into(), "/nonexistent/ca.pem".into());
    let (r, _) = exec_dump(&missing, &[], &[]);
    assert_eq!(r.code, Some(78), "{}", r.stderr());
    assert!(r.stderr().contains("AWS_CA_BUNDLE"), "{}", r.stderr());
}
