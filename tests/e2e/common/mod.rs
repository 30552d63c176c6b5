//! Test helpers: a real `moto_server` on a free loopback port (one per test process), the AWS
//! CLI and boto3 from the project's virtualenv, the built `kms-env` binary in a clean
//! environment, tiny loopback servers (container credentials, a black hole, a connection
//! counter) and the check that no plaintext ever shows up in captured output.

#![allow(dead_code)]

pub mod proxy;
pub mod tls;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const REGION: &str = "us-east-1";
/// moto's default account.
pub const ACCOUNT: &str = "123456789012";

/// The project's virtualenv with `moto[server]` and `awscli` (installed by scripts/test).
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("KMS_ENV_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv"));
    assert!(
        dir.join("bin/moto_server").exists() && dir.join("bin/aws").exists(),
        "no moto_server/aws in {}: run ./scripts/test, which installs them",
        dir.display()
    );
    dir
}

pub struct Moto {
    pub url: String,
    pub port: u16,
}

/// Picks a free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The one moto server of this test process shared by the tests; it dies with the process.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start_moto)
}

/// A new moto server of this test process (for a test that changes server-wide settings, such
/// as IAM enforcement); it dies with the process (PR_SET_PDEATHSIG, set from a thread that
/// never exits).
pub fn start_moto() -> Moto {
    {
        let port = free_port();
        let bin = venv().join("bin/moto_server");
        let log = std::env::temp_dir().join(format!("kms-env-moto-{port}.log"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = Command::new(bin);
            cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(Stdio::from(
                    std::fs::File::create(&log).unwrap().try_clone().unwrap(),
                ));
            die_with_parent(&mut cmd);
            let mut child = cmd.spawn().expect("start moto_server");
            tx.send(child.id()).unwrap();
            // This thread is the child's PDEATHSIG parent: it lives as long as moto does.
            let _ = child.wait();
        });
        rx.recv().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            url: format!("http://127.0.0.1:{port}"),
            port,
        }
    }
}

#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
}

/// A moto of its own whose requests are authenticated (SigV4 signatures checked against the
/// users' secret keys) and authorised (the users' policies) once [`IamMoto::enforce`] is
/// called: IAM enforcement is server-wide.
pub struct IamMoto {
    pub moto: Moto,
    /// The environment of the set-up calls (before enforcement).
    pub admin: BTreeMap<OsString, OsString>,
}

impl IamMoto {
    pub fn start() -> IamMoto {
        let moto = start_moto();
        let mut admin = aws_env();
        admin.insert("AWS_ENDPOINT_URL".into(), moto.url.clone().into());
        IamMoto { moto, admin }
    }

    /// The AWS CLI against this moto, as the admin.
    pub fn cli(&self, args: &[&str]) -> String {
        aws_with(&self.admin, args)
    }

    /// A new IAM user allowed `action` on everything: the environment with its access key.
    pub fn user(&self, name: &str, action: &str) -> BTreeMap<OsString, OsString> {
        self.cli(&["iam", "create-user", "--user-name", name]);
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]
        });
        self.cli(&[
            "iam",
            "put-user-policy",
            "--user-name",
            name,
            "--policy-name",
            "p",
            "--policy-document",
            &policy.to_string(),
        ]);
        let keys = self.cli(&[
            "iam",
            "create-access-key",
            "--user-name",
            name,
            "--query",
            "AccessKey.[AccessKeyId,SecretAccessKey]",
        ]);
        let (id, secret) = keys.split_once('\t').unwrap();
        let mut env = self.admin.clone();
        env.insert("AWS_ACCESS_KEY_ID".into(), id.into());
        env.insert("AWS_SECRET_ACCESS_KEY".into(), secret.into());
        env
    }

    /// A new KMS key's id.
    pub fn key(&self) -> String {
        self.cli(&["kms", "create-key", "--query", "KeyMetadata.KeyId"])
    }

    /// From now on, every request is authenticated and authorised.
    pub fn enforce(&self) {
        let reset = Command::new(venv().join("bin/python"))
            .args([
                "-c",
                "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset-auth', data=b'0', headers={'Content-Type': 'text/plain'}, method='POST'))",
                &self.moto.url,
            ])
            .status()
            .unwrap();
        assert!(reset.success());
    }
}

/// A minimal, fully controlled environment pointing at moto with static dummy credentials.
pub fn aws_env() -> BTreeMap<OsString, OsString> {
    let m = moto();
    [
        ("PATH", "/usr/local/bin:/usr/bin:/bin"),
        ("HOME", "/nonexistent-kms-env-test-home"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", REGION),
        ("AWS_DEFAULT_REGION", REGION),
        ("AWS_ENDPOINT_URL", &m.url),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect()
}

/// The AWS CLI from the virtualenv, against moto. Returns trimmed stdout.
pub fn aws(args: &[&str]) -> String {
    aws_with(&aws_env(), args)
}

/// The AWS CLI with exactly `env`. Returns trimmed stdout.
pub fn aws_with(env: &BTreeMap<OsString, OsString>, args: &[&str]) -> String {
    let out = Command::new(venv().join("bin/aws"))
        .args(args)
        .args(["--output", "text"])
        .env_clear()
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One KMS key for the whole test process.
pub fn key_id() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| aws(&["kms", "create-key", "--query", "KeyMetadata.KeyId"]))
}

/// A unique prefix for names, so tests sharing moto never collide.
pub fn unique(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("/kms-env-test/{tag}-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The test environment without static keys, for tests of other credential providers.
pub fn keyless_env() -> BTreeMap<OsString, OsString> {
    let mut env = aws_env();
    env.remove(OsStr::new("AWS_ACCESS_KEY_ID"));
    env.remove(OsStr::new("AWS_SECRET_ACCESS_KEY"));
    env
}

/// A unique Secrets Manager name (no leading '/').
pub fn secret_name(tag: &str) -> String {
    unique(tag).trim_start_matches('/').to_owned()
}

/// `create-secret` with a string (and `extra` arguments); returns (ARN, version id).
pub fn create_secret(name: &str, value: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "secretsmanager",
        "create-secret",
        "--name",
        name,
        "--secret-string",
        value,
        "--query",
        "[ARN,VersionId]",
    ];
    args.extend_from_slice(extra);
    let out = aws(&args);
    let (arn, version) = out.split_once('\t').unwrap();
    (arn.to_owned(), version.to_owned())
}

/// `create-secret` with binary bytes (AWS CLI v1 takes them only from a file).
pub fn create_binary_secret(name: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, bytes).unwrap();
    aws(&[
        "secretsmanager",
        "create-secret",
        "--name",
        name,
        "--secret-binary",
        &format!("fileb://{}", file.display()),
    ]);
}

/// Runs `aws kms <operation> <blob_flag> fileb://… --query <query>` with `bytes` in the file
/// (AWS CLI v1 takes binary blobs only from files), plus `extra` arguments.
pub fn aws_kms_blob(
    operation: &str,
    blob_flag: &str,
    bytes: &[u8],
    query: &str,
    extra: &[&str],
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob");
    std::fs::write(&file, bytes).unwrap();
    let fileb = format!("fileb://{}", file.display());
    let mut args = vec!["kms", operation, blob_flag, &fileb, "--query", query];
    args.extend_from_slice(extra);
    aws(&args)
}

/// `kms:<base64>` made by `aws kms encrypt` (not by us).
pub fn cli_encrypt(plaintext: &[u8]) -> String {
    let b64 = aws_kms_blob(
        "encrypt",
        "--plaintext",
        plaintext,
        "CiphertextBlob",
        &["--key-id", key_id()],
    );
    format!("kms:{b64}")
}

/// Stores a parameter with the AWS CLI.
pub fn put_parameter(name: &str, value: &str, kind: &str) {
    aws(&[
        "ssm",
        "put-parameter",
        "--name",
        name,
        "--type",
        kind,
        "--value",
        value,
        "--overwrite",
    ]);
}

/// Many ciphertexts and parameters in one process (boto3 from the virtualenv). Returns the
/// `kms:` values for `plaintexts`.
pub fn seed(plaintexts: &[String], parameters: &[(String, String, &str)]) -> Vec<String> {
    let script = r#"
import base64, json, sys, boto3
req = json.load(sys.stdin)
kms = boto3.client("kms")
ssm = boto3.client("ssm")
out = []
for p in req["plaintexts"]:
    blob = kms.encrypt(KeyId=req["key"], Plaintext=p.encode())["CiphertextBlob"]
    out.append("kms:" + base64.b64encode(blob).decode())
for name, value, kind in req["parameters"]:
    ssm.put_parameter(Name=name, Value=value, Type=kind, Overwrite=True)
print(json.dumps(out))
"#;
    let req = serde_json::json!({
        "key": key_id(),
        "plaintexts": plaintexts,
        "parameters": parameters,
    });
    let out = run_with_stdin(
        Command::new(venv().join("bin/python"))
            .args(["-c", script])
            .env_clear()
            .envs(aws_env()),
        req.to_string().as_bytes(),
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The `kms-env` binary under test with exactly `env` as its environment, started with the
/// default dispositions of the signals the tests send, as a container's first process starts:
/// a test runner under `nohup`, or a background job of a shell without job control, ignores
/// SIGHUP, SIGINT or SIGQUIT, and an ignored signal is never delivered (so `--init` could not
/// forward it).
pub fn kms_env(env: &BTreeMap<OsString, OsString>) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kms-env"));
    cmd.env_clear().envs(env).stdin(Stdio::null());
    default_signals(&mut cmd);
    cmd
}

#[allow(unsafe_code)]
fn default_signals(cmd: &mut Command) {
    use nix::sys::signal::{SigHandler, Signal, signal};
    use std::os::unix::process::CommandExt;
    // SAFETY: signal(2) is async-signal-safe, installs no handler code, and touches no memory of
    // the parent.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [
                Signal::SIGHUP,
                Signal::SIGINT,
                Signal::SIGQUIT,
                Signal::SIGTERM,
                Signal::SIGUSR1,
                Signal::SIGUSR2,
            ] {
                signal(sig, SigHandler::SigDfl).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

/// A finished run of the binary.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Run {
    /// The run whose process, started at `started`, ended with `out`.
    pub fn finished(out: Output, started: Instant) -> Run {
        Run {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: out.stderr,
            elapsed: started.elapsed(),
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `cmd` with `stdin` piped in, capturing stdout and stderr.
pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    Run::finished(child.wait_with_output().unwrap(), started)
}

pub fn run(cmd: &mut Command) -> Run {
    let started = Instant::now();
    Run::finished(cmd.output().unwrap(), started)
}

/// Fails if any plaintext (or its first 8 bytes, for longer ones) appears in the output.
pub fn assert_no_plaintext(run: &Run, secrets: &[&[u8]]) {
    for secret in secrets {
        let needles: Vec<&[u8]> = if secret.len() > 8 {
            vec![secret, &secret[..8]]
        } else {
            vec![secret]
        };
        for needle in needles {
            assert!(!needle.is_empty());
            for (stream, bytes) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "a plaintext appeared on {stream}: {}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}

/// An application that writes its argv and environment (NUL-separated) into files in a
/// fresh directory, so the wrapper's stdout and stderr hold nothing of the child's.
pub struct Dump {
    pub dir: tempfile::TempDir,
}

impl Dump {
    pub fn new() -> Dump {
        Dump {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// `sh -c '…' sh ARGS…` writing `args` and `env`, then exiting 0.
    pub fn command(&self, args: &[&str]) -> Vec<OsString> {
        let script = format!(
            "printf '%s\\0' \"$@\" > '{0}/args'; env -0 > '{0}/env'",
            self.dir.path().display()
        );
        let mut argv: Vec<OsString> = vec!["sh".into(), "-c".into(), script.into(), "sh".into()];
        argv.extend(args.iter().map(OsString::from));
        argv
    }

    pub fn started(&self) -> bool {
        self.dir.path().join("env").exists()
    }

    pub fn args(&self) -> Vec<Vec<u8>> {
        split_nul(&std::fs::read(self.dir.path().join("args")).unwrap())
    }

    /// The child's environment in order, as (name, value) bytes.
    pub fn env(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        split_nul(&std::fs::read(self.dir.path().join("env")).unwrap())
            .into_iter()
            .map(|kv| {
                let eq = kv.iter().position(|&b| b == b'=').unwrap();
                (kv[..eq].to_vec(), kv[eq + 1..].to_vec())
            })
            .collect()
    }

    pub fn var(&self, name: &str) -> Option<Vec<u8>> {
        self.env()
            .into_iter()
            .find(|(k, _)| k == name.as_bytes())
            .map(|(_, v)| v)
    }
}

fn split_nul(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    parts.pop(); // after the final NUL
    parts
}

/// Runs `kms-env exec -- <dump app>` with `env`.
pub fn exec_dump(env: &BTreeMap<OsString, OsString>, extra: &[&str], args: &[&str]) -> (Run, Dump) {
    let dump = Dump::new();
    let r = run(kms_env(env)
        .arg("exec")
        .args(extra)
        .arg("--")
        .args(dump.command(args)));
    (r, dump)
}

pub fn os(s: &[u8]) -> OsString {
    OsStr::from_bytes(s).to_owned()
}

pub fn bytes(s: &OsStr) -> Vec<u8> {
    s.to_owned().into_vec()
}

/// A loopback HTTP server that answers every GET with one JSON body; records every request's
/// head.
pub struct JsonServer {
    pub url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// ECS container credentials at `/v2/credentials/task`.
pub fn credentials_server() -> JsonServer {
    json_server(
        "/v2/credentials/task",
        r#"{"AccessKeyId":"AKIDTASKROLE","SecretAccessKey":"task-role-secret","Token":"task-role-token","Expiration":"2099-01-01T00:00:00Z","RoleArn":"arn:aws:iam::123456789012:role/app-task"}"#.to_owned(),
    )
}

/// ECS task metadata v4 at `/v4/task-id` (the URL), answering `/task` with `zone`.
pub fn task_metadata_server(zone: &str) -> JsonServer {
    json_server(
        "/v4/task-id",
        format!(
            r#"{{"Cluster":"default","TaskARN":"arn:aws:ecs:x:123456789012:task/default/abc","AvailabilityZone":"{zone}","LaunchType":"FARGATE"}}"#
        ),
    )
}

/// Serves `body` for every request; `url` is the base address plus `path`.
pub fn json_server(path: &str, body: String) -> JsonServer {
    http_server(path, move |_| Reply::ok(body.clone()))
}

/// What an [`http_server`] answers one request with.
pub struct Reply {
    /// The status line's code and reason, e.g. `200 OK`.
    pub status: &'static str,
    /// Extra header lines, each ending in `\r\n`.
    pub headers: &'static str,
    pub body: String,
}

impl Reply {
    pub fn ok(body: String) -> Self {
        Reply {
            status: "200 OK",
            headers: "",
            body,
        }
    }

    pub fn status(status: &'static str) -> Self {
        Reply {
            status,
            headers: "",
            body: String::new(),
        }
    }
}

/// A loopback HTTP server (one request per connection) that answers each request with what
/// `answer` makes of its head (the request line and headers as sent); every head is recorded.
/// `url` is the base address plus `path`.
pub fn http_server(path: &str, answer: impl Fn(&str) -> Reply + Send + 'static) -> JsonServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // The body (a POST's) is read too, so that closing the connection does not reset it.
            let Some((head, _body)) = proxy::read_message(&mut reader) else {
                continue;
            };
            let head = head.trim_end_matches("\r\n").to_owned() + "\r\n";
            let reply = answer(&head);
            seen.lock().unwrap().push(head);
            let _ = write!(
                stream,
                "HTTP/1.1 {}\r\nContent-Type: application/json\r\n{}Content-Length: {}\r\n\
                 Connection: close\r\n\r\n{}",
                reply.status,
                reply.headers,
                reply.body.len(),
                reply.body
            );
        }
    });
    JsonServer { url, requests }
}

/// Whether `head` (as [`http_server`] records it) has the header `name` with `value`.
pub fn has_header(head: &str, name: &str, value: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':')
            .is_some_and(|(n, v)| n.trim().eq_ignore_ascii_case(name) && v.trim() == value)
    })
}

/// A loopback server that accepts connections and never answers. Returns its URL.
pub fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    url
}

/// A loopback listener that counts connections (and answers nothing). Returns URL and count.
pub fn connection_counter() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    (url, count)
}

/// Spawns `kms-env` with piped stdout for tests that talk to the running application.
pub fn spawn(cmd: &mut Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
