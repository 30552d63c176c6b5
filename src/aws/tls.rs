//! The HTTP client of every AWS call, its proxies, and its trust store for minimal images.
//!
//! Plain HTTP requests (local endpoints, credentials endpoints) are exchanges of our own
//! ([`super::plain`]), or go through the SDK's client when `HTTP_PROXY` is set. HTTPS requests use kms-env's own client ([`super::https`]: rustls with `ring`, which
//! seeds from the kernel's `getrandom`, AWS-LC's CPU-jitter entropy source cost most of a start's
//! CPU, and sessions resumed across connections; see BENCHMARKS.md), built on the first HTTPS
//! request, once. Its roots are read once, by the first HTTPS connection, so a start against
//! plain-HTTP endpoints reads no certificates, and made trust anchors only as a chain needs them
//! ([`super::roots`]). The roots: the system's CA bundle (one file) when there is one and
//! `SSL_CERT_FILE` is not set, or `SSL_CERT_DIR`'s certificates when that is set; otherwise the
//! Mozilla roots built into the binary (`webpki-root-certs`), so a `FROM scratch` image needs no CA
//! files. On top, `AWS_CA_BUNDLE` and `SSL_CERT_FILE` add PEM certificates (VPC endpoints with
//! private CAs, TLS-inspecting proxies); those are read and checked at start, so a bad bundle is a
//! configuration error (78) before any call. See README "Containers".
//!
//! The SDK gets the client as its `HttpClient` ([`Transport::sdk`]); the reads of a start
//! ([`super::json`]) go through a [`Poster`] over the same clients, as [`Post`]s answered by
//! [`Reply`]s, without the SDK's request and response types.

use super::BoxError;
use super::dns::SharedDns;
use super::exchange::Wiped;
use super::https::{Https, TlsConfig};
use super::plain::Plain;
use super::roots::Roots;
use crate::error::{Class, Reason};
use aws_smithy_async::rt::sleep::{SharedAsyncSleep, default_async_sleep};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::proxy::matcher::Matcher;
use rustls_pki_types::{CertificateDer, TrustAnchor};
use std::fs::File;
use std::io::{self, BufRead};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tracing::debug;
use zeroize::Zeroizing;

/// Where distributions keep their CA bundle (as rustls-native-certs and openssl look).
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Variables whose PEM files are added to the roots.
pub const EXTRA_CA_VARS: &[&str] = &["AWS_CA_BUNDLE", "SSL_CERT_FILE"];

/// The certificates of PEM text (`None` for a block that is not base64), or why it could not be
/// read. Certificates are public, so this decodes with a plain base64 decoder: the constant-time
/// one that `rustls-pki-types` uses for all PEM (it is made for private keys) was most of the CPU
/// of reading a 140-certificate system bundle at each HTTPS start. Lines are found with `memchr`
/// and the blocks decoded by `base64-simd` (both already in the SDK's dependency
/// tree). The text is read in pieces ([`PEM_READ`]): one read of a whole 220 KB bundle into fresh
/// memory cost more CPU than all the rest of it (BENCHMARKS.md).
fn pem_certificates(mut pem: impl BufRead) -> io::Result<Vec<Option<CertificateDer<'static>>>> {
    let mut certs = Vec::new();
    let mut b64 = Vec::with_capacity(4096);
    let mut inside = false;
    let mut line = |text: &[u8]| {
        let text = text.trim_ascii();
        if !inside {
            inside = text == b"-----BEGIN CERTIFICATE-----";
            b64.clear();
        } else if text == b"-----END CERTIFICATE-----" {
            inside = false;
            let decode = |b64: &[u8]| base64_simd::STANDARD.decode_to_vec(b64);
            // Whitespace inside a line is rare: dropped only when the lines do not decode.
            let der = decode(&b64).or_else(|_| {
                b64.retain(|b| !b.is_ascii_whitespace());
                decode(&b64)
            });
            certs.push(der.ok().map(CertificateDer::from));
        } else {
            b64.extend_from_slice(text);
        }
    };
    // The lines are taken from the reader's buffer; only a line cut by the end of a read is
    // copied.
    let mut cut = Vec::new();
    loop {
        let read = pem.fill_buf()?;
        if read.is_empty() {
            break;
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', read) {
            if cut.is_empty() {
                line(&read[start..end]);
            } else {
                cut.extend_from_slice(&read[start..end]);
                line(&cut);
                cut.clear();
            }
            start = end + 1;
        }
        cut.extend_from_slice(&read[start..]);
        let used = read.len();
        pem.consume(used);
    }
    line(&cut);
    if inside {
        certs.push(None);
    }
    Ok(certs)
}

/// How much of a PEM file is read at a time: a buffer this size is reused, where reading a
/// 220 KB bundle whole faulted in 54 fresh pages and copied into them.
const PEM_READ: usize = 16 * 1024;

/// The certificates of the PEM file at `path` (see [`pem_certificates`]).
fn pem_file(path: &Path) -> io::Result<Vec<Option<CertificateDer<'static>>>> {
    pem_certificates(io::BufReader::with_capacity(PEM_READ, File::open(path)?))
}

/// Advice for an unusable CA bundle.
const CA_HINT: &str = "AWS_CA_BUNDLE and SSL_CERT_FILE must name readable PEM files of CA \
     certificates (-----BEGIN CERTIFICATE----- blocks); unset them to use the system's roots";

/// The certificates of the PEM files named by `AWS_CA_BUNDLE` and `SSL_CERT_FILE`, read and
/// checked, as the trust anchors [`roots`] adds (so each file is read and parsed once).
fn extra_cas() -> Result<Vec<TrustAnchor<'static>>, Reason> {
    extra_cas_unhinted().map_err(|r| r.with_hint(CA_HINT))
}

fn extra_cas_unhinted() -> Result<Vec<TrustAnchor<'static>>, Reason> {
    let mut out = Vec::new();
    for var in EXTRA_CA_VARS {
        let Some(path) = std::env::var_os(var) else {
            continue;
        };
        let shown = path.to_string_lossy();
        let certs = pem_file(Path::new(&path)).map_err(|e| {
            Reason::new(Class::Config, format!("{var}={shown}: cannot read it: {e}"))
        })?;
        let certs: Option<Vec<CertificateDer>> = certs.into_iter().collect();
        match certs {
            Some(certs) if !certs.is_empty() => {
                for cert in &certs {
                    let anchor = webpki::anchor_from_trusted_cert(cert).map_err(|_| {
                        Reason::new(
                            Class::Config,
                            format!("{var}={shown}: a certificate in it cannot be parsed"),
                        )
                    })?;
                    out.push(anchor.to_owned());
                }
            }
            _ => {
                return Err(Reason::new(
                    Class::Config,
                    format!("{var}={shown}: no PEM certificate in it"),
                ));
            }
        }
    }
    Ok(out)
}

/// The root certificates, as read (made trust anchors by [`Roots`] when a chain needs them): the
/// system's (one bundle file, or `SSL_CERT_DIR`'s certificates) or the ones built into the binary.
fn root_certs() -> Vec<CertificateDer<'static>> {
    let mut certs = Vec::new();
    if std::env::var_os("SSL_CERT_DIR").is_some() {
        // The platform's loader reads the directory (and SSL_CERT_FILE).
        certs = rustls_native_certs::load_native_certs().certs;
        debug!("{} roots from SSL_CERT_DIR", certs.len());
    } else if std::env::var_os("SSL_CERT_FILE").is_none()
        && let Some(read) = SYSTEM_BUNDLES
            .iter()
            .find_map(|p| pem_file(Path::new(p)).ok())
    {
        // Blocks that are not base64 are left out.
        certs = read.into_iter().flatten().collect();
        debug!("{} roots from the system's CA bundle", certs.len());
    }
    if certs.is_empty() {
        debug!("the roots built into the binary");
        certs = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
    }
    certs
}

/// Hosts that are never reached through a proxy: the ECS and EKS credential and metadata
/// endpoints and loopback (as the AWS CLI and SDKs treat them).
const NEVER_PROXIED: &str =
    "169.254.170.2,169.254.170.23,169.254.169.254,fd00:ec2::254,localhost,127.0.0.1,::1";

/// Advice for an unusable proxy setting.
const PROXY_HINT: &str = "HTTPS_PROXY and HTTP_PROXY must be proxy URLs such as \
     http://proxy.internal:3128 (user:password@ allowed); NO_PROXY lists hosts to reach directly";

/// The first of `vars` that is set and not empty.
fn first_set(vars: &[&str]) -> Option<(String, String)> {
    vars.iter().find_map(|v| {
        std::env::var(v)
            .ok()
            .filter(|s| !s.is_empty())
            .map(|s| ((*v).to_owned(), s))
    })
}

/// The proxy setting for `https` or plain HTTP requests, from `HTTPS_PROXY` / `HTTP_PROXY`
/// (either case) and `NO_PROXY`, as the AWS CLI reads them: the proxy URL (checked) and the
/// hosts reached directly.
fn proxy_setting(https: bool) -> Result<Option<(ProxyConfig, String, String)>, Reason> {
    let vars: &[&str] = if https {
        &["HTTPS_PROXY", "https_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy"]
    };
    let Some((var, url)) = first_set(vars) else {
        return Ok(None);
    };
    let config = if https {
        ProxyConfig::https(url.as_str())
    } else {
        ProxyConfig::http(url.as_str())
    }
    .map_err(|e| {
        Reason::new(Class::Config, format!("{var} is not a proxy URL: {e}")).with_hint(PROXY_HINT)
    })?;
    let no_proxy = match first_set(&["NO_PROXY", "no_proxy"]) {
        Some((_, user)) => format!("{user},{NEVER_PROXIED}"),
        None => NEVER_PROXIED.to_owned(),
    };
    Ok(Some((config.no_proxy(no_proxy.clone()), url, no_proxy)))
}

/// The plain HTTP client (through `HTTP_PROXY` when set).
fn http_only(proxy: ProxyConfig) -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        plain_connector(&proxy, settings, components.and_then(|c| c.sleep_impl()))
    })
}

/// A plain-HTTP connector through `proxy` with `settings`; `sleep` is the timer of its
/// timeouts.
fn plain_connector(
    proxy: &ProxyConfig,
    settings: Option<&HttpConnectorSettings>,
    sleep: Option<SharedAsyncSleep>,
) -> Connector {
    let mut builder = Connector::builder();
    builder.set_connector_settings(settings.cloned());
    builder.set_sleep_impl(sleep);
    builder.proxy_config(proxy.clone()).build_http()
}

/// The TLS configuration of the HTTPS client: rustls with ring, trusting the roots of
/// [`root_certs`] and `extra` through [`Roots`] (webpki's verification, with anchors made only
/// of the roots a chain can use).
fn tls_config(extra: Vec<TrustAnchor<'static>>) -> Arc<TlsConfig> {
    let provider = Arc::new(provider());
    let roots = Arc::new(Roots::new(root_certs, extra, provider.clone()));
    let verifier = roots.clone();
    TlsConfig::new(
        Arc::new(move || {
            Ok(
                rustls::ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS configuration: {e}"))?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier.clone())
                    .with_no_client_auth(),
            )
        }),
        Arc::new(move || roots.load()),
    )
}

/// `ring`'s provider with AES-128-GCM and SHA-256 offered first (rustls offers AES-256-GCM with
/// SHA-384 first): SHA-256 runs on the CPU's SHA extensions where SHA-384 is computed in
/// software, and it is the suite AWS's endpoints prefer (TLS 1.3's mandatory one, Go's first
/// choice on CPUs with AES instructions). Every suite stays offered; BENCHMARKS.md has the gain.
/// Its X25519 group hands out the key pairs that waiting connections made ahead
/// ([`super::keyshare`]).
fn provider() -> rustls::crypto::CryptoProvider {
    use rustls::CipherSuite as Suite;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = super::keyshare::with_pairs_ahead(provider.kx_groups);
    provider.cipher_suites.sort_by_key(|s| match s.suite() {
        Suite::TLS13_AES_128_GCM_SHA256 => 0,
        _ if s.tls13().is_some() => 1,
        Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 2,
        _ => 3,
    });
    provider
}

/// The HTTPS client (rustls with ring, sessions resumed: see [`super::https`]).
fn https_client(
    tls: Arc<TlsConfig>,
    dns: SharedDns,
    proxy: Arc<Matcher>,
    settings: &HttpConnectorSettings,
) -> Https {
    Https::new(
        tls,
        dns,
        proxy,
        settings.connect_timeout(),
        settings.read_timeout(),
    )
}

#[derive(Debug)]
struct Clients {
    http: SharedHttpClient,
    /// `HTTP_PROXY`, for plain-HTTP connectors made without the SDK's runtime components.
    http_proxy: ProxyConfig,
    /// Without `HTTP_PROXY`, our own plain-HTTP client ([`Plain`]), for requests whose body is
    /// in memory (every request of kms-env's); `http` for the others.
    direct: Option<Plain>,
    https: OnceLock<Https>,
    /// The settings of the first connector made ([`Transport::connector`]), with which
    /// [`Transport::prefetch`] makes the HTTPS client when it is the first to need it.
    settings: OnceLock<HttpConnectorSettings>,
    tls: Arc<TlsConfig>,
    /// The HTTPS client's name lookups (made here so they can start before it is built).
    dns: SharedDns,
    /// `HTTPS_PROXY` and the hosts reached directly, as the HTTPS client and
    /// [`Transport::prefetch`] both decide by it.
    https_proxy: Arc<Matcher>,
}

impl Clients {
    /// The HTTPS client, made now with `settings` if it is not yet.
    fn https(&self, settings: &HttpConnectorSettings) -> &Https {
        self.https.get_or_init(|| {
            https_client(
                self.tls.clone(),
                self.dns.clone(),
                self.https_proxy.clone(),
                settings,
            )
        })
    }
}

/// The matcher for `HTTPS_PROXY` (`proxy`: its URL and the hosts reached directly), if set.
fn https_matcher(proxy: Option<(String, String)>) -> Arc<Matcher> {
    Arc::new(match proxy {
        Some((url, no)) => Matcher::builder().https(url).no(no).build(),
        None => Matcher::builder().build(),
    })
}

/// Plain HTTP through one client, HTTPS through the other, built on first use.
#[derive(Debug, Clone)]
struct LazyTls(Arc<Clients>);

impl HttpClient for LazyTls {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(ByScheme {
            clients: self.0.clone(),
            settings: settings.clone(),
            components: Some(components.clone()),
            plain: OnceLock::new(),
        })
    }
}

/// The connector for one set of settings: picks the client by the request's scheme. Made by
/// the SDK with its runtime components, or by [`Transport::connector`] without them (the calls
/// of [`super::json`]), when plain HTTP gets tokio's timer.
#[derive(Debug)]
struct ByScheme {
    clients: Arc<Clients>,
    settings: HttpConnectorSettings,
    components: Option<RuntimeComponents>,
    plain: OnceLock<SharedHttpConnector>,
}

impl HttpConnector for ByScheme {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let response = if request.uri().starts_with("https:") {
            self.clients.https(&self.settings).call(request)
        } else if let Some(direct) = self
            .clients
            .direct
            .as_ref()
            .filter(|_| request.body().bytes().is_some())
        {
            direct.call(
                request,
                self.settings.connect_timeout(),
                self.settings.read_timeout(),
            )
        } else {
            self.plain
                .get_or_init(|| match &self.components {
                    Some(components) => {
                        self.clients.http.http_connector(&self.settings, components)
                    }
                    None => SharedHttpConnector::new(plain_connector(
                        &self.clients.http_proxy,
                        Some(&self.settings),
                        default_async_sleep(),
                    )),
                })
                .call(request)
        };
        HttpConnectorFuture::new(async move {
            Ok(response.await?.map(|body| {
                SdkBody::from_body_1_x(http_body_util::Limited::new(body, MAX_RESPONSE_BODY))
            }))
        })
    }
}

/// The largest response body read: far above any answer of the calls kms-env makes (a 64 KiB
/// secret, ten 8 KiB parameters a page), so an endpoint that streams without end fails the call
/// instead of filling the memory until the deadline.
pub const MAX_RESPONSE_BODY: usize = 4 * 1024 * 1024;

/// The HTTP client of every call: the SDK's (through [`Transport::sdk`]) and
/// [`super::json`]'s (through [`Transport::connector`]) share its connections, TLS
/// configuration, sessions and name lookups.
#[derive(Debug, Clone)]
pub struct Transport(Arc<Clients>);

impl Transport {
    /// Starts the first connection to `url` now when it is an HTTPS endpoint: its name lookup
    /// at once when our client connects straight to that host (not an IP address, not through
    /// `HTTPS_PROXY`), and its TCP and TLS connection on a task ([`Https::preconnect`]), so
    /// that the first call of a service makes them while it waits for the credentials (an ECS
    /// or EKS credentials request, on a task role) instead of after them.
    pub fn prefetch(&self, url: &str) {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return;
        };
        let Some(host) = uri.host() else {
            return;
        };
        if uri.scheme_str() != Some("https") {
            return;
        }
        let named = host.parse::<std::net::IpAddr>().is_err() && !host.starts_with('[');
        if named && self.0.https_proxy.intercept(&uri).is_none() {
            self.0.dns.prefetch(host);
        }
        if let Some(settings) = self.0.settings.get() {
            self.0.https(settings).preconnect(&uri);
        }
    }

    /// The client as the SDK takes it.
    pub fn sdk(&self) -> SharedHttpClient {
        SharedHttpClient::new(LazyTls(self.0.clone()))
    }

    /// The sender of [`Post`]s with `settings` (connect and read timeouts), for the calls made
    /// without the SDK.
    pub fn poster(&self, settings: &HttpConnectorSettings) -> Poster {
        let _ = self.0.settings.set(settings.clone());
        Poster(Arc::new(ByScheme {
            clients: self.0.clone(),
            settings: settings.clone(),
            components: None,
            plain: OnceLock::new(),
        }))
    }
}

/// A `POST` of kms-env's own calls ([`super::json`]), as the clients under [`Poster`] send it
/// without the SDK's request and response types: its URI parsed and its origin key made once
/// per client, its header fields as the signing gave them, written straight to an HTTP/1.1
/// request's bytes (the SDK's types were about a fifth of what a call cost over the floor:
/// BENCHMARKS.md, thirteenth session).
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    /// The endpoint's URI.
    pub uri: &'a http::Uri,
    /// Its origin ([`super::multiplex::origin_of`]).
    pub origin: &'a str,
    /// The header fields, but `host` and `content-length`.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

impl Post<'_> {
    /// Its bytes as an HTTP/1.1 request; zeroed when dropped (the body may hold a plaintext).
    pub fn wire(&self) -> Wiped {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| (name.as_bytes(), value.as_bytes()));
        Wiped::new(super::exchange::wire("POST", self.uri, headers, self.body))
    }

    /// It as an `http` request with `body` (its body, as HTTP/2 or the SDK's client under
    /// `HTTP_PROXY` takes it).
    pub fn http<B>(&self, body: B) -> Result<http::Request<B>, ConnectorError> {
        let mut request = http::Request::post(self.uri.clone());
        for (name, value) in self.headers {
            request = request.header(*name, *value);
        }
        request
            .body(body)
            .map_err(|e| ConnectorError::user(e.into()))
    }
}

/// The answer to a [`Post`]: what [`super::json`] reads of it.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The `x-amzn-ErrorType` header, if any.
    pub error_type: Option<String>,
    /// The body, zeroed when dropped: at most [`MAX_RESPONSE_BODY`] and one byte, which the
    /// caller refuses.
    pub body: Zeroizing<Vec<u8>>,
}

impl Reply {
    /// The reply of an HTTP/1.1 exchange's answer.
    pub fn of(answer: super::exchange::Answer) -> Self {
        Reply {
            status: answer.status.as_u16(),
            error_type: error_type(&answer.headers),
            body: Zeroizing::new(answer.body),
        }
    }

    /// The reply of an `http` response, its body read (at most [`MAX_RESPONSE_BODY`]).
    pub async fn read<B>(response: http::Response<B>) -> Result<Self, PostError>
    where
        B: hyper::body::Body,
        B::Error: Into<BoxError>,
    {
        let status = response.status().as_u16();
        let error_type = error_type(response.headers());
        let body = http_body_util::Limited::new(response.into_body(), MAX_RESPONSE_BODY);
        match http_body_util::BodyExt::collect(body).await {
            Ok(collected) => Ok(Reply {
                status,
                error_type,
                body: Zeroizing::new(collected.to_bytes().to_vec()),
            }),
            Err(e) => Err(PostError::Body(e)),
        }
    }
}

/// The `x-amzn-ErrorType` header of `headers`, if any (the error code of a JSON 1.1 answer).
fn error_type(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-amzn-ErrorType")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Why a [`Post`] has no [`Reply`].
#[derive(Debug)]
pub enum PostError {
    /// No answer (the connection, a timeout), as the SDK's connectors say it.
    Dispatch(ConnectorError),
    /// An answer whose body could not be read (cut off, or over the limit).
    Body(BoxError),
}

impl From<ConnectorError> for PostError {
    fn from(e: ConnectorError) -> Self {
        PostError::Dispatch(e)
    }
}

/// Sends the [`Post`]s of [`super::json`] by scheme, as the SDK's connector does its requests:
/// HTTPS through our client, plain HTTP through ours unless `HTTP_PROXY` is set, then through
/// the SDK's.
#[derive(Debug, Clone)]
pub struct Poster(Arc<ByScheme>);

impl Poster {
    /// Sends `post` and reads its answer.
    pub async fn post(&self, post: Post<'_>) -> Result<Reply, PostError> {
        let by = &self.0;
        if post.uri.scheme_str() == Some("https") {
            by.clients.https(&by.settings).post(post).await
        } else if let Some(direct) = &by.clients.direct {
            let (connect, read) = (by.settings.connect_timeout(), by.settings.read_timeout());
            Ok(direct.post(post, connect, read).await?)
        } else {
            let request = post.http(SdkBody::from(post.body.to_vec()))?;
            let request =
                HttpRequest::try_from(request).map_err(|e| ConnectorError::user(e.into()))?;
            let response = by.call(request).await?;
            Reply::read(
                response
                    .try_into_http1x()
                    .map_err(|e| ConnectorError::user(e.into()))?,
            )
            .await
        }
    }
}

/// The HTTP client; `AWS_CA_BUNDLE`, `SSL_CERT_FILE` and the proxy variables are read and
/// checked now.
pub fn transport() -> Result<Transport, Reason> {
    let http_proxy = proxy_setting(false)?;
    let direct = http_proxy.is_none();
    let http = http_proxy.map_or_else(ProxyConfig::disabled, |(config, ..)| config);
    let tls = tls_config(extra_cas()?);
    let https_proxy = https_matcher(proxy_setting(true)?.map(|(_, url, no)| (url, no)));
    let dns = SharedDns::default();
    Ok(Transport(Arc::new(Clients {
        http: http_only(http.clone()),
        http_proxy: http,
        direct: direct.then(|| Plain::new(dns.clone())),
        https: OnceLock::new(),
        settings: OnceLock::new(),
        tls,
        dns,
        https_proxy,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport with `HTTPS_PROXY` set to `proxy` (and `NO_PROXY` to `no`), if any.
    fn transport_with(proxy: Option<(&str, &str)>) -> Transport {
        Transport(Arc::new(Clients {
            http: http_only(ProxyConfig::disabled()),
            http_proxy: ProxyConfig::disabled(),
            direct: None,
            https: OnceLock::new(),
            settings: OnceLock::new(),
            tls: tls_config(vec![]),
            dns: SharedDns::default(),
            https_proxy: https_matcher(proxy.map(|(url, no)| (url.to_owned(), no.to_owned()))),
        }))
    }

    #[tokio::test]
    async fn only_names_our_https_client_connects_to_are_prefetched() {
        let direct = transport_with(None);
        for url in [
            "http://kms.test:8080",
            "https://127.0.0.1:8443",
            "https://[::1]:8443",
            "not a url",
        ] {
            direct.prefetch(url);
        }
        assert!(
            direct.0.dns.hosts().is_empty(),
            "{:?}",
            direct.0.dns.hosts()
        );
        direct.prefetch("https://localhost:8443/");
        direct.prefetch("https://localhost:8443/");
        let hosts: Vec<String> = direct.0.dns.hosts().into_iter().map(|h| h.0).collect();
        assert_eq!(hosts, ["localhost"]);

        let proxied = transport_with(Some(("http://proxy.test:3128", "localhost")));
        proxied.prefetch("https://kms.us-east-1.amazonaws.com");
        assert!(proxied.0.dns.hosts().is_empty(), "the proxy looks it up");
        proxied.prefetch("https://localhost");
        let hosts: Vec<String> = proxied.0.dns.hosts().into_iter().map(|h| h.0).collect();
        assert_eq!(hosts, ["localhost"], "NO_PROXY hosts are reached directly");
    }

    #[test]
    fn pem_certificates_reads_what_rustls_pki_types_reads() {
        use rustls_pki_types::pem::PemObject;
        let system = SYSTEM_BUNDLES.iter().find_map(|p| std::fs::read(p).ok());
        let made = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let crlf = made.cert.pem().replace('\n', "\r\n");
        for pem in system
            .into_iter()
            .chain([made.cert.pem().into_bytes(), crlf.into_bytes()])
        {
            let ours: Vec<_> = pem_certificates(&pem[..])
                .unwrap()
                .into_iter()
                .map(Option::unwrap)
                .collect();
            let theirs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                .map(Result::unwrap)
                .collect();
            assert!(!ours.is_empty());
            assert_eq!(ours, theirs);
            // Read in pieces smaller than a line, as a file is read in pieces of PEM_READ.
            let pieces = pem_certificates(io::BufReader::with_capacity(7, &pem[..])).unwrap();
            assert_eq!(
                pieces.into_iter().map(Option::unwrap).collect::<Vec<_>>(),
                theirs
            );
        }
        let spaced: String = made
            .cert
            .pem()
            .lines()
            .map(|l| match l.starts_with("-----") {
                true => format!("{l} \t\n"),
                false => format!("  {} {}\t\n", &l[..10], &l[10..]),
            })
            .collect();
        let spaced = pem_certificates(spaced.as_bytes()).unwrap();
        assert_eq!(
            spaced,
            vec![Some(made.cert.der().clone())],
            "whitespace is dropped"
        );
        let bad = b"x\n-----BEGIN CERTIFICATE-----\nA*A=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(&bad[..]).unwrap(), vec![None]);
        let cut = b"-----BEGIN CERTIFICATE-----\nAAAA\n";
        assert_eq!(pem_certificates(&cut[..]).unwrap(), vec![None]);
        assert!(pem_certificates(&b"no pem here"[..]).unwrap().is_empty());
        let dir = tempfile::tempdir().unwrap();
        assert!(
            pem_file(dir.path()).is_err(),
            "a directory is not read as empty"
        );
    }

    #[test]
    fn aes_128_with_sha_256_is_offered_first_and_nothing_is_dropped() {
        use rustls::CipherSuite as Suite;
        let ours: Vec<Suite> = provider().cipher_suites.iter().map(|s| s.suite()).collect();
        let theirs: Vec<Suite> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(ours[0], Suite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(ours[1], Suite::TLS13_AES_256_GCM_SHA384);
        let tls12 = ours
            .iter()
            .position(|s| *s == Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
            .unwrap();
        assert_eq!(tls12, 3, "the three TLS 1.3 suites first: {ours:?}");
        let (mut a, mut b) = (ours.clone(), theirs);
        a.sort_by_key(|s| u16::from(*s));
        b.sort_by_key(|s| u16::from(*s));
        assert_eq!(a, b);
    }

    #[test]
    fn the_builtin_roots_are_all_usable() {
        let mut store = rustls::RootCertStore::empty();
        let (n, bad) = store
            .add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
        assert!(n > 100, "{n}");
        assert_eq!(bad, 0);
    }
}
