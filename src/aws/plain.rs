//! Plain-HTTP requests when `HTTP_PROXY` is not set (a local endpoint such as moto or
//! LocalStack, an ECS or EKS credentials endpoint): [`super::exchange`]s of our own over TCP,
//! as the HTTPS client sends them to an origin that speaks HTTP/1.1, with the connect and read
//! timeouts of the caller's settings. Through `HTTP_PROXY`, the SDK's own client carries them
//! ([`super::tls`]).

use super::dns::SharedDns;
use super::exchange::{Answer, Conn, Exchanges, Wiped, request_bytes, response};
use super::https::{connect_error, in_read_time, in_time};
use super::multiplex::origin_of;
use super::tls::{Post, Reply};
use aws_smithy_runtime_api::client::http::HttpConnectorFuture;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use std::sync::Arc;
use std::time::Duration;

/// The plain-HTTP client: TCP connections (names looked up once per host, shared with the
/// HTTPS client) and the idle ones.
#[derive(Debug, Clone)]
pub struct Plain {
    dns: SharedDns,
    exchanges: Arc<Exchanges>,
}

impl Plain {
    /// A client whose names `dns` looks up.
    pub fn new(dns: SharedDns) -> Self {
        Plain {
            dns,
            exchanges: Arc::default(),
        }
    }

    /// Sends `request` (its body in memory: see [`HttpRequest::body`]), connecting within
    /// `connect` and answered within `read`.
    pub fn call(
        &self,
        request: HttpRequest,
        connect: Option<Duration>,
        read: Option<Duration>,
    ) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let this = self.clone();
        HttpConnectorFuture::new(async move {
            let (parts, body) = request.into_parts();
            // It may hold a plaintext (an Encrypt's body).
            let wire = Wiped::new(request_bytes(&parts, body.bytes().unwrap_or_default()));
            let origin = origin_of(&parts.uri);
            response(this.send(&wire, &parts.uri, &origin, connect, read).await?)
        })
    }

    /// Sends `post` ([`super::json`]'s calls), connecting within `connect` and answered within
    /// `read`.
    pub async fn post(
        &self,
        post: Post<'_>,
        connect: Option<Duration>,
        read: Option<Duration>,
    ) -> Result<Reply, ConnectorError> {
        let answer = self
            .send(&post.wire(), post.uri, post.origin, connect, read)
            .await?;
        Ok(Reply::of(answer))
    }

    /// Sends `wire` to `uri` (whose origin is `origin`).
    async fn send(
        &self,
        wire: &[u8],
        uri: &http::Uri,
        origin: &str,
        connect: Option<Duration>,
        read: Option<Duration>,
    ) -> Result<Answer, ConnectorError> {
        let send = self.exchanges.send(wire, origin, || async move {
            let stream = in_time(connect, super::tcp::connect(&self.dns, uri))
                .await
                .map_err(connect_error)?;
            Ok(Box::new(stream) as Conn)
        });
        in_read_time(read, send).await
    }
}
