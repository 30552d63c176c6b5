//! The conditions of a `FROM scratch` image, without Docker: the statically linked binary runs
//! as root in a chroot that holds only itself, a tiny static test application, `/etc/hosts`
//! and `/etc/resolv.conf` (no libc, no CA bundle, no shell), and reaches moto by a host name.
//!
//! The static binary is built by `scripts/test` (`+crt-static`) and passed in
//! `KMS_ENV_STATIC_BIN`.

use crate::common::tls::tls_front;
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn static_binary() -> PathBuf {
    let path = std::env::var_os("KMS_ENV_STATIC_BIN")
        .map(PathBuf::from)
        .expect(
            "KMS_ENV_STATIC_BIN is not set: run ./scripts/test, which builds the static binary",
        );
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !has_interpreter(&bytes),
        "{} is dynamically linked",
        path.display()
    );
    path
}

/// Whether an ELF64 file asks for a dynamic loader (a PT_INTERP program header).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF");
    let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        u32::from_le_bytes(elf[at..at + 4].try_into().unwrap()) == 3
    })
}

/// An empty root with the binary, a static C app that prints two variables, and /etc.
fn scratch_root(hosts: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(static_binary(), root.path().join("kms-env")).unwrap();
    let source = root.path().join("app.c");
    std::fs::write(
        &source,
        r#"#include <stdio.h>
#include <stdlib.h>
int main(void) {
    const char *k = getenv("K"), *p = getenv("P");
    printf("K=%s\nP=%s\n", k ? k : "(unset)", p ? p : "(unset)");
    return 0;
}
"#,
    )
    .unwrap();
    let cc = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(root.path().join("app"))
        .arg(&source)
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    std::fs::remove_file(&source).unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/hosts"), hosts).unwrap();
    std::fs::write(
        root.path().join("etc/resolv.conf"),
        "nameserver 127.0.0.1\n",
    )
    .unwrap();
    root
}

fn in_chroot(
    root: &Path,
    env: &std::collections::BTreeMap<std::ffi::OsString, std::ffi::OsString>,
) -> Run {
    run(Command::new("/usr/sbin/chroot")
        .arg(root)
        .args(["/kms-env", "exec", "--", "/app"])
        .env_clear()
        .envs(env))
}

fn listing(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = walk(root)
        .into_iter()
        .map(|p| p.strip_prefix(root).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn secrets_resolve_in_an_empty_root_reaching_moto_by_host_name() {
    let root = scratch_root("127.0.0.1 localhost\n127.0.0.1 moto.internal\n");
    assert_eq!(
        listing(root.path()),
        ["app", "etc", "etc/hosts", "etc/resolv.conf", "kms-env"]
    );
    let p = unique("chroot");
    put_parameter(&p, "chroot-ssm-plaintext", "SecureString");
    let mut env = aws_env();
    env.insert("PATH".into(), "/".into());
    env.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://moto.internal:{}", moto().port).into(),
    );
    env.insert("K".into(), cli_encrypt(b"chroot-kms-plaintext").into());
    env.insert("P".into(), format!("ssm:{p}").into());
    let r = in_chroot(root.path(), &env);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(
        r.stdout(),
        "K=chroot-kms-plaintext\nP=chroot-ssm-plaintext\n"
    );
    assert!(r.stderr.is_empty(), "{}", r.stderr());
}

#[test]
fn https_in_an_empty_root_uses_built_in_roots_plus_aws_ca_bundle() {
    let (url, ca_pem) = tls_front();
    let root = scratch_root("127.0.0.1 localhost\n");
    std::fs::write(root.path().join("ca.pem"), ca_pem).unwrap();
    let mut env = aws_env();
    env.insert("PATH".into(), "/".into());
    env.insert("AWS_ENDPOINT_URL".into(), url.into());
    env.insert("K".into(), cli_encrypt(b"chroot-tls-plaintext").into());
    env.insert("P".into(), "plain".into());
    // No CA bundle in the root: the built-in roots do not know the test CA.
    let r = in_chroot(root.path(), &env);
    assert_eq!(r.code, Some(69), "{}", r.stderr());
    assert!(r.stderr().contains("UnknownIssuer"), "{}", r.stderr());
    assert!(r.stdout.is_empty());
    // AWS_CA_BUNDLE adds it.
    env.insert("AWS_CA_BUNDLE".into(), "/ca.pem".into());
    let r = in_chroot(root.path(), &env);
    assert_eq!(r.code, Some(0), "{}", r.stderr());
    assert_eq!(r.stdout(), "K=chroot-tls-plaintext\nP=plain\n");
}

#[test]
fn a_file_secret_without_a_memory_backed_default_directory_is_refused_with_78() {
    // The empty root has no /dev/shm and no XDG_RUNTIME_DIR: a disk is never chosen silently.
    let root = scratch_root("127.0.0.1 localhost\n127.0.0.1 moto.internal\n");
    let mut env = aws_env();
    env.insert("PATH".into(), "/".into());
    env.insert(
        "AWS_ENDPOINT_URL".into(),
        format!("http://moto.internal:{}", moto().port).into(),
    );
    env.insert(
        "K_FILE".into(),
        cli_encrypt(b"chroot-file-plaintext").into(),
    );
    let r = in_chroot(root.path(), &env);
    assert_eq!(r.code, Some(78), "{}", r.stderr());
    assert!(r.stderr().contains("--files-dir"), "{}", r.stderr());
    assert!(r.stdout.is_empty());
    assert_eq!(
        listing(root.path()),
        ["app", "etc", "etc/hosts", "etc/resolv.conf", "kms-env"]
    );
}
