//! One HTTP/1.1 request and its answer on one connection: what the HTTPS client
//! ([`super::https`]) does on its own for the origins known to speak HTTP/1.1, instead of
//! hyper's pooled client (BENCHMARKS.md, twelfth session).
//!
//! The request is written in one piece (its head and body in one buffer). The answer is read
//! into one buffer, its head parsed with `httparse` and its body framed as RFC 9112 section 6
//! says: no body for 1xx, 204 and 304 answers, chunked transfer coding, `Content-Length`, or
//! else the connection's end. Interim (1xx) answers are skipped. A connection whose answer was
//! complete, framed, and not marked `Connection: close` can carry the next request.
//!
//! [`request_bytes`] (and [`wire`]) and [`Reader`] are the pure part (bytes in, bytes out);
//! [`exchange`] is the I/O over a stream, and [`Exchanges`] sends requests so, keeping the
//! connections that can carry another one; [`response`] makes an answer the SDK's response.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tracing::debug;
use zeroize::Zeroize as _;

/// The most header lines an answer may have.
const MAX_HEADERS: usize = 100;

/// The first read buffer's size (an AWS answer's head and a secret's body fit in it).
const FIRST_READ: usize = 4096;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// Writing the request or reading the answer failed.
    #[error("the connection failed: {0}")]
    Io(#[source] io::Error),
    /// The connection ended before the answer was complete.
    #[error("the connection closed before the answer was complete")]
    Closed,
    /// The answer is not HTTP/1.x as RFC 9112 frames it.
    #[error("the answer is not valid HTTP/1.1 ({0})")]
    Malformed(&'static str),
}

/// An exchange's failure, and whether any byte of an answer had arrived: a request that got
/// none on a reused connection is sent again on a new one (the server closed the idle
/// connection), as hyper's pool does.
#[derive(Debug)]
pub struct Failure {
    /// What failed.
    pub failed: Failed,
    /// Whether any byte of the answer had arrived.
    pub answered: bool,
}

/// An answer: its status, headers, body, and whether the connection can carry another request.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The header fields.
    pub headers: HeaderMap,
    /// The body, at most the reader's limit and one byte.
    pub body: Vec<u8>,
    /// Whether the connection can carry another request.
    pub reusable: bool,
}

/// The bytes of `request` with `body` (see [`wire`]).
pub fn request_bytes(request: &http::request::Parts, body: &[u8]) -> Vec<u8> {
    let headers: Vec<(&[u8], &[u8])> = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()))
        .collect();
    wire(
        request.method.as_str(),
        &request.uri,
        headers.iter().copied(),
        body,
    )
}

/// The bytes of a `method` request to `uri` with the header fields `headers` and `body`: the
/// request line in origin form, a `Host` header when `headers` has none (the URI's host, and
/// its port unless it is the scheme's default, as hyper and SigV4's canonical request write
/// it), the header fields, and a `Content-Length` when `headers` has none.
pub fn wire<'a>(
    method: &str,
    uri: &http::Uri,
    headers: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    body: &[u8],
) -> Vec<u8> {
    let has = |wanted: &HeaderName| {
        headers
            .clone()
            .any(|(name, _)| name.eq_ignore_ascii_case(wanted.as_str().as_bytes()))
    };
    let (has_host, has_length) = (has(&HOST), has(&CONTENT_LENGTH));
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    if !has_host && let Some(host) = uri.host() {
        let default = match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        match uri.port_u16() {
            Some(port) if Some(port) != default => {
                line(b"host", format!("{host}:{port}").as_bytes());
            }
            _ => line(b"host", host.as_bytes()),
        }
    }
    for (name, value) in headers {
        line(name, value);
    }
    let bodiless = matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS");
    let no_length = bodiless && body.is_empty();
    if !(no_length || has_length) {
        line(b"content-length", body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Bytes that may hold a secret (a request's body, an answer's), zeroed when dropped: the part
/// that was written, not the whole capacity (which `zeroize`'s `Vec` does byte by byte, 4 KiB an
/// answer). Whatever shrinks it zeroes what it leaves behind.
#[derive(Debug, Default)]
pub struct Wiped(Vec<u8>);

impl Wiped {
    /// `bytes`, zeroed when dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Wiped(bytes)
    }
}

impl std::ops::Deref for Wiped {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl std::ops::DerefMut for Wiped {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Wiped {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroes `bytes` with volatile writes, eight bytes a write where they are aligned for it
/// (`zeroize` on bytes writes one at a time: 3,400 instructions a call for its request and
/// answer).
fn wipe(bytes: &mut [u8]) {
    #[allow(unsafe_code)]
    // SAFETY: every bit pattern is a valid `u64`, and `align_to_mut` puts each byte in exactly
    // one of the three parts.
    let (head, words, tail) = unsafe { bytes.align_to_mut::<u64>() };
    head.zeroize();
    words.zeroize();
    tail.zeroize();
}

/// How an answer's body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// Where reading an answer is.
#[derive(Debug)]
enum State {
    Head,
    Body {
        status: StatusCode,
        headers: HeaderMap,
        framing: Framing,
        keep_alive: bool,
        /// Where the unread part of the buffer starts.
        at: usize,
        body: Vec<u8>,
    },
}

/// Reads one answer from the bytes given to it ([`Reader::step`]); `limit` bounds its body (a
/// longer body is cut at `limit + 1` bytes, which the caller's limit then refuses).
#[derive(Debug)]
pub struct Reader {
    buf: Wiped,
    state: State,
    limit: usize,
}

/// What [`Reader::step`] found.
#[derive(Debug)]
pub enum Step {
    /// More bytes are needed.
    More,
    /// The answer.
    Done(Answer),
}

impl Reader {
    /// A reader of one answer whose body is at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Reader {
            buf: Wiped::new(Vec::with_capacity(FIRST_READ)),
            state: State::Head,
            limit,
        }
    }

    /// Whether any byte of an answer has arrived.
    pub fn answered(&self) -> bool {
        !self.buf.is_empty()
    }

    /// The buffer to read into, with room for at least `FIRST_READ / 4` bytes more.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() - self.buf.len() < FIRST_READ / 4 {
            let more = self.buf.capacity().max(FIRST_READ);
            // Grown by hand so that the old buffer is zeroed, not left behind by `reserve`.
            let mut grown = Wiped::new(Vec::with_capacity(self.buf.capacity() + more));
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        &mut self.buf
    }

    /// Reads what the buffer holds; `ended` says that the connection has ended after it.
    pub fn step(&mut self, ended: bool) -> Result<Step, Failed> {
        loop {
            match &mut self.state {
                State::Head => match self.head()? {
                    Some(next) => self.state = next,
                    None if ended => return Err(Failed::Closed),
                    None => return Ok(Step::More),
                },
                State::Body { .. } => return self.body(ended),
            }
        }
    }

    /// The answer's head, when the buffer holds all of it; interim answers are dropped.
    fn head(&mut self) -> Result<Option<State>, Failed> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut slots);
            let len = match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Failed::Malformed("too many header lines"));
                }
                Err(_) => return Err(Failed::Malformed("its head does not parse")),
            };
            let code = parsed.code.unwrap_or_default();
            let status = StatusCode::from_u16(code)
                .map_err(|_| Failed::Malformed("its status code is out of range"))?;
            if status.is_informational() {
                if code == 101 {
                    return Err(Failed::Malformed("the server switched protocols"));
                }
                // Dropped by moving the rest down and zeroing the tail it leaves.
                let keep = self.buf.len() - len;
                self.buf.copy_within(len.., 0);
                wipe(&mut self.buf[keep..]);
                self.buf.truncate(keep);
                continue;
            }
            let mut headers = HeaderMap::with_capacity(parsed.headers.len());
            for h in parsed.headers.iter() {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| Failed::Malformed("a header name is not valid"))?;
                let value = HeaderValue::from_bytes(h.value)
                    .map_err(|_| Failed::Malformed("a header value is not valid"))?;
                headers.append(name, value);
            }
            let framing = framing(status, &headers)?;
            let close = headers
                .get_all(CONNECTION)
                .iter()
                .any(|v| has_token(v, "close"));
            let keep_alive = parsed.version == Some(1) && !close;
            return Ok(Some(State::Body {
                status,
                headers,
                framing,
                keep_alive,
                at: len,
                body: Vec::new(),
            }));
        }
    }

    /// The body, when the buffer holds all of it.
    fn body(&mut self, ended: bool) -> Result<Step, Failed> {
        let State::Body {
            framing, at, body, ..
        } = &mut self.state
        else {
            unreachable!("called in the body state")
        };
        let cut = self.limit.saturating_add(1);
        let complete = match *framing {
            Framing::Length(len) => {
                let have = self.buf.len() - *at;
                if have >= len.min(cut) {
                    body.extend_from_slice(&self.buf[*at..*at + len.min(cut)]);
                    *at += len.min(cut);
                    true
                } else if ended {
                    return Err(Failed::Closed);
                } else {
                    false
                }
            }
            Framing::UntilClose => {
                if ended || self.buf.len() - *at >= cut {
                    let end = self.buf.len().min(*at + cut);
                    body.extend_from_slice(&self.buf[*at..end]);
                    *at = end;
                    true
                } else {
                    false
                }
            }
            Framing::Chunked => match chunks(&self.buf, at, body, cut)? {
                true => true,
                false if ended => return Err(Failed::Closed),
                false => false,
            },
        };
        if !complete {
            return Ok(Step::More);
        }
        let State::Body {
            status,
            headers,
            framing,
            keep_alive,
            at,
            body,
        } = std::mem::replace(&mut self.state, State::Head)
        else {
            unreachable!("checked above")
        };
        let reusable = keep_alive
            && framing != Framing::UntilClose
            && body.len() <= self.limit
            && at == self.buf.len();
        Ok(Step::Done(Answer {
            status,
            headers,
            body,
            reusable,
        }))
    }
}

/// Decodes the chunks that the buffer holds from `at` on into `body`; whether the last chunk
/// (and the trailer section after it) was read, or the body reached `cut` bytes.
fn chunks(buf: &[u8], at: &mut usize, body: &mut Vec<u8>, cut: usize) -> Result<bool, Failed> {
    loop {
        if body.len() >= cut {
            body.truncate(cut);
            return Ok(true);
        }
        let (line, size) = match httparse::parse_chunk_size(&buf[*at..]) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(_) => return Err(Failed::Malformed("a chunk size does not parse")),
        };
        if size == 0 {
            // The trailer section: header lines up to an empty line.
            let rest = &buf[*at + line..];
            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
            return match httparse::parse_headers(rest, &mut slots) {
                Ok(httparse::Status::Complete((len, _))) => {
                    *at += line + len;
                    Ok(true)
                }
                Ok(httparse::Status::Partial) => Ok(false),
                Err(_) => Err(Failed::Malformed("its trailer section does not parse")),
            };
        }
        let size = usize::try_from(size).map_err(|_| Failed::Malformed("a chunk is too large"))?;
        let start = *at + line;
        let Some(end) = start.checked_add(size) else {
            return Err(Failed::Malformed("a chunk is too large"));
        };
        if buf.len() < end.saturating_add(2) {
            if buf.len() > start && body.len() + (buf.len() - start) >= cut {
                // A chunk longer than the limit: its start is enough to refuse it.
                body.extend_from_slice(&buf[start..]);
                continue;
            }
            return Ok(false);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(Failed::Malformed(
                "a chunk does not end where its size says",
            ));
        }
        body.extend_from_slice(&buf[start..end]);
        *at = end + 2;
    }
}

/// How the body of an answer with `status` and `headers` is framed (RFC 9112, 6.3).
fn framing(status: StatusCode, headers: &HeaderMap) -> Result<Framing, Failed> {
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Framing::Length(0));
    }
    if let Some(last) = headers.get_all(TRANSFER_ENCODING).iter().next_back() {
        let chunked = last
            .to_str()
            .ok()
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in &headers.get_all(CONTENT_LENGTH) {
        for part in value.to_str().unwrap_or("x").split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failed::Malformed("its Content-Length is not a number"));
            }
            let n: usize = part
                .parse()
                .map_err(|_| Failed::Malformed("its Content-Length is too large"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Failed::Malformed("it has two different Content-Lengths"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Whether the comma-separated header value `value` holds `token` (case-insensitive).
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// Writes `request` (the bytes of [`request_bytes`]) to `io` and reads its answer, whose body
/// is at most `limit` bytes (cut at `limit + 1`).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    request: &[u8],
    limit: usize,
) -> Result<Answer, Failure> {
    let unanswered = |failed| Failure {
        failed,
        answered: false,
    };
    io.write_all(request)
        .await
        .map_err(|e| unanswered(Failed::Io(e)))?;
    io.flush().await.map_err(|e| unanswered(Failed::Io(e)))?;
    let mut reader = Reader::new(limit);
    loop {
        let read = io.read_buf(reader.buffer()).await;
        let step = match read {
            Ok(n) => reader.step(n == 0),
            Err(e) => Err(Failed::Io(e)),
        };
        match step {
            Ok(Step::Done(answer)) => return Ok(answer),
            Ok(Step::More) => {}
            Err(failed) => {
                return Err(Failure {
                    failed,
                    answered: reader.answered(),
                });
            }
        }
    }
}

/// A connection exchanges run on (TLS, or plain TCP).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Io for T {}

/// A connection of [`Exchanges`].
pub type Conn = Box<dyn Io>;

/// How long an idle connection is used again: under the idle timeouts of AWS's load
/// balancers (60 s by default), so that the server has not closed it yet.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Requests sent as [`exchange`]s, and the connections that can carry another request, by
/// origin, with the time each became idle.
#[derive(Debug, Default)]
pub struct Exchanges {
    idle: Mutex<HashMap<String, Vec<(Conn, Instant)>>>,
}

impl Exchanges {
    /// Sends `wire` (the bytes of [`wire`] or [`request_bytes`]) on an idle connection to its
    /// `origin` (the key of [`super::multiplex::origin_of`]) or on one `connect` makes, and
    /// reads its answer; the answer's body is at most [`super::tls::MAX_RESPONSE_BODY`] and one
    /// byte (which the caller then refuses). A reused connection that failed before any byte of
    /// an answer (the server closed it while it was idle) is replaced by a new one, as hyper's
    /// pool does; a connection whose answer lets it carry another request becomes idle again.
    pub async fn send<C>(
        &self,
        wire: &[u8],
        origin: &str,
        connect: impl FnOnce() -> C,
    ) -> Result<Answer, ConnectorError>
    where
        C: Future<Output = Result<Conn, ConnectorError>>,
    {
        let limit = super::tls::MAX_RESPONSE_BODY;
        if let Some(mut conn) = self.take_idle(origin) {
            match exchange(&mut conn, wire, limit).await {
                Ok(answer) => return Ok(self.keep(answer, conn, origin)),
                Err(f) if !f.answered => debug!(
                    "a reused connection to {origin} failed before an answer ({}); the request \
                     goes on a new connection",
                    f.failed
                ),
                Err(f) => return Err(connector_error(f.failed)),
            }
        }
        let conn = connect().await?;
        self.send_on(wire, origin, conn).await
    }

    /// Sends `wire` on `conn`, a new connection to `origin`, and reads its answer.
    pub async fn send_on(
        &self,
        wire: &[u8],
        origin: &str,
        mut conn: Conn,
    ) -> Result<Answer, ConnectorError> {
        match exchange(&mut conn, wire, super::tls::MAX_RESPONSE_BODY).await {
            Ok(answer) => Ok(self.keep(answer, conn, origin)),
            Err(f) => Err(connector_error(f.failed)),
        }
    }

    /// The newest idle connection to `origin` that is not too old; older ones are dropped.
    fn take_idle(&self, origin: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(origin)?;
        list.retain(|(_, since)| since.elapsed() < IDLE_FOR);
        list.pop().map(|(conn, _)| conn)
    }

    /// `answer`; `conn` becomes idle if it can carry another request.
    fn keep(&self, answer: Answer, conn: Conn, origin: &str) -> Answer {
        if answer.reusable {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            match idle.get_mut(origin) {
                Some(list) => list.push((conn, Instant::now())),
                None => {
                    idle.insert(origin.to_owned(), vec![(conn, Instant::now())]);
                }
            }
        }
        answer
    }
}

/// The SDK's response of `answer`.
pub fn response(answer: Answer) -> Result<HttpResponse, ConnectorError> {
    let mut response = http::Response::new(SdkBody::from(answer.body));
    *response.status_mut() = answer.status;
    *response.headers_mut() = answer.headers;
    HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
}

/// The SDK's view of a failed exchange, as the HTTPS client classifies hyper's failures: I/O
/// errors are retried, an answer cut off is transient, a malformed one is not retried.
fn connector_error(failed: Failed) -> ConnectorError {
    match failed {
        Failed::Io(_) => ConnectorError::io(failed.into()),
        Failed::Closed => ConnectorError::other(failed.into(), Some(ErrorKind::TransientError)),
        Failed::Malformed(_) => ConnectorError::other(failed.into(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wire` fed to a reader in pieces of `piece` bytes, then the connection's end.
    fn read(wire: &[u8], piece: usize, limit: usize) -> Result<Answer, Failed> {
        let mut reader = Reader::new(limit);
        for part in wire.chunks(piece.max(1)) {
            reader.buffer().extend_from_slice(part);
            if let Step::Done(answer) = reader.step(false)? {
                return Ok(answer);
            }
        }
        match reader.step(true)? {
            Step::Done(answer) => Ok(answer),
            Step::More => panic!("an ended connection is never More"),
        }
    }

    fn every_split(wire: &[u8], limit: usize) -> Vec<Result<Answer, Failed>> {
        (1..=wire.len()).map(|p| read(wire, p, limit)).collect()
    }

    #[test]
    fn a_request_is_written_in_origin_form_with_host_and_length() {
        let request = http::Request::post("https://kms.eu-west-1.amazonaws.com/?a=1")
            .header("x-amz-target", "TrentService.Decrypt")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let bytes = request_bytes(&request, b"{}");
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "POST /?a=1 HTTP/1.1\r\nhost: kms.eu-west-1.amazonaws.com\r\n\
             x-amz-target: TrentService.Decrypt\r\ncontent-length: 2\r\n\r\n{}"
        );
        let request = http::Request::get("https://localhost:8443")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(
            String::from_utf8(request_bytes(&request, b"")).unwrap(),
            "GET / HTTP/1.1\r\nhost: localhost:8443\r\n\r\n"
        );
        let request = http::Request::get("https://h:443/x")
            .header("host", "given")
            .header("content-length", "0")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        assert_eq!(
            String::from_utf8(request_bytes(&request, b"")).unwrap(),
            "GET /x HTTP/1.1\r\nhost: given\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn a_length_framed_answer_is_read_however_it_arrives() {
        let wire = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: 11\r\n\r\n{\"a\":\"b\"}\r\n";
        for answer in every_split(wire, 1024) {
            let answer = answer.unwrap();
            assert_eq!(answer.status, 200);
            assert_eq!(answer.headers["content-type"], "application/json");
            assert_eq!(answer.body, b"{\"a\":\"b\"}\r\n");
            assert!(answer.reusable);
        }
    }

    #[test]
    fn a_chunked_answer_is_decoded_with_its_extensions_and_trailers() {
        let wire = b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n\
                     4;ext=1\r\n{\"__\r\nA\r\ntype\":\"X\"}\r\n0\r\nx-trailer: y\r\n\r\n";
        for answer in every_split(wire, 1024) {
            let answer = answer.unwrap();
            assert_eq!(answer.status, 400);
            assert_eq!(answer.body, b"{\"__type\":\"X\"}");
            assert!(answer.reusable);
        }
        let plain_end = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
        let answer = read(plain_end, 3, 1024).unwrap();
        assert!(answer.body.is_empty() && answer.reusable);
    }

    #[test]
    fn interim_answers_are_skipped_and_bodiless_statuses_have_no_body() {
        let wire = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\
                     Content-Length: 5\r\n\r\n";
        for answer in every_split(wire, 1024) {
            let answer = answer.unwrap();
            assert_eq!(answer.status, 204);
            assert!(answer.body.is_empty());
        }
    }

    #[test]
    fn a_body_until_the_end_or_a_closing_server_ends_the_connection() {
        let wire = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let answer = read(wire, 4, 1024).unwrap();
        assert_eq!(answer.body, b"all of it");
        assert!(!answer.reusable);
        let wire =
            b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 1\r\n\r\nx";
        assert!(!read(wire, 4, 1024).unwrap().reusable);
        let wire = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert!(!read(wire, 4, 1024).unwrap().reusable, "HTTP/1.0 closes");
    }

    #[test]
    fn an_answer_cut_off_is_closed_and_says_whether_anything_arrived() {
        for wire in [
            &b""[..],
            b"HTTP/1.1 200 OK\r\nContent-Le",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        ] {
            assert!(
                matches!(read(wire, 7, 1024), Err(Failed::Closed)),
                "{wire:?}"
            );
        }
        let mut reader = Reader::new(10);
        assert!(!reader.answered());
        reader.buffer().extend_from_slice(b"H");
        assert!(reader.answered());
    }

    #[test]
    fn malformed_answers_are_refused() {
        for wire in [
            &b"NOT HTTP\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        ] {
            assert!(
                matches!(read(wire, 5, 1024), Err(Failed::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(wire)
            );
        }
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(read(&many, 4096, 10), Err(Failed::Malformed(_))));
    }

    #[test]
    fn a_body_larger_than_the_first_buffer_grows_it() {
        let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut wire =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        wire.extend_from_slice(&body);
        for piece in [1000, 4096, 7000] {
            let answer = read(&wire, piece, 1 << 20).unwrap();
            assert_eq!(answer.body, body);
            assert!(answer.reusable);
        }
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for part in body.chunks(3000) {
            chunked.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            chunked.extend_from_slice(part);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(read(&chunked, 4096, 1 << 20).unwrap().body, body);
    }

    #[test]
    fn a_body_over_the_limit_is_cut_one_byte_past_it() {
        let mut long = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec();
        long.extend_from_slice(&[b'a'; 20]);
        let answer = read(&long, 8, 10).unwrap();
        assert_eq!(answer.body.len(), 11);
        assert!(!answer.reusable);
        let mut chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n".to_vec();
        chunked.extend_from_slice(&[b'a'; 40]);
        let answer = read(&chunked, 8, 10).unwrap();
        assert_eq!(answer.body.len(), 11);
        let answer = read(b"HTTP/1.1 200 OK\r\n\r\n0123456789abc", 3, 10).unwrap();
        assert_eq!(answer.body, b"0123456789a");
    }

    #[tokio::test]
    async fn an_exchange_writes_the_request_and_reads_the_answer() {
        let (mut client, mut server) = tokio::io::duplex(64);
        let serve = tokio::spawn(async move {
            let mut got = vec![0; 40];
            server.read_exact(&mut got).await.unwrap();
            server
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
            (got, server)
        });
        let request = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n{}";
        let answer = exchange(&mut client, request, 1024).await.unwrap();
        assert_eq!(answer.body, b"ok");
        let (got, server) = serve.await.unwrap();
        assert_eq!(got, request);
        drop(server);
        let failure = exchange(&mut client, request, 1024).await.unwrap_err();
        assert!(!failure.answered, "{:?}", failure.failed);
    }

    #[test]
    fn wiping_zeroes_every_byte_however_the_bytes_are_aligned() {
        let mut bytes: Vec<u8> = (1..=64).collect();
        for start in 0..9 {
            for end in [start, start + 1, start + 7, start + 8, start + 9, 40, 64] {
                let mut copy = bytes.clone();
                wipe(&mut copy[start..end]);
                assert!(copy[start..end].iter().all(|b| *b == 0), "{start}..{end}");
                assert_eq!(copy[..start], bytes[..start]);
                assert_eq!(copy[end..], bytes[end..]);
            }
        }
        bytes.clear();
        wipe(&mut bytes);
    }
}
