//! Fleet scale: 500 wrappers started together against a proxy in front of moto that admits
//! about 40 requests per second (SSM's default rate) and throttles the rest. Every one must
//! start its application with the right values; none may start with an unresolved value. It is
//! a test binary of its own, so cargo runs it alone, after the others.

#[path = "e2e/common/mod.rs"]
mod common;

use common::proxy::{self, Fault};
use common::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Admits about `rate` requests per second (a token bucket of one second), throttles the rest.
fn rate_limited(
    rate: f64,
) -> (
    impl Fn(usize, &str) -> Fault + Send + Sync,
    Arc<AtomicUsize>,
) {
    let throttled = Arc::new(AtomicUsize::new(0));
    let counter = throttled.clone();
    let bucket = Mutex::new((rate, Instant::now()));
    let policy = move |_: usize, _: &str| {
        let mut b = bucket.lock().unwrap();
        let now = Instant::now();
        b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * rate).min(rate);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            Fault::Pass
        } else {
            counter.fetch_add(1, Ordering::Relaxed);
            Fault::Error(400, "ThrottlingException")
        }
    };
    (policy, throttled)
}

#[test]
fn five_hundred_wrappers_starting_together_all_start_with_the_right_values() {
    const N: usize = 500;
    let (policy, throttled) = rate_limited(40.0);
    let proxy = proxy::start(moto().port, policy);
    let kms_plain = b"Zq-fleet-kms-plaintext".to_vec();
    let ssm_plain = b"Zq-fleet-ssm-plaintext".to_vec();
    let name = unique("fleet");
    put_parameter(
        &name,
        std::str::from_utf8(&ssm_plain).unwrap(),
        "SecureString",
    );
    let mut env = aws_env();
    env.insert("AWS_ENDPOINT_URL".into(), proxy.url.clone().into());
    env.insert("K".into(), cli_encrypt(&kms_plain).into());
    env.insert("P".into(), format!("ssm:{name}").into());
    let (k, p) = (kms_plain, ssm_plain);
    // The documented knobs for a fleet: spread the first calls, give the start more time. (On
    // this 2-core machine the 500 processes also share the CPU with moto, which real tasks on
    // their own hosts do not.)
    env.insert("KMS_ENV_START_JITTER".into(), "20s".into());
    env.insert("KMS_ENV_TIMEOUT".into(), "100s".into());
    let check = format!(
        "test \"$K\" = '{}' && test \"$P\" = '{}' || exit 99",
        String::from_utf8(k.clone()).unwrap(),
        String::from_utf8(p.clone()).unwrap()
    );
    let started = Instant::now();
    let children: Vec<_> = (0..N)
        .map(|_| {
            kms_env(&env)
                .args(["exec", "--", "sh", "-c", &check])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let waiters: Vec<_> = children
        .into_iter()
        .map(|child| {
            std::thread::spawn(move || {
                let out = child.wait_with_output().unwrap();
                (out.status.code(), started.elapsed(), out.stderr)
            })
        })
        .collect();
    let results: Vec<_> = waiters.into_iter().map(|w| w.join().unwrap()).collect();
    let total = started.elapsed();

    let failed: Vec<String> = results
        .iter()
        .filter(|(code, _, _)| *code != Some(0))
        .map(|(code, _, err)| format!("{code:?}: {}", String::from_utf8_lossy(err)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {N} failed, e.g. {}",
        failed.len(),
        failed[0]
    );
    let mut times: Vec<Duration> = results.iter().map(|(_, t, _)| *t).collect();
    times.sort();
    let ops = proxy.operations();
    let pct = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64();
    eprintln!(
        "fleet: {N} wrappers, {} requests ({} throttled, {} retries), app started after \
         min {:.1}s, median {:.1}s, p90 {:.1}s, max {:.1}s; all done in {:.1}s",
        ops.len(),
        throttled.load(Ordering::Relaxed),
        ops.len() - 2 * N,
        pct(0.0),
        pct(0.5),
        pct(0.9),
        pct(1.0),
        total.as_secs_f64()
    );
    assert!(ops.len() >= 2 * N);
    for (_, _, err) in &results {
        let r = Run {
            code: Some(0),
            stdout: Vec::new(),
            stderr: err.clone(),
            elapsed: Duration::ZERO,
        };
        assert_no_plaintext(&r, &[&k, &p]);
    }
}
