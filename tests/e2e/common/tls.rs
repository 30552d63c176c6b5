//! A loopback TLS front for moto with a certificate from a CA made here.

use super::moto;
use super::proxy::read_message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The handshakes a TLS front made, in full and resumed, the TCP connections it accepted, and
/// what the clients offered by ALPN.
#[derive(Debug, Default)]
pub struct Handshakes {
    full: AtomicUsize,
    resumed: AtomicUsize,
    accepted: AtomicUsize,
    offered_h2: AtomicUsize,
    http1_only: AtomicUsize,
    key_shares: Mutex<Vec<[u8; 32]>>,
}

impl Handshakes {
    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Full handshakes so far.
    pub fn full(&self) -> usize {
        self.full.load(Ordering::SeqCst)
    }

    /// Resumed handshakes so far.
    pub fn resumed(&self) -> usize {
        self.resumed.load(Ordering::SeqCst)
    }

    /// Handshakes whose client offered HTTP/2 by ALPN (kms-env's through hyper's pool).
    pub fn offered_h2(&self) -> usize {
        self.offered_h2.load(Ordering::SeqCst)
    }

    /// Handshakes whose client offered HTTP/1.1 alone by ALPN (kms-env's own exchanges, to an
    /// origin known to speak HTTP/1.1).
    pub fn http1_only(&self) -> usize {
        self.http1_only.load(Ordering::SeqCst)
    }

    /// The X25519 key share of each ClientHello so far.
    pub fn key_shares(&self) -> Vec<[u8; 32]> {
        self.key_shares.lock().unwrap().clone()
    }
}

/// The X25519 key share in the ClientHello `hello` (a TLS record as the client sent it): the
/// 32 bytes after the `key_share` extension's X25519 entry (group 0x001d, length 32).
fn x25519_share(hello: &[u8]) -> Option<[u8; 32]> {
    hello.windows(10).enumerate().find_map(|(at, w)| {
        (w[..2] == [0x00, 0x33] && w[6..] == [0x00, 0x1d, 0x00, 0x20])
            .then(|| hello.get(at + 10..at + 42)?.try_into().ok())
            .flatten()
    })
}

/// A reader that keeps a copy of what it reads (a ClientHello, for [`x25519_share`]).
struct Copying<'a> {
    tcp: &'a mut TcpStream,
    read: Vec<u8>,
}

impl Read for Copying<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.read.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

/// A host name the TLS front's certificate also holds, which does not resolve: only a proxy
/// (see `proxy::connect_proxy`) can reach it.
pub const PROXIED_HOST: &str = "kms-env-proxy.test";

/// Starts a TLS front for moto. Returns its `https://localhost:PORT` URL and the CA's PEM.
pub fn tls_front() -> (String, String) {
    let (url, ca, _) = tls_front_with(2);
    (url, ca)
}

/// A server configuration for `localhost`, `127.0.0.1` and [`PROXIED_HOST`] with a certificate
/// from a CA made here, sending `tickets` TLS 1.3 session tickets after each handshake and
/// offering `alpn`. Returns it and the CA's PEM.
fn server_config(tickets: usize, alpn: &[&[u8]]) -> (Arc<rustls::ServerConfig>, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kms-env test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        PROXIED_HOST.to_owned(),
    ])
    .unwrap()
    .signed_by(&leaf_key, &ca)
    .unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    )
    .unwrap();
    config.send_tls13_tickets = tickets;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), ca.pem())
}

/// A TLS front for moto that sends `tickets` TLS 1.3 session tickets after each handshake
/// (rustls's default is 2), speaks HTTP/1.1 without ALPN, and counts its handshakes.
pub fn tls_front_with(tickets: usize) -> (String, String, Arc<Handshakes>) {
    tls_front_to(moto().port, tickets)
}

/// A TLS front as [`tls_front_with`] for the HTTP server on `127.0.0.1:upstream` (moto, or a
/// fault proxy in front of it): each request is sent on a new connection to it, and its answer
/// (framed by Content-Length or chunked) relayed; when it closes without answering, or never
/// answers, so does the front.
pub fn tls_front_to(upstream: u16, tickets: usize) -> (String, String, Arc<Handshakes>) {
    front(upstream, tickets, Duration::ZERO)
}

/// A TLS front as [`tls_front_with`] that holds each connection's session tickets back for
/// `delay` after its handshake (a server, or a network, slow to send them).
pub fn tls_front_with_late_tickets(
    tickets: usize,
    delay: Duration,
) -> (String, String, Arc<Handshakes>) {
    front(moto().port, tickets, delay)
}

fn front(upstream: u16, tickets: usize, delay: Duration) -> (String, String, Arc<Handshakes>) {
    let (config, ca) = server_config(tickets, &[]);
    let handshakes = Arc::new(Handshakes::default());
    let counts = handshakes.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            counts.accepted.fetch_add(1, Ordering::SeqCst);
            let (config, counts) = (config.clone(), counts.clone());
            std::thread::spawn(move || {
                let mut acceptor = rustls::server::Acceptor::default();
                let mut hello = Copying {
                    tcp: &mut tcp,
                    read: Vec::new(),
                };
                let accepted = loop {
                    match acceptor.read_tls(&mut hello) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    match acceptor.accept() {
                        Ok(Some(accepted)) => break accepted,
                        Ok(None) => {}
                        Err(_) => return,
                    }
                };
                if let Some(share) = x25519_share(&hello.read) {
                    counts.key_shares.lock().unwrap().push(share);
                }
                let offered: Vec<Vec<u8>> = accepted
                    .client_hello()
                    .alpn()
                    .map(|protocols| protocols.map(<[u8]>::to_vec).collect())
                    .unwrap_or_default();
                if offered.iter().any(|p| p == b"h2") {
                    counts.offered_h2.fetch_add(1, Ordering::SeqCst);
                } else if offered == [b"http/1.1".to_vec()] {
                    counts.http1_only.fetch_add(1, Ordering::SeqCst);
                }
                let Ok(mut conn) = accepted.into_connection(config) else {
                    return;
                };
                if !delay.is_zero() {
                    // The handshake to its end by hand: its tickets are then queued, not
                    // written (rustls's `complete_io` would write them at once); the next
                    // write, `delay` later, sends them.
                    while conn.is_handshaking() {
                        while conn.wants_write() {
                            if conn.write_tls(&mut tcp).is_err() {
                                return;
                            }
                        }
                        match conn.read_tls(&mut tcp) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        if conn.process_new_packets().is_err() {
                            return;
                        }
                    }
                    std::thread::sleep(delay);
                }
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                let mut counted = false;
                while let Some((head, body)) = read_message(&mut tls) {
                    if !counted {
                        counted = true;
                        match tls.get_ref().conn.handshake_kind() {
                            Some(rustls::HandshakeKind::Resumed) => &counts.resumed,
                            _ => &counts.full,
                        }
                        .fetch_add(1, Ordering::SeqCst);
                    }
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                        return;
                    };
                    if up.write_all(head.as_bytes()).is_err() || up.write_all(&body).is_err() {
                        return;
                    }
                    let Some((rhead, rbody)) = read_message(&mut BufReader::new(up)) else {
                        return;
                    };
                    let out = tls.get_mut();
                    if out.write_all(rhead.as_bytes()).is_err() || out.write_all(&rbody).is_err() {
                        return;
                    }
                    let _ = out.flush();
                }
            });
        }
    });
    (format!("https://localhost:{port}"), ca, handshakes)
}

/// What the HTTP/2 front served.
#[derive(Debug, Default)]
pub struct Served {
    connections: AtomicUsize,
    h2_requests: AtomicUsize,
    refused: AtomicUsize,
    refused_streams: AtomicUsize,
}

impl Served {
    /// TLS connections that took HTTP/2.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Requests served so far (all over HTTP/2).
    pub fn h2_requests(&self) -> usize {
        self.h2_requests.load(Ordering::SeqCst)
    }

    /// TLS connections that took HTTP/1.1 (closed unserved).
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Streams refused (REFUSED_STREAM) over the limit of streams under way.
    pub fn refused_streams(&self) -> usize {
        self.refused_streams.load(Ordering::SeqCst)
    }
}

/// A TLS front for moto that offers HTTP/2 and HTTP/1.1 by ALPN, as a server that speaks both
/// does, and serves HTTP/2 (the `h2` crate's server), forwarding each request to moto over
/// HTTP/1.1. A connection that takes HTTP/1.1 is counted and closed.
pub fn h2_front() -> (String, String, Arc<Served>) {
    h2_front_with(100, None)
}

/// An HTTP/2 front ([`h2_front`]) that refuses (REFUSED_STREAM, unprocessed) the streams of a
/// connection beyond `max_streams` under way, as a server does with the streams a client opened
/// before it saw the server's limit, and, with `goaway_after`, sends GOAWAY after that many
/// requests on its first connection: those are answered, the later ones left unprocessed, as a
/// server that rotates a connection does.
pub fn h2_front_with(
    max_streams: usize,
    goaway_after: Option<usize>,
) -> (String, String, Arc<Served>) {
    let (config, ca) = server_config(2, &[b"h2", b"http/1.1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = moto().port;
    let served = Arc::new(Served::default());
    let counts = served.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let acceptor = tokio_rustls::TlsAcceptor::from(config);
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, counts) = (acceptor.clone(), counts.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                        counts.refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    let first = counts.connections.fetch_add(1, Ordering::SeqCst) == 0;
                    let goaway_after = goaway_after.filter(|_| first);
                    let Ok(mut connection) = h2::server::handshake(tls).await else {
                        return;
                    };
                    let (mut here, under_way) = (0, Arc::new(AtomicUsize::new(0)));
                    while let Some(Ok((request, mut respond))) = connection.accept().await {
                        if under_way.load(Ordering::SeqCst) >= max_streams {
                            respond.send_reset(h2::Reason::REFUSED_STREAM);
                            counts.refused_streams.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        counts.h2_requests.fetch_add(1, Ordering::SeqCst);
                        under_way.fetch_add(1, Ordering::SeqCst);
                        let under_way = under_way.clone();
                        tokio::spawn(async move {
                            to_moto(request, respond, upstream).await;
                            under_way.fetch_sub(1, Ordering::SeqCst);
                        });
                        here += 1;
                        if goaway_after == Some(here) {
                            connection.abrupt_shutdown(h2::Reason::NO_ERROR);
                        }
                    }
                });
            }
        });
    });
    (format!("https://localhost:{port}"), ca, served)
}

/// Headers of one HTTP/1.1 connection, which HTTP/2 does not carry.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
];

/// One request of the HTTP/2 front, forwarded to moto as an HTTP/1.1 request; a failure resets
/// the stream.
async fn to_moto(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<hyper::body::Bytes>,
    upstream: u16,
) {
    let (parts, mut body) = request.into_parts();
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let host = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {host}\r\n",
        parts.method,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    for (name, value) in &parts.headers {
        if name != "host" && !HOP_BY_HOP.contains(&name.as_str()) {
            head.push_str(&format!("{name}: {}\r\n", value.to_str().unwrap_or("")));
        }
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        bytes.len()
    ));
    let answer = tokio::task::spawn_blocking(move || {
        let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
        up.write_all(head.as_bytes()).ok()?;
        up.write_all(&bytes).ok()?;
        read_message(&mut BufReader::new(up))
    })
    .await
    .ok()
    .flatten();
    let Some((rhead, rbody)) = answer else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let mut lines = rhead.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(502);
    let mut response = http::Response::builder().status(status);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if !HOP_BY_HOP.contains(&name.as_str()) {
                response = response.header(name, value.trim());
            }
        }
    }
    let Ok(mut stream) = respond.send_response(response.body(()).unwrap(), false) else {
        return;
    };
    let _ = stream.send_data(rbody.into(), true);
}
