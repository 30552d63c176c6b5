//! The floor of a start, for `bench/run`: the least a client must do to resolve `kms:` values,
//! built from the libraries kms-env uses (tokio's current-thread runtime, rustls with ring, h2,
//! aws-sigv4) and nothing else. Over TLS the first connection offers HTTP/2 and HTTP/1.1, as
//! kms-env's do, and the other requests wait for its protocol: over HTTP/2 they are streams of
//! that connection; over HTTP/1.1 (and plain HTTP) each request has a connection of its own,
//! which waits for a TLS 1.3 session ticket as kms-env's do. Per `kms:` value it signs one KMS
//! `Decrypt`, sends it, reads the answer and decodes its plaintext; `ssm:` references go in
//! `GetParameters` calls of 10 names, as kms-env sends them. Then it execs the command with the
//! plaintexts. There is no SDK, no configuration, no retry, no proxy, no system trust store (only
//! `AWS_CA_BUNDLE`), no error handling beyond a panic: what is left is the work the protocols ask
//! for. BENCHMARKS.md compares kms-env with it.
//!
//! usage: floor COMMAND [ARGS...]   with AWS_ENDPOINT_URL (`http://` or `https://HOST:PORT`),
//! AWS_CA_BUNDLE (for https), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and variables
//! whose values are `kms:BASE64` or `ssm:NAME`.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::body::Bytes;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Resumption};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::os::unix::process::CommandExt as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::{Semaphore, watch};

/// How long a connection waits for a ticket before making a full handshake (kms-env's wait).
const TICKET_WAIT: Duration = Duration::from_millis(20);

fn main() {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let endpoint = var("AWS_ENDPOINT_URL");
    let (tls, authority) = match endpoint.split_once("://") {
        Some(("https", rest)) => (true, rest.trim_end_matches('/').to_owned()),
        Some(("http", rest)) => (false, rest.trim_end_matches('/').to_owned()),
        _ => panic!("AWS_ENDPOINT_URL is not http(s)://HOST:PORT"),
    };
    let mut values = Vec::new();
    let mut names = Vec::new();
    for (var, value) in std::env::vars() {
        if let Some(blob) = value.strip_prefix("kms:") {
            values.push(Call::Decrypt(var, STANDARD.decode(blob).expect("base64")));
        } else if let Some(name) = value.strip_prefix("ssm:") {
            names.push((var, name.to_owned()));
        }
    }
    // SSM parameters in batches of 10, as kms-env asks for them.
    while !names.is_empty() {
        let rest = names.split_off(names.len().min(10));
        values.push(Call::GetParameters(std::mem::replace(&mut names, rest)));
    }
    let plaintexts = if values.is_empty() {
        Vec::new()
    } else {
        let addr = authority
            .to_socket_addrs()
            .expect("address")
            .next()
            .expect("address");
        let host = authority.rsplit_once(':').map_or(&*authority, |(h, _)| h);
        let client = Arc::new(Client {
            addr,
            url: format!("{endpoint}/"),
            authority: authority.clone(),
            server_name: ServerName::try_from(host.to_owned()).expect("host name"),
            tls: tls.then(|| tls_client(&var("AWS_CA_BUNDLE"))),
            identity: Credentials::new(
                var("AWS_ACCESS_KEY_ID"),
                var("AWS_SECRET_ACCESS_KEY"),
                std::env::var("AWS_SESSION_TOKEN").ok(),
                None,
                "environment",
            )
            .into(),
            region: var("AWS_REGION"),
            first: watch::Sender::new(None),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let calls: Vec<_> = values
                .into_iter()
                .enumerate()
                .map(|(i, call)| {
                    let client = client.clone();
                    tokio::spawn(async move { call.make(&client, i == 0).await })
                })
                .collect();
            let mut plaintexts = Vec::new();
            for call in calls {
                plaintexts.extend(call.await.expect("call"));
            }
            plaintexts
        })
    };
    let error = std::process::Command::new(&command[0])
        .args(&command[1..])
        .envs(plaintexts)
        .exec();
    panic!("exec: {error}");
}

/// One request of a start: a KMS `Decrypt` for a variable, or an SSM `GetParameters` for up to
/// 10 variables' parameters.
enum Call {
    Decrypt(String, Vec<u8>),
    GetParameters(Vec<(String, String)>),
}

impl Call {
    /// Sends the request; the variables with their plaintexts.
    async fn make(self, client: &Client, first: bool) -> Vec<(String, String)> {
        match self {
            Call::Decrypt(var, blob) => {
                let body = format!(r#"{{"CiphertextBlob":"{}"}}"#, STANDARD.encode(blob));
                let answer = client
                    .call(first, "kms", "TrentService.Decrypt", body)
                    .await;
                vec![(var, plaintext(&answer))]
            }
            Call::GetParameters(vars) => {
                let names: Vec<&str> = vars.iter().map(|(_, n)| n.as_str()).collect();
                let body = serde_json::json!({ "Names": names, "WithDecryption": true });
                let answer = client
                    .call(first, "ssm", "AmazonSSM.GetParameters", body.to_string())
                    .await;
                let answer: serde_json::Value = serde_json::from_slice(&answer).expect("JSON");
                let found: std::collections::HashMap<&str, &str> = answer["Parameters"]
                    .as_array()
                    .expect("Parameters")
                    .iter()
                    .map(|p| {
                        (
                            p["Name"].as_str().expect("Name"),
                            p["Value"].as_str().expect("Value"),
                        )
                    })
                    .collect();
                vars.iter()
                    .map(|(var, name)| (var.clone(), found[name.as_str()].to_owned()))
                    .collect()
            }
        }
    }
}

/// The TLS side: a connector whose session store lets waiting connections know of each ticket.
struct Tls {
    connector: tokio_rustls::TlsConnector,
    tickets: Arc<Tickets>,
}

fn tls_client(ca_bundle: &str) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        CertificateDer::pem_file_iter(ca_bundle)
            .expect("AWS_CA_BUNDLE")
            .map(|c| c.expect("AWS_CA_BUNDLE")),
    );
    let mut provider = rustls::crypto::ring::default_provider();
    // As kms-env: AES-128-GCM with SHA-256 first.
    provider
        .cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    let tickets = Arc::new(Tickets {
        cache: ClientSessionMemoryCache::new(256),
        tls13: std::sync::Mutex::default(),
        issued: Semaphore::new(0),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = Resumption::store(tickets.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        tickets,
    }
}

/// The session store: rustls's in-memory one for key-exchange hints and TLS 1.2, and the TLS 1.3
/// tickets kept here, every one (rustls's keeps 8 a server), with a permit for each.
#[derive(Debug)]
struct Tickets {
    cache: ClientSessionMemoryCache,
    tls13: std::sync::Mutex<std::collections::VecDeque<rustls::client::Tls13ClientSessionValue>>,
    issued: Semaphore,
}

impl ClientSessionStore for Tickets {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.cache.set_kx_hint(name, group);
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.cache.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.cache.set_tls12_session(name, value);
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.cache.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.cache.remove_tls12_session(name);
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        // One server per start: the name is not kept.
        let _ = name;
        self.tls13.lock().expect("tickets").push_back(value);
        self.issued.add_permits(1);
    }
    fn take_tls13_ticket(
        &self,
        _: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.tls13.lock().expect("tickets").pop_front()
    }
}

/// The protocol of a start's first TLS connection: the other requests share it (HTTP/2) or
/// make connections of their own (HTTP/1.1).
#[derive(Clone)]
enum First {
    H2(h2::client::SendRequest<Bytes>),
    Http1,
}

struct Client {
    /// The first TLS connection's protocol, once known.
    first: watch::Sender<Option<First>>,
    addr: SocketAddr,
    url: String,
    authority: String,
    server_name: ServerName<'static>,
    tls: Option<Tls>,
    identity: Identity,
    region: String,
}

impl Client {
    /// One request to `service` with the `x-amz-target` `target` and the JSON `body`; the
    /// answer's body.
    async fn call(&self, first: bool, service: &str, target: &str, body: String) -> Vec<u8> {
        let headers = self.signed_headers(service, target, &body);
        match &self.tls {
            None => {
                let tcp = self.connect().await;
                exchange(tcp, &http1(&self.authority, &headers, &body)).await
            }
            Some(tls) => {
                if !first {
                    let mut known = self.first.subscribe();
                    let known = known
                        .wait_for(Option::is_some)
                        .await
                        .expect("first")
                        .clone();
                    if let Some(First::H2(send)) = known {
                        return h2_exchange(send, &self.url, &headers, body).await;
                    }
                    if let Ok(Ok(permit)) =
                        tokio::time::timeout(TICKET_WAIT, tls.tickets.issued.acquire()).await
                    {
                        permit.forget();
                    }
                }
                let tcp = self.connect().await;
                let stream = tls
                    .connector
                    .connect(self.server_name.clone(), tcp)
                    .await
                    .expect("TLS handshake");
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    let (send, connection) = h2::client::handshake(stream).await.expect("h2");
                    tokio::spawn(connection);
                    self.first.send_replace(Some(First::H2(send.clone())));
                    h2_exchange(send, &self.url, &headers, body).await
                } else {
                    if first {
                        self.first.send_replace(Some(First::Http1));
                    }
                    exchange(stream, &http1(&self.authority, &headers, &body)).await
                }
            }
        }
    }

    async fn connect(&self) -> tokio::net::TcpStream {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        tcp
    }

    /// The headers of a signed request to `service` for `target` with `body`, but `host` and
    /// `content-length`.
    fn signed_headers(&self, service: &str, target: &str, body: &str) -> Vec<(String, String)> {
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target),
        ];
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("signing parameters")
            .into();
        let signable = SignableRequest::new(
            "POST",
            &self.url,
            headers.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .expect("signable request");
        let (instructions, _) = sign(signable, &params).expect("signature").into_parts();
        headers
            .into_iter()
            .chain(instructions.headers())
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// An HTTP/1.1 request to `authority` with `headers` and `body`.
fn http1(authority: &str, headers: &[(String, String)], body: &str) -> Vec<u8> {
    let mut out = format!("POST / HTTP/1.1\r\nhost: {authority}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    out.into_bytes()
}

/// The decoded `Plaintext` of a `Decrypt` answer.
fn plaintext(answer: &[u8]) -> String {
    let text = std::str::from_utf8(answer).expect("UTF-8 answer");
    let after = &text[text.find(r#""Plaintext""#).expect("a plaintext") + 11..];
    let value = after.trim_start_matches([' ', ':']).strip_prefix('"');
    let value = value
        .and_then(|v| v.split('"').next())
        .expect("a plaintext");
    String::from_utf8(STANDARD.decode(value).expect("base64")).expect("UTF-8 plaintext")
}

/// Sends one request as a stream of an HTTP/2 connection; the answer's body.
async fn h2_exchange(
    send: h2::client::SendRequest<Bytes>,
    url: &str,
    headers: &[(String, String)],
    body: String,
) -> Vec<u8> {
    let mut send = send.ready().await.expect("h2 ready");
    let mut request = http::Request::post(url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let request = request.body(()).expect("request");
    let (answer, mut stream) = send.send_request(request, false).expect("h2 request");
    stream.send_data(body.into(), true).expect("h2 body");
    let answer = answer.await.expect("h2 answer");
    assert_eq!(answer.status(), 200, "answer");
    let mut body = answer.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("h2 data");
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    out
}

/// Writes `request` and reads one answer (Content-Length framing); its body.
async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, request: &[u8]) -> Vec<u8> {
    stream.write_all(request).await.expect("write");
    stream.flush().await.expect("flush");
    let mut buf = Vec::with_capacity(4096);
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).expect("UTF-8 head");
            assert!(head.starts_with("HTTP/1.1 200"), "answer: {head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().expect("Content-Length"))
                })
                .expect("Content-Length");
            if buf.len() >= end + 4 + len {
                return buf[end + 4..end + 4 + len].to_vec();
            }
        }
        let mut chunk = [0; 4096];
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the connection closed before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
}
