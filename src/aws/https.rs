//! The HTTPS client of every AWS call, over connections of our own, so that the TLS step is
//! under kms-env's control (the SDK's client does not expose it).
//!
//! A request to an origin that speaks HTTP/1.1 is an exchange of our own ([`super::exchange`]:
//! the request in one write, the answer in one buffer; idle connections used again), and one to
//! an origin that speaks HTTP/2 a stream on its one connection (the `h2` crate's client, as
//! the floor's). hyper's pooled client did both before; its pool, dispatch channel and buffers
//! were most of what a call cost over the floor (BENCHMARKS.md, twelfth session), and its
//! connection-level HTTP/2 client about 0.4 ms a start more than `h2` alone (thirteenth).
//!
//! A connection is a TCP connection (through the `HTTPS_PROXY` tunnel when one applies), then
//! TLS with rustls and `ring` (kernel randomness; see BENCHMARKS.md), with one session store for
//! all connections so that concurrent connections to one host resume the first one's session
//! ([`super::resume`]). HTTP/2 is offered by ALPN beside HTTP/1.1; a server that takes it
//! serves all the concurrent requests of a start on one connection ([`super::multiplex`]). The
//! connect timeout of the SDK's settings covers the whole connection, as it does in the SDK's own
//! client; errors are classified the same way (connection errors are I/O errors, which the SDK
//! retries), and HTTP/2 streams the server did not process are retried too. The first
//! connection to an origin can be started before any request asks for one
//! ([`Https::preconnect`], when a service's client is made), so that it is made while the first
//! call waits for its credentials; the first request's connection takes it.

use super::dns::SharedDns;
use super::exchange;
use super::multiplex::{Origins, Protocol, origin_of};
use super::resume::Tickets;
use super::tls::{Post, PostError, Reply};
use super::{BoxError, chain};
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorFuture};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector as Tcp;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::debug;

/// The connect timeout passed; a timeout for the SDK's retry and for messages.
#[derive(Debug, thiserror::Error)]
#[error("the connection was not made within {0:?}")]
struct ConnectTimedOut(Duration);

/// The HTTPS client.
#[derive(Debug, Clone)]
pub struct Https {
    connector: Connector,
    origins: Arc<Origins>,
    exchanges: Arc<exchange::Exchanges>,
    read_timeout: Option<Duration>,
}

/// Which protocols a connection offers by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// HTTP/2 and HTTP/1.1: to an origin whose protocol is not known, or whose HTTP/2
    /// connection closed.
    Both,
    /// HTTP/1.1 alone: to an origin known to speak it.
    Http1,
}

/// A connection made offering both protocols: an HTTP/1.1 one, or the sender of requests on
/// an HTTP/2 one (shared, see [`Connector::h2`]).
enum Made {
    Http1(exchange::Conn),
    Http2(H2),
}

/// The sender of requests on an HTTP/2 connection (the `h2` crate's, as the floor's).
type H2 = h2::client::SendRequest<Bytes>;

/// A TLS connection, its protocol, and its handshake as the session store counts it: the
/// handshake is told ended when the server's first records after it are read (and with them
/// its session tickets), not when it was made (see [`Handshake`]).
type Opened = (
    tokio_rustls::client::TlsStream<Watched>,
    Protocol,
    Handshake,
);

/// Connections started before a request asked for one ([`Https::preconnect`]), by origin: the
/// first request's connection takes it (`None` once taken, so an origin is preconnected once).
type Early = Arc<Mutex<HashMap<String, Option<oneshot::Receiver<Result<Opened, BoxError>>>>>>;

/// Makes the TLS configuration (protocol versions, suites, the verifier over [`super::roots`]).
pub type MakeTls = Arc<dyn Fn() -> Result<rustls::ClientConfig, String> + Send + Sync>;

/// Work a handshake does while it waits for the server's first answer: reading the roots its
/// certificate will be verified with ([`super::roots::Roots::load`]), once.
pub type Meanwhile = Arc<dyn Fn() + Send + Sync>;

/// The TLS configuration, made once, by the first HTTPS connection, and what its handshakes do
/// while the server answers.
pub struct TlsConfig {
    make: MakeTls,
    made: tokio::sync::OnceCell<rustls::ClientConfig>,
    meanwhile: Meanwhile,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// A configuration that `make` makes, not made yet, whose handshakes do `meanwhile` while
    /// they wait for the server.
    pub fn new(make: MakeTls, meanwhile: Meanwhile) -> Arc<Self> {
        Arc::new(Self {
            make,
            made: tokio::sync::OnceCell::new(),
            meanwhile,
        })
    }

    /// The configuration, made now if it is not yet.
    async fn get(&self) -> Result<rustls::ClientConfig, BoxError> {
        let made = self
            .made
            .get_or_try_init(|| async { (self.make)().map_err(BoxError::from) })
            .await?;
        Ok(made.clone())
    }

    /// Drives `handshake` until it waits for the server (its ClientHello sent), does the
    /// [`Meanwhile`] work on this thread while the server computes its answer, then finishes
    /// the handshake. On a start's one thread, the roots' reading is thus off the path from
    /// the first connection to its request (BENCHMARKS.md, tenth session).
    async fn handshake<F: Future>(&self, start: impl FnOnce() -> F) -> F::Output {
        // Made here, so that this future holds the handshake once (see `source::within`).
        let mut handshake = std::pin::pin!(start());
        let first = std::future::poll_fn(|cx| Poll::Ready(handshake.as_mut().poll(cx))).await;
        if let Poll::Ready(done) = first {
            return done;
        }
        (self.meanwhile)();
        handshake.await
    }
}

impl Https {
    /// A client with the TLS configuration `tls` (and a session store of its own), tunnelling
    /// through the proxies `proxy` names.
    pub fn new(
        tls: Arc<TlsConfig>,
        dns: SharedDns,
        proxy: Arc<Matcher>,
        connect_timeout: Option<Duration>,
        read_timeout: Option<Duration>,
    ) -> Self {
        let mut tcp = Tcp::new_with_resolver(dns.clone());
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        let origins = Arc::new(Origins::default());
        let connector = Connector {
            dns,
            tcp,
            tls: Arc::default(),
            tls_http1: Arc::default(),
            base: tls,
            tickets: Tickets::new(),
            origins: origins.clone(),
            proxy,
            timeout: connect_timeout,
            early: Early::default(),
            h2: Arc::default(),
        };
        Self {
            connector,
            origins,
            exchanges: Arc::default(),
            read_timeout,
        }
    }

    /// Sends `request` to `origin`: on its open HTTP/2 connection if it has one; as an
    /// [`exchange`] on an idle connection or a new one offering HTTP/1.1 alone if it is known to
    /// speak HTTP/1.1; otherwise on a new connection offering both (or the early one), whose
    /// protocol the origin then learns.
    async fn send(&self, request: impl Outgoing, origin: &str) -> Result<Sent, ConnectorError> {
        if let Some(h2) = self.connector.shared_h2(origin) {
            return send_h2(h2, request.h2()?).await;
        }
        let wire = request.wire();
        let connector = &self.connector;
        if self.origins.protocol(origin) == Some(Protocol::Http1) {
            let uri = request.uri();
            let answer = self
                .exchanges
                .send(&wire, origin, || async move {
                    let made = in_time(
                        connector.timeout,
                        connector.clone().connect(uri.clone(), Offer::Http1),
                    )
                    .await
                    .map_err(connect_error)?;
                    match made {
                        Made::Http1(conn) => Ok(conn),
                        // rustls refuses a protocol it did not offer; kept an error regardless.
                        Made::Http2(_) => Err(ConnectorError::other(
                            "the server chose HTTP/2, which was not offered".into(),
                            None,
                        )),
                    }
                })
                .await?;
            return Ok(Sent::Answer(answer));
        }
        let made = in_time(
            connector.timeout,
            connector
                .clone()
                .connect(request.uri().clone(), Offer::Both),
        )
        .await
        .map_err(connect_error)?;
        match made {
            Made::Http1(conn) => Ok(Sent::Answer(
                self.exchanges.send_on(&wire, origin, conn).await?,
            )),
            Made::Http2(h2) => send_h2(h2, request.h2()?).await,
        }
    }

    /// Sends `post` ([`super::json`]'s calls) and reads its answer: as the SDK's requests are
    /// sent, without the SDK's request and response types.
    pub async fn post(&self, post: Post<'_>) -> Result<Reply, PostError> {
        let _probe = self.origins.admit(post.origin).await;
        match in_read_time(self.read_timeout, self.send(post, post.origin)).await? {
            Sent::Answer(answer) => Ok(Reply::of(answer)),
            Sent::H2(response) => Reply::read(response).await,
        }
    }

    /// Starts the first connection to `uri`'s origin now, on a task of its own, unless one was
    /// started before; the first request to that origin that needs a connection takes it. Made
    /// when a service's client is made, so that the TCP and TLS round trips run while the first
    /// call waits for its credentials (an ECS or EKS task role's request) instead of after
    /// them. Outside a runtime, nothing is started.
    pub fn preconnect(&self, uri: &http::Uri) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let origin = origin_of(uri);
        let tx = {
            let mut early = self
                .connector
                .early
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if early.contains_key(&origin) {
                return;
            }
            let (tx, rx) = oneshot::channel();
            early.insert(origin, Some(rx));
            tx
        };
        let (connector, dst) = (self.connector.clone(), uri.clone());
        tokio::spawn(async move {
            let _ = tx.send(in_time(connector.timeout, connector.open(&dst, Offer::Both)).await);
        });
    }
}

impl HttpConnector for Https {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let this = self.clone();
        HttpConnectorFuture::new(async move {
            let origin = origin_of(request.uri());
            let (parts, mut body) = request.into_parts();
            // Every request of kms-env's has its body in memory; another is read into it.
            if body.bytes().is_none() {
                let collected = http_body_util::BodyExt::collect(body)
                    .await
                    .map_err(ConnectorError::user)?;
                body = SdkBody::from(collected.to_bytes());
            }
            let _probe = this.origins.admit(&origin).await;
            match in_read_time(this.read_timeout, this.send((parts, body), &origin)).await? {
                Sent::Answer(answer) => exchange::response(answer),
                Sent::H2(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
            }
        })
    }
}

/// A request as [`Https::send`] sends it: its bytes on an HTTP/1.1 connection, an `http`
/// request with its body's bytes on an HTTP/2 one.
trait Outgoing {
    fn uri(&self) -> &http::Uri;
    fn wire(&self) -> exchange::Wiped;
    fn h2(self) -> Result<http::Request<Bytes>, ConnectorError>;
}

/// The SDK's requests (the body in memory).
impl Outgoing for (http::request::Parts, SdkBody) {
    fn uri(&self) -> &http::Uri {
        &self.0.uri
    }

    fn wire(&self) -> exchange::Wiped {
        // It may hold a plaintext (an Encrypt's body).
        exchange::Wiped::new(exchange::request_bytes(
            &self.0,
            self.1.bytes().unwrap_or_default(),
        ))
    }

    fn h2(self) -> Result<http::Request<Bytes>, ConnectorError> {
        let body = Bytes::copy_from_slice(self.1.bytes().unwrap_or_default());
        Ok(http::Request::from_parts(self.0, body))
    }
}

impl Outgoing for Post<'_> {
    fn uri(&self) -> &http::Uri {
        self.uri
    }

    fn wire(&self) -> exchange::Wiped {
        Post::wire(self)
    }

    fn h2(self) -> Result<http::Request<Bytes>, ConnectorError> {
        self.http(Bytes::copy_from_slice(self.body))
    }
}

/// What [`Https::send`] got: an HTTP/1.1 exchange's answer, or an HTTP/2 response.
enum Sent {
    Answer(exchange::Answer),
    H2(http::Response<H2Body>),
}

/// Sends `request` on the HTTP/2 connection of `h2`.
async fn send_h2(h2: H2, request: http::Request<Bytes>) -> Result<Sent, ConnectorError> {
    let mut h2 = h2.ready().await.map_err(connector_error)?;
    let (mut parts, body) = request.into_parts();
    parts.version = http::Version::HTTP_2;
    let (response, mut stream) = h2
        .send_request(http::Request::from_parts(parts, ()), body.is_empty())
        .map_err(connector_error)?;
    send_data(&mut stream, body)
        .await
        .map_err(connector_error)?;
    let response = response.await.map_err(connector_error)?;
    Ok(Sent::H2(response.map(H2Body)))
}

/// Sends `data` on `stream` as the peer's flow control lets it, and ends the stream.
async fn send_data(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let room = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(room) => room?,
            None => return Err(h2::Reason::CANCEL.into()),
        };
        let chunk = data.split_to(room.min(data.len()));
        stream.send_data(chunk, data.is_empty())?;
    }
    Ok(())
}

/// An HTTP/2 answer's body, its data given back to the connection's flow control as it is read.
#[derive(Debug)]
pub(super) struct H2Body(h2::RecvStream);

impl hyper::body::Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, h2::Error>>> {
        match std::task::ready!(self.0.poll_data(cx)) {
            Some(Ok(data)) => {
                let _ = self.0.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => match std::task::ready!(self.0.poll_trailers(cx)) {
                Ok(Some(trailers)) => Poll::Ready(Some(Ok(hyper::body::Frame::trailers(trailers)))),
                Ok(None) => Poll::Ready(None),
                Err(e) => Poll::Ready(Some(Err(e))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// The SDK's view of a connection that was not made (as its own client classifies them:
/// I/O errors, which it retries, unless the connect timeout passed).
pub(super) fn connect_error(err: BoxError) -> ConnectorError {
    if chain(err.as_ref()).any(|e| e.is::<ConnectTimedOut>()) {
        ConnectorError::timeout(err)
    } else {
        ConnectorError::io(err)
    }
}

/// The SDK's view of a failed HTTP/2 request (as hyper's client classified them for the SDK):
/// I/O errors and streams the server did not process are retried, a stream reset by the server
/// is transient, the rest (the protocol broken) is not retried.
fn connector_error(err: h2::Error) -> ConnectorError {
    // An HTTP/2 stream the server refused, or left unanswered when it closed the connection
    // (GOAWAY), was not processed and is sent again (RFC 9113, 8.7).
    let unprocessed =
        err.reason() == Some(h2::Reason::REFUSED_STREAM) || (err.is_go_away() && err.is_remote());
    if err.is_io() || unprocessed {
        ConnectorError::io(err.into())
    } else if err.is_reset() && err.is_remote() {
        ConnectorError::other(
            err.into(),
            Some(aws_smithy_types::retry::ErrorKind::TransientError),
        )
    } else {
        ConnectorError::other(err.into(), None)
    }
}

/// Makes the connections of [`Https`].
#[derive(Clone)]
struct Connector {
    /// Name lookups of the direct connections ([`super::tcp`]).
    dns: SharedDns,
    /// The connections to an `HTTPS_PROXY` (hyper's connector, which its tunnel takes).
    tcp: Tcp<SharedDns>,
    tls: Arc<tokio::sync::OnceCell<Arc<rustls::ClientConfig>>>,
    /// The same configuration offering HTTP/1.1 alone.
    tls_http1: Arc<tokio::sync::OnceCell<Arc<rustls::ClientConfig>>>,
    base: Arc<TlsConfig>,
    tickets: Arc<Tickets>,
    origins: Arc<Origins>,
    proxy: Arc<Matcher>,
    timeout: Option<Duration>,
    early: Early,
    /// The open HTTP/2 connection of each origin that has one, with a number of its own (the
    /// connection's end removes it only if it is still the one there).
    h2: Arc<Mutex<HashMap<String, (u64, H2)>>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

/// `send` (a request and its answer, connection included) within the read timeout `limit` of
/// the SDK's settings.
pub(super) fn in_read_time<T>(
    limit: Option<Duration>,
    send: impl Future<Output = Result<T, ConnectorError>>,
) -> impl Future<Output = Result<T, ConnectorError>> {
    crate::deadline::within_limit(limit, send, |limit| {
        Err(ConnectorError::timeout(
            format!("no answer within {limit:?}").into(),
        ))
    })
}

/// `connect` within the connect timeout `limit` of the SDK's settings, which covers the whole
/// connection (TCP, proxy tunnel, TLS) as in the SDK's own client.
pub(super) fn in_time<T>(
    limit: Option<Duration>,
    connect: impl Future<Output = Result<T, BoxError>>,
) -> impl Future<Output = Result<T, BoxError>> {
    crate::deadline::within_limit(limit, connect, |limit| {
        Err(BoxError::from(ConnectTimedOut(limit)))
    })
}

impl Connector {
    /// The TLS configuration with this client's session store, offering `offer` by ALPN (one
    /// session store: a session of either resumes on the other).
    async fn tls_config(&self, offer: Offer) -> Result<Arc<rustls::ClientConfig>, BoxError> {
        let both = self
            .tls
            .get_or_try_init(|| async {
                let mut config = self.base.get().await?;
                config.resumption = rustls::client::Resumption::store(self.tickets.clone());
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                Ok::<_, BoxError>(Arc::new(config))
            })
            .await?;
        if offer == Offer::Both {
            return Ok(both.clone());
        }
        let http1 = self.tls_http1.get_or_init(|| async {
            let mut config = rustls::ClientConfig::clone(both);
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        });
        Ok(http1.await.clone())
    }

    /// `origin`'s open HTTP/2 connection, if it has one.
    fn shared_h2(&self, origin: &str) -> Option<H2> {
        let open = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(origin).map(|(_, h2)| h2.clone())
    }

    /// A connection for a request to `dst` that offers `offer`: for both protocols, the one
    /// [`Https::preconnect`] started, if it did and no request took it yet, otherwise a new one.
    /// An HTTP/2 connection is shared from here on ([`Connector::shared_h2`]); the origin is
    /// told it is open once it can be shared, and closed when it closes.
    async fn connect(self, dst: http::Uri, offer: Offer) -> Result<Made, BoxError> {
        let origin = origin_of(&dst);
        let attempt = self.origins.connecting(origin.clone());
        let early = match offer {
            Offer::Both => self
                .early
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&origin)
                .and_then(Option::take),
            Offer::Http1 => None,
        };
        let (stream, protocol, handshake) = match early {
            // A runtime that stopped before the early connection was made: make one now.
            Some(early) => match early.await {
                Ok(opened) => opened?,
                Err(_) => self.open(&dst, offer).await?,
            },
            None => self.open(&dst, offer).await?,
        };
        let tls = Tls::new(stream, handshake);
        if protocol == Protocol::Http1 {
            attempt.connected(protocol);
            return Ok(Made::Http1(Box::new(tls)));
        }
        let (h2, connection) = h2::client::handshake(tls).await?;
        static NUMBER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let number = NUMBER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.h2
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(origin.clone(), (number, h2.clone()));
        let open = attempt.connected(protocol);
        let shared = self.h2.clone();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!("the HTTP/2 connection to {origin} ended: {e}");
            }
            let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
            if shared.get(&origin).is_some_and(|(n, _)| *n == number) {
                shared.remove(&origin);
            }
            drop(open);
        });
        Ok(Made::Http2(h2))
    }

    /// Makes a TCP connection to `dst` (through `HTTPS_PROXY` when it applies) and a TLS
    /// connection over it offering `offer`, resuming a session when [`Tickets::turn`] says so.
    async fn open(&self, dst: &http::Uri, offer: Offer) -> Result<Opened, BoxError> {
        let name = ServerName::try_from(super::tcp::host_of(dst)?.to_owned())?;
        let started = Instant::now();
        let tcp = async {
            match self.proxy.intercept(dst) {
                Some(proxy) => {
                    let mut tunnel = Tunnel::new(proxy.uri().clone(), self.tcp.clone());
                    if let Some(auth) = proxy.basic_auth() {
                        tunnel = tunnel.with_auth(auth.clone());
                    }
                    tower_service::Service::call(&mut tunnel, dst.clone())
                        .await
                        .map_err(BoxError::from)
                }
                None => super::tcp::connect(&self.dns, dst).await.map(TokioIo::new),
            }
        };
        let (tcp, tls) = tokio::join!(tcp, self.tls_config(offer));
        let (tcp, tls) = (tcp?, tls?);
        let took = started.elapsed();
        let wait_start = Instant::now();
        let handshake = Handshake {
            tickets: self.tickets.clone(),
            name: name.clone(),
            reserved: self.tickets.turn(&name, super::keyshare::waiting).await,
            answered: false,
        };
        let waited = wait_start.elapsed();
        let tls = self
            .base
            .handshake(|| {
                let tcp = Watched {
                    tcp: tcp.into_inner(),
                    got: false,
                };
                tokio_rustls::TlsConnector::from(tls).connect(name.clone(), tcp)
            })
            .await;
        let kind = tls
            .as_ref()
            .ok()
            .and_then(|t| t.get_ref().1.handshake_kind());
        // A failed handshake ends here (the guard drops); a made one when the server's next
        // records are read.
        let tls = tls?;
        let resumed = kind == Some(rustls::HandshakeKind::Resumed);
        let protocol = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Protocol::Http2,
            _ => Protocol::Http1,
        };
        debug!(
            "TLS to {}: {} handshake, {}; connected in {took:?}, waited {waited:?} for a session \
             ticket",
            name.to_str(),
            if resumed { "resumed" } else { "full" },
            protocol.name()
        );
        Ok((tls, protocol, handshake))
    }
}

/// A handshake under way, or made and the server's next records not yet read: its end is told
/// to the session store however it ends, also when the connection attempt is dropped half-way
/// (a timeout), so that no connection waits for a handshake that is gone. A made connection's
/// handshake ends when a read first brings bytes from the server (or the connection's end, or
/// an error): a TLS 1.3 server sends its session tickets right after the handshake, before any
/// answer, so they are in the store by then. The session store waits for tickets only
/// [`super::resume::GRACE`] after a handshake ends: a connection that sat unread (an early one
/// waiting for its request, or the first request's, queued behind the other calls' work on the
/// one thread) had its tickets counted as never sent (BENCHMARKS.md, tenth session), and so did
/// one read before its tickets came, when the server or the one thread was slow: one start in
/// twenty at TLS N = 50 then made 20 to 43 full handshakes (BENCHMARKS.md, thirteenth session).
#[derive(Debug)]
struct Handshake {
    tickets: Arc<Tickets>,
    name: ServerName<'static>,
    reserved: bool,
    /// The server's first records after it were read (see [`super::resume::Host::ended`]).
    answered: bool,
}

impl Drop for Handshake {
    fn drop(&mut self) {
        self.tickets.ended(&self.name, self.reserved, self.answered);
    }
}

/// One TLS connection.
#[derive(Debug)]
struct Tls {
    stream: tokio_rustls::client::TlsStream<Watched>,
    /// The handshake, until the server's first records after it are read.
    unread: Option<Handshake>,
}

impl Tls {
    /// The TLS connection `stream`, whose handshake's end `handshake` tells.
    fn new(mut stream: tokio_rustls::client::TlsStream<Watched>, handshake: Handshake) -> Self {
        // What the handshake itself read does not count.
        stream.get_mut().0.got = false;
        Self {
            stream,
            unread: Some(handshake),
        }
    }
}

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.stream).poll_read(cx, buf);
        if read.is_ready() || self.stream.get_ref().0.got {
            // The tickets the server sent after the handshake are in the store: it ends.
            if let Some(mut handshake) = self.unread.take() {
                handshake.answered = true;
            }
        }
        read
    }
}

/// A TCP connection that notes when a read gave something (bytes, its end or an error), so
/// that its TLS connection knows when the server's first records after the handshake came.
#[derive(Debug)]
struct Watched {
    tcp: TcpStream,
    got: bool,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if read.is_ready() {
            self.got = true;
        }
        read
    }
}

/// `AsyncWrite` for a wrapper that writes through its field `$field` unchanged.
macro_rules! write_through {
    ($wrapper:ty, $field:ident) => {
        impl AsyncWrite for $wrapper {
            fn poll_write(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.$field).poll_write(cx, buf)
            }

            fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Pin::new(&mut self.$field).poll_flush(cx)
            }

            fn poll_shutdown(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<io::Result<()>> {
                Pin::new(&mut self.$field).poll_shutdown(cx)
            }

            fn poll_write_vectored(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                Pin::new(&mut self.$field).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.$field.is_write_vectored()
            }
        }
    };
}

write_through!(Watched, tcp);
write_through!(Tls, stream);
