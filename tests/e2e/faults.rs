//! Faults between the wrapper and AWS, injected by a loopback proxy in front of moto:
//! throttling, 5xx, latency, connection resets, requests that never answer, chunked answers;
//! over plain HTTP and, behind a TLS front, over HTTPS. The fleet test is
//! its own test binary (`tests/fleet.rs`) so that it has the machine to itself.

use crate::common::proxy::{self, Fault};
use crate::common::tls::{Handshakes, tls_front_to};
use crate::common::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::sync::Mutex;
use std::time::Duration;

/// An environment with one KMS and one SSM reference, pointed at `url`.
fn setup(url: &str, tag: &str) -> (BTreeMap<OsString, OsString>, Vec<u8>, Vec<u8>) {
    let kms_plain = format!("Zq-{tag}-kms-plaintext").into_bytes();
    let ssm_plain = format!("Zq-{tag}-ssm-plaintext").into_bytes();
    let p = unique(tag);
    put_parameter(&p, std::str::from_utf8(&ssm_plain).unwrap(), "SecureString");
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), url.into());
    env.insert("K".into(), cli_encrypt(&kms_plain).into());
    env.insert("P".into(), format!("ssm:{p}").into());
    (env, kms_plain, ssm_plain)
}

/// Per operation: the first `n` requests get `fault`, the rest pass.
fn first_n(n: usize, fault: Fault) -> impl Fn(usize, &str) -> Fault + Send + Sync {
    let seen: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
    move |_, op| {
        let mut seen = seen.lock().unwrap();
        let count = seen.entry(op.to_owned()).or_default();
        *count += 1;
        if *count <= n {
            fault.clone()
        } else {
            Fault::Pass
        }
    }
}

fn count(ops: &[String], op: &str) -> usize {
    ops.iter().filter(|o| o.as_str() == op).count()
}

const DECRYPT: &str = "TrentService.Decrypt";
const GET_PARAMETERS: &str = "AmazonSSM.GetParameters";

#[test]
fn throttled_three_times_then_answered_starts_the_app() {
    let proxy = proxy::start(
        moto().port,
        first_n(3, Fault::Error(400, "ThrottlingException")),
    );
    let (env, k, p) = setup(&proxy.url, "throttle3");
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), k);
    assert_eq!(dump.var("P").unwrap(), p);
    let ops = proxy.operations();
    assert_eq!(count(&ops, DECRYPT), 4, "{ops:?}");
    assert_eq!(count(&ops, GET_PARAMETERS), 4, "{ops:?}");
    assert_no_plaintext(&r, &[&k, &p]);
}

#[test]
fn server_errors_then_answered_succeed() {
    let proxy = proxy::start(
        moto().port,
        first_n(2, Fault::Error(503, "ServiceUnavailableException")),
    );
    let (env, k, p) = setup(&proxy.url, "fivexx");
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), k);
    assert_eq!(dump.var("P").unwrap(), p);
    assert_eq!(count(&proxy.operations(), DECRYPT), 3);
}

#[test]
fn resets_and_latency_are_survived() {
    let proxy = proxy::start(moto().port, first_n(2, Fault::Reset));
    let (env, k, p) = setup(&proxy.url, "reset");
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), k);
    assert_eq!(dump.var("P").unwrap(), p);

    let slow = proxy::start(moto().port, |_, _| Fault::Delay(Duration::from_millis(400)));
    let (env, k, _) = setup(&slow.url, "latency");
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), k);
    assert!(r.elapsed >= Duration::from_millis(400));
}

#[test]
fn persistent_server_errors_are_69_after_retries() {
    let proxy = proxy::start(moto().port, |_, _| Fault::Error(500, "InternalFailure"));
    let (env, k, p) = setup(&proxy.url, "persistent5xx");
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    let err = r.stderr();
    assert!(
        err.contains("K (kms): service error: InternalFailure"),
        "{err}"
    );
    assert!(err.contains("P (ssm "), "{err}");
    let ops = proxy.operations();
    assert_eq!(count(&ops, DECRYPT), 5, "the default 5 attempts: {ops:?}");
    assert!(r.elapsed < Duration::from_secs(15), "{:?}", r.elapsed);
    assert_no_plaintext(&r, &[&k, &p]);

    // AWS_MAX_ATTEMPTS is honoured.
    let proxy = proxy::start(moto().port, |_, _| Fault::Error(500, "InternalFailure"));
    let mut env = env.clone();
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    env.insert("AWS_MAX_ATTEMPTS".into(), "2".into());
    let (r, _) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert_eq!(count(&proxy.operations(), DECRYPT), 2);
}

#[test]
fn persistent_throttling_is_69_throttled_at_the_deadline() {
    let proxy = proxy::start(moto().port, |_, _| Fault::Error(400, "ThrottlingException"));
    let (env, k, p) = setup(&proxy.url, "throttleforever");
    let (r, dump) = exec_dump(&env, &["--timeout", "3"], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    let err = r.stderr();
    assert!(err.contains("K (kms): throttled: still throttled"), "{err}");
    assert!(
        err.contains("P (ssm ") && err.contains("): throttled"),
        "{err}"
    );
    assert!(err.contains("ThrottlingException"), "{err}");
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    assert!(count(&proxy.operations(), DECRYPT) > 5, "kept trying");
    assert_no_plaintext(&r, &[&k, &p]);
}

#[test]
fn a_hanging_endpoint_is_69_timed_out_within_the_timeout() {
    let proxy = proxy::start(moto().port, |_, _| Fault::Hang);
    let (env, k, p) = setup(&proxy.url, "hang");
    let (r, dump) = exec_dump(&env, &["--timeout", "2"], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("K (kms): timed out"), "{}", r.stderr());
    assert!(r.stderr().contains("): timed out"), "{}", r.stderr());
    assert!(r.elapsed < Duration::from_secs(4), "{:?}", r.elapsed);
    assert_no_plaintext(&r, &[&k, &p]);
}

/// The fault proxy `proxy` behind a TLS front (HTTP/1.1, two session tickets a handshake):
/// `env` calls it over HTTPS, trusting the front's CA (its file lives as long as the returned
/// directory). Returns the front's handshakes.
fn over_tls(
    proxy: &proxy::Proxy,
    env: &mut BTreeMap<OsString, OsString>,
) -> (std::sync::Arc<Handshakes>, tempfile::TempDir) {
    let port: u16 = proxy.url.rsplit(':').next().unwrap().parse().unwrap();
    let (url, ca, handshakes) = tls_front_to(port, 2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca).unwrap();
    env.insert("AWS_ENDPOINT_URL".into(), url.into());
    env.insert("AWS_CA_BUNDLE".into(), dir.path().join("ca.pem").into());
    (handshakes, dir)
}

/// Over TLS, calls after the first to an origin that speaks HTTP/1.1 are kms-env's own
/// exchanges (src/aws/exchange.rs), not hyper's: their faults are classified and retried the
/// same way, and their connections are used again.
#[test]
fn over_tls_resets_are_retried_on_new_connections() {
    let proxy = proxy::start(moto().port, first_n(2, Fault::Reset));
    let (mut env, k, p) = setup(&proxy.url, "tlsreset");
    let (handshakes, _ca) = over_tls(&proxy, &mut env);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), k);
    assert_eq!(dump.var("P").unwrap(), p);
    let ops = proxy.operations();
    assert_eq!(count(&ops, DECRYPT), 3, "{ops:?}");
    assert_eq!(count(&ops, GET_PARAMETERS), 3, "{ops:?}");
    assert!(handshakes.http1_only() >= 2, "{handshakes:?}");
    assert_no_plaintext(&r, &[&k, &p]);
}

#[test]
fn over_tls_retries_after_throttling_use_idle_connections_again() {
    let proxy = proxy::start(
        moto().port,
        first_n(3, Fault::Error(400, "ThrottlingException")),
    );
    let (mut env, k, p) = setup(&proxy.url, "tlsthrottle");
    let (handshakes, _ca) = over_tls(&proxy, &mut env);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(dump.var("K").unwrap(), k);
    assert_eq!(dump.var("P").unwrap(), p);
    let ops = proxy.operations();
    assert_eq!(ops.len(), 8, "{ops:?}");
    // Without reuse every attempt would be a connection: 8. The first call's connection is
    // hyper's (it learns the protocol), the others' ours, used again after each answer.
    assert!(handshakes.accepted() <= 4, "{handshakes:?}");
    assert!(handshakes.http1_only() >= 1, "{handshakes:?}");
    assert_no_plaintext(&r, &[&k, &p]);
}

#[test]
fn over_tls_chunked_answers_are_read() {
    let proxy = proxy::start(moto().port, |_, _| Fault::Chunked);
    let (mut env, _, p) = setup(&proxy.url, "tlschunked");
    let plaintexts: Vec<String> = (0..6).map(|i| format!("Zq-chunked-secret-{i}")).collect();
    for (i, plain) in plaintexts.iter().enumerate() {
        env.insert(format!("C{i}").into(), cli_encrypt(plain.as_bytes()).into());
    }
    let (handshakes, _ca) = over_tls(&proxy, &mut env);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    for (i, plain) in plaintexts.iter().enumerate() {
        assert_eq!(dump.var(&format!("C{i}")).unwrap(), plain.as_bytes());
    }
    assert_eq!(dump.var("P").unwrap(), p);
    assert!(handshakes.http1_only() >= 1, "{handshakes:?}");
}

#[test]
fn over_tls_a_hanging_endpoint_is_69_timed_out_and_errors_are_69_after_retries() {
    let proxy = proxy::start(moto().port, |_, _| Fault::Hang);
    let (mut env, k, p) = setup(&proxy.url, "tlshang");
    let (_, _ca) = over_tls(&proxy, &mut env);
    let (r, dump) = exec_dump(&env, &["--timeout", "2"], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(r.stderr().contains("K (kms): timed out"), "{}", r.stderr());
    assert!(r.elapsed < Duration::from_secs(4), "{:?}", r.elapsed);
    assert_no_plaintext(&r, &[&k, &p]);

    let proxy = proxy::start(moto().port, |_, _| Fault::Error(500, "InternalFailure"));
    let (mut env, k, p) = setup(&proxy.url, "tls5xx");
    let (handshakes, _ca) = over_tls(&proxy, &mut env);
    let (r, dump) = exec_dump(&env, &[], &[]);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(!dump.started());
    assert!(
        r.stderr()
            .contains("K (kms): service error: InternalFailure"),
        "{}",
        r.stderr()
    );
    assert_eq!(count(&proxy.operations(), DECRYPT), 5);
    assert!(handshakes.http1_only() >= 1, "{handshakes:?}");
    assert_no_plaintext(&r, &[&k, &p]);
}
