//! A loopback HTTP(S) proxy that adds a fixed latency to every request, for `bench/run`.
//!
//! Each request is read, held until LATENCY_MS after it arrived, then answered. The first time a
//! request (path, `X-Amz-Target`, body) is seen it is forwarded to the upstream (moto); identical
//! requests are then answered from a cache, so that moto's single-threaded Python does not
//! serialise concurrent requests: every request costs the same latency, like a service with
//! ample capacity. One thread per connection, compiled, so the proxy itself does not queue the
//! 50 requests measured (a Python proxy serialised them under its interpreter lock).
//!
//! With CERT and KEY (PEM files) it speaks TLS, as real AWS endpoints do, and sends TICKETS
//! TLS 1.3 session tickets after each handshake (default 2, as rustls and OpenSSL do). With
//! `h2` after TICKETS it offers HTTP/2 and HTTP/1.1 by ALPN and speaks HTTP/2 (the `h2` crate's
//! server; each request is held on a thread of its own, as above).
//!
//! usage: latency_proxy UPSTREAM_PORT LATENCY_MS [CERT KEY [TICKETS [h2]]]   (prints its port)

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Key = (String, String, Vec<u8>);
type Cache = Arc<Mutex<HashMap<Key, Vec<u8>>>>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let upstream: u16 = args[1].parse().expect("UPSTREAM_PORT");
    let latency = Duration::from_millis(args[2].parse().expect("LATENCY_MS"));
    let tls = (args.len() > 4).then(|| {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&args[3])
            .expect("CERT")
            .map(|c| c.expect("CERT"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&args[4]).expect("KEY");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("certificate and key");
        let mut config = config;
        if let Some(tickets) = args.get(5) {
            config.send_tls13_tickets = tickets.parse().expect("TICKETS");
        }
        if args.get(6).is_some_and(|a| a == "h2") {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Arc::new(config)
    });
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    println!("{}", listener.local_addr().expect("address").port());
    let cache: Cache = Arc::default();
    if let Some(config) = &tls
        && !config.alpn_protocols.is_empty()
    {
        serve_alpn(listener, config.clone(), upstream, latency, cache);
    }
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = stream.set_nodelay(true);
        let (cache, tls) = (cache.clone(), tls.clone());
        std::thread::spawn(move || match tls {
            Some(config) => {
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                serve(
                    rustls::StreamOwned::new(conn, stream),
                    upstream,
                    latency,
                    &cache,
                );
            }
            None => serve(stream, upstream, latency, &cache),
        });
    }
}

/// Reads one HTTP/1.1 message: its head and its body (Content-Length framing).
fn read_message(reader: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len = header(&head, "content-length").map_or(0, |v| v.parse().unwrap_or(0));
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some((head, body))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The upstream's answer to one request, as bytes to send back (`None` if it failed).
fn forward(upstream: u16, head: &str, body: &[u8]) -> Option<(bool, Vec<u8>)> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    // One request per upstream connection.
    let head = head.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(body).ok()?;
    let (rhead, rbody) = read_message(&mut BufReader::new(up))?;
    let ok = rhead.starts_with("HTTP/1.1 200") || rhead.starts_with("HTTP/1.0 200");
    let kept: String = rhead
        .lines()
        .filter(|l| {
            let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
            !matches!(
                name.as_str(),
                "connection" | "content-length" | "date" | "server"
            )
        })
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l}\r\n"))
        .collect();
    let mut out = format!("{kept}Content-Length: {}\r\n\r\n", rbody.len()).into_bytes();
    out.extend_from_slice(&rbody);
    Some((ok, out))
}

/// The answer to one request (from the cache, or the upstream's), as HTTP/1.1 bytes, held
/// until `latency` after `arrived`.
fn answer(
    upstream: u16,
    cache: &Cache,
    latency: Duration,
    arrived: Instant,
    head: &str,
    body: Vec<u8>,
) -> Option<Vec<u8>> {
    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let target = header(head, "x-amz-target").unwrap_or_default().to_owned();
    let key = (path, target, body);
    let cached = cache.lock().ok().and_then(|c| c.get(&key).cloned());
    let answer = match cached {
        Some(answer) => answer,
        None => {
            let (ok, answer) = forward(upstream, head, &key.2)?;
            if ok && let Ok(mut c) = cache.lock() {
                c.insert(key, answer.clone());
            }
            answer
        }
    };
    if let Some(rest) = latency.checked_sub(arrived.elapsed()) {
        std::thread::sleep(rest);
    }
    Some(answer)
}

fn serve(stream: impl Read + Write, upstream: u16, latency: Duration, cache: &Cache) {
    let mut reader = BufReader::new(stream);
    while let Some((head, body)) = read_message(&mut reader) {
        let arrived = Instant::now();
        let Some(answer) = answer(upstream, cache, latency, arrived, &head, body) else {
            return;
        };
        let out = reader.get_mut();
        if out.write_all(&answer).is_err() || out.flush().is_err() {
            return;
        }
    }
}

/// Serves TLS with the ALPN protocols of `config` (`h2`, `http/1.1`), speaking HTTP/2 (the `h2`
/// crate's server; a connection that takes HTTP/1.1 is closed): each request is answered by
/// [`answer`] on a blocking thread of its own.
fn serve_alpn(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    upstream: u16,
    latency: Duration,
    cache: Cache,
) -> ! {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1024)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        listener.set_nonblocking(true).expect("non-blocking");
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, cache) = (acceptor.clone(), cache.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return;
                }
                let Ok(mut connection) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((request, respond))) = connection.accept().await {
                    tokio::spawn(answer_h2(
                        request,
                        respond,
                        upstream,
                        latency,
                        cache.clone(),
                    ));
                }
            });
        }
    })
}

/// One request of [`serve_alpn`], as an HTTP/1.1 head for [`answer`], and its answer sent back
/// over HTTP/2.
async fn answer_h2(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<hyper::body::Bytes>,
    upstream: u16,
    latency: Duration,
    cache: Cache,
) {
    let arrived = Instant::now();
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
        "{} {} HTTP/1.1\r\nHost: {host}\r\n",
        parts.method,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            head.push_str(&format!(
                "{name}: {}\r\n",
                value.to_str().unwrap_or_default()
            ));
        }
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", bytes.len()));
    let out = tokio::task::spawn_blocking(move || {
        answer(upstream, &cache, latency, arrived, &head, bytes)
    })
    .await
    .ok()
    .flatten();
    let split = out
        .as_ref()
        .and_then(|o| o.windows(4).position(|w| w == b"\r\n\r\n"));
    let (Some(out), Some(split)) = (out, split) else {
        respond.send_reset(h2::Reason::INTERNAL_ERROR);
        return;
    };
    let rhead = String::from_utf8_lossy(&out[..split]);
    let mut lines = rhead.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(502);
    let mut response = http::Response::builder().status(status);
    for line in lines {
        if let Some((name, value)) = line.split_once(':')
            && !name.trim().eq_ignore_ascii_case("content-length")
        {
            response = response.header(name.trim(), value.trim());
        }
    }
    let Ok(mut stream) = respond.send_response(response.body(()).expect("response"), false) else {
        return;
    };
    let _ = stream.send_data(out[split + 4..].to_vec().into(), true);
}
