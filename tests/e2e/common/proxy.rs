//! A loopback HTTP proxy in front of moto that records every request's operation
//! (`X-Amz-Target`) and can inject faults: error statuses, added latency, connection resets and
//! requests that never answer. Each connection is served by its own thread; each request is
//! forwarded upstream on a fresh connection.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// What to do with one request.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward it.
    Pass,
    /// Answer with this status and JSON error body (`__type`), without forwarding.
    Error(u16, &'static str),
    /// Wait, then forward.
    Delay(Duration),
    /// Close the connection without answering.
    Reset,
    /// Never answer.
    Hang,
    /// Forward it, and relay the answer in chunked transfer coding (two chunks, one with a
    /// chunk extension, and a trailer field) instead of with a Content-Length.
    Chunked,
    /// Answer with this status, content type and body, without forwarding (an IAM, proxy or
    /// firewall answer that is not the service's own error).
    Raw(u16, &'static str, &'static str),
}

/// The decision for request number `n` (0-based, across all connections) with operation `op`.
pub type Policy = dyn Fn(usize, &str) -> Fault + Send + Sync;

pub struct Proxy {
    pub url: String,
    /// The operation of every request received, in order (e.g. `TrentService.Decrypt`).
    pub requests: Arc<Mutex<Vec<String>>>,
    /// The body of every request received, in the same order.
    pub bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Proxy {
    pub fn operations(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The bodies of the requests of operation `op`, as JSON.
    pub fn bodies_of(&self, op: &str) -> Vec<serde_json::Value> {
        let ops = self.operations();
        let bodies = self.bodies.lock().unwrap();
        ops.iter()
            .zip(bodies.iter())
            .filter(|(o, _)| *o == op)
            .map(|(_, b)| serde_json::from_slice(b).unwrap_or(serde_json::Value::Null))
            .collect()
    }
}

/// Starts a proxy to `127.0.0.1:upstream`.
pub fn start(
    upstream: u16,
    policy: impl Fn(usize, &str) -> Fault + Send + Sync + 'static,
) -> Proxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = (requests.clone(), bodies.clone());
    let policy: Arc<Policy> = Arc::new(policy);
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let seen = seen.clone();
            let policy = policy.clone();
            std::thread::spawn(move || serve(client, upstream, &seen, &*policy));
        }
    });
    Proxy {
        url,
        requests,
        bodies,
    }
}

/// Reads one HTTP message head and body (Content-Length framing, or chunked: then the body is
/// its chunks as they were sent, to be relayed as they are). `None` at EOF.
pub fn read_message(reader: &mut impl BufRead) -> Option<(String, Vec<u8>)> {
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
    if header(&head, "transfer-encoding").is_some_and(|v| v.ends_with("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            body.extend_from_slice(line.as_bytes());
            let size = line.split(';').next()?.trim();
            let size = usize::from_str_radix(size, 16).ok()?;
            if size == 0 {
                // The trailer section, up to its empty line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).ok()? == 0 {
                        return None;
                    }
                    body.extend_from_slice(line.as_bytes());
                    if line == "\r\n" {
                        return Some((head, body));
                    }
                }
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
        }
    }
    let len = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
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

/// At most this many requests are in moto at once: a flood of connections would make the
/// single Python process, not the wrapper under test, the thing being measured.
const UPSTREAM_IN_FLIGHT: usize = 8;

/// A counting gate for [`UPSTREAM_IN_FLIGHT`].
static GATE: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// One request to moto on a fresh connection; `None` if that failed or stalled.
fn forward(upstream: u16, head: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let (lock, ready) = &GATE;
    let mut busy = lock.lock().unwrap();
    while *busy >= UPSTREAM_IN_FLIGHT {
        busy = ready.wait(busy).unwrap();
    }
    *busy += 1;
    drop(busy);
    let result = forward_now(upstream, head, body);
    *lock.lock().unwrap() -= 1;
    ready.notify_one();
    result
}

fn forward_now(upstream: u16, head: &str, body: &[u8]) -> Option<(String, Vec<u8>)> {
    let up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut writer = up.try_clone().ok()?;
    writer.write_all(head.as_bytes()).ok()?;
    writer.write_all(body).ok()?;
    read_message(&mut BufReader::new(up))
}

type Seen = (Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<Vec<u8>>>>);

fn serve(client: TcpStream, upstream: u16, seen: &Seen, policy: &Policy) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut client = client;
    while let Some((head, body)) = read_message(&mut reader) {
        let op = header(&head, "x-amz-target").unwrap_or("?").to_owned();
        let n = {
            let mut ops = seen.0.lock().unwrap();
            // Both under the operations' lock, so the two lists stay in step.
            seen.1.lock().unwrap().push(body.clone());
            ops.push(op.clone());
            ops.len() - 1
        };
        let fault = policy(n, &op);
        let chunked = matches!(fault, Fault::Chunked);
        match fault {
            Fault::Pass | Fault::Chunked => {}
            Fault::Delay(d) => std::thread::sleep(d),
            Fault::Error(status, kind) => {
                let body =
                    format!("{{\"__type\":\"{kind}\",\"message\":\"injected by the test proxy\"}}");
                let _ = write!(
                    client,
                    "HTTP/1.1 {status} Injected\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: {kind}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            Fault::Raw(status, content_type, body) => {
                let _ = write!(
                    client,
                    "HTTP/1.1 {status} Denied\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                continue;
            }
            Fault::Reset => {
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            Fault::Hang => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
        }
        // The proxy stands for the service: its own hiccups under load (a busy moto on a
        // loaded machine) must not look like faults, so it tries moto a few times.
        let Some((rhead, rbody)) = (0..20).find_map(|attempt| {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(100));
            }
            forward(upstream, &head, &body)
        }) else {
            let _ = write!(
                client,
                "HTTP/1.1 503 Unavailable\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 0\r\n\r\n"
            );
            continue;
        };
        let (rhead, rbody) = if chunked {
            in_chunks(&rhead, &rbody)
        } else {
            (rhead, rbody)
        };
        if client.write_all(rhead.as_bytes()).is_err() || client.write_all(&rbody).is_err() {
            return;
        }
    }
}

/// The answer `head` with `body` in chunked transfer coding: its Content-Length replaced, the
/// body in two chunks (the first with a chunk extension) and a trailer field.
fn in_chunks(head: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut lines: Vec<&str> = head
        .trim_end()
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .collect();
    lines.push("Transfer-Encoding: chunked");
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    let (first, second) = body.split_at(body.len() / 2);
    let mut out = Vec::new();
    for (chunk, extension) in [(first, ";part=1"), (second, "")] {
        if !chunk.is_empty() {
            out.extend_from_slice(format!("{:x}{extension}\r\n", chunk.len()).as_bytes());
            out.extend_from_slice(chunk);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"0\r\nx-checksum: none\r\n\r\n");
    (head, out)
}

/// A loopback HTTP `CONNECT` proxy, as corporate networks have: it logs the target of each
/// tunnel and connects every one of them to `127.0.0.1` at the target's port (so that a name
/// that does not resolve, such as `tls::PROXIED_HOST`, is reachable only through it). Returns
/// its URL and the log.
pub fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let tunnels = Arc::new(Mutex::new(Vec::new()));
    let log = tunnels.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let log = log.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut words = head.split_whitespace();
                let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
                    return;
                };
                log.lock().unwrap().push(target.to_owned());
                let port = target.rsplit(':').next().unwrap_or("443");
                let Ok(up) = TcpStream::connect(format!("127.0.0.1:{port}")) else {
                    return;
                };
                let mut client = client;
                if client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                let (mut up_read, mut up_write) = (up.try_clone().unwrap(), up);
                let mut client_write = client.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_read, &mut client_write);
                    let _ = client_write.shutdown(Shutdown::Both);
                });
                let _ = std::io::copy(&mut reader, &mut up_write);
                let _ = up_write.shutdown(Shutdown::Both);
            });
        }
    });
    (url, tunnels)
}
