//! The HTTP client of every AWS call, and its trust store for minimal images.
//!
//! Plain HTTP requests (local endpoints) use a client without TLS. The HTTPS client (rustls
//! with `ring`, which seeds from the kernel's `getrandom`; AWS-LC's CPU-jitter entropy source
//! cost most of a start's CPU, see BENCHMARKS.md) is built on the first HTTPS request, once,
//! and only then are its roots read: the system's CA bundle (one file) when there is one and
//! `SSL_CERT_FILE` is not set, or `SSL_CERT_DIR`'s certificates when that is set; otherwise the
//! Mozilla roots built into the binary (`webpki-root-certs`), so a `FROM scratch` image needs no
//! CA files. On top, `AWS_CA_BUNDLE` and `SSL_CERT_FILE` add PEM certificates (VPC endpoints
//! with private CAs, TLS-inspecting proxies); those are read and checked at start, so a bad
//! bundle is a configuration error (78) before any call. See README "Containers".

use crate::error::{Class, Reason};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, Connector};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use tracing::debug;

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

/// The roots built into the binary, as one PEM blob.
fn builtin_roots() -> Vec<u8> {
    pem_of(
        webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(AsRef::as_ref),
    )
}

/// DER certificates as one PEM blob (64-character lines).
fn pem_of<'a>(ders: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut pem = String::new();
    for der in ders {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// The certificates of a PEM blob that can be trust anchors, as PEM again when some could not
/// (the TLS context refuses a blob with an unusable certificate), with how many were usable.
fn usable(pem: Vec<u8>) -> (Vec<u8>, usize) {
    let mut good = Vec::new();
    let mut bad = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        match cert {
            Ok(der) if webpki::anchor_from_trusted_cert(&der).is_ok() => good.push(der),
            _ => bad += 1,
        }
    }
    if bad == 0 {
        return (pem, good.len());
    }
    debug!("{bad} certificates of the CA bundle cannot be trust anchors; left out");
    (pem_of(good.iter().map(AsRef::as_ref)), good.len())
}

/// Advice for an unusable CA bundle.
const CA_HINT: &str = "AWS_CA_BUNDLE and SSL_CERT_FILE must name readable PEM files of CA \
     certificates (-----BEGIN CERTIFICATE----- blocks); unset them to use the system's roots";

/// The PEM files named by `AWS_CA_BUNDLE` and `SSL_CERT_FILE`, read and checked.
fn extra_cas() -> Result<Vec<Vec<u8>>, Reason> {
    extra_cas_unhinted().map_err(|r| r.with_hint(CA_HINT))
}

fn extra_cas_unhinted() -> Result<Vec<Vec<u8>>, Reason> {
    let mut out = Vec::new();
    for var in EXTRA_CA_VARS {
        let Some(path) = std::env::var_os(var) else {
            continue;
        };
        let shown = path.to_string_lossy();
        let pem = std::fs::read(&path).map_err(|e| {
            Reason::new(Class::Config, format!("{var}={shown}: cannot read it: {e}"))
        })?;
        let certs: Result<Vec<CertificateDer>, _> = CertificateDer::pem_slice_iter(&pem).collect();
        match certs {
            Ok(certs) if !certs.is_empty() => {
                if certs
                    .iter()
                    .any(|c| webpki::anchor_from_trusted_cert(c).is_err())
                {
                    return Err(Reason::new(
                        Class::Config,
                        format!("{var}={shown}: a certificate in it cannot be parsed"),
                    ));
                }
            }
            _ => {
                return Err(Reason::new(
                    Class::Config,
                    format!("{var}={shown}: no PEM certificate in it"),
                ));
            }
        }
        out.push(pem);
    }
    Ok(out)
}

/// The trust store: the system's or the built-in roots, and `extra`.
fn trust_store(extra: &[Vec<u8>]) -> TrustStore {
    let mut store = if std::env::var_os("SSL_CERT_DIR").is_some() {
        // The platform's loader reads the directory (and a bundle).
        TrustStore::default()
    } else {
        let system = (std::env::var_os("SSL_CERT_FILE").is_none())
            .then(|| {
                SYSTEM_BUNDLES
                    .iter()
                    .find_map(|p| std::fs::read(Path::new(p)).ok())
            })
            .flatten()
            .map(usable)
            .filter(|(_, n)| *n > 0);
        let pem = match system {
            Some((pem, n)) => {
                debug!("{n} roots from the system's CA bundle");
                pem
            }
            None => {
                debug!("the roots built into the binary");
                builtin_roots()
            }
        };
        TrustStore::empty().with_pem_certificate(pem)
    };
    for pem in extra {
        store = store.with_pem_certificate(pem.clone());
    }
    store
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

/// The proxy for `https` or plain HTTP requests, from `HTTPS_PROXY` / `HTTP_PROXY` (either
/// case) and `NO_PROXY`, as the AWS CLI reads them.
fn proxy_config(https: bool) -> Result<ProxyConfig, Reason> {
    let vars: &[&str] = if https {
        &["HTTPS_PROXY", "https_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy"]
    };
    let Some((var, url)) = first_set(vars) else {
        return Ok(ProxyConfig::disabled());
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
    Ok(config.no_proxy(no_proxy))
}

/// A client whose connectors go through `proxy`, with TLS when `tls` is given.
fn client(proxy: ProxyConfig, tls: Option<TlsContext>) -> SharedHttpClient {
    Builder::new().build_with_connector_fn(move |settings, components| {
        let mut builder = Connector::builder();
        builder.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            builder.set_sleep_impl(components.sleep_impl());
        }
        let builder = builder.proxy_config(proxy.clone());
        match &tls {
            None => builder.build_http(),
            Some(context) => builder
                .tls_provider(Provider::Rustls(CryptoMode::Ring))
                .tls_context(context.clone())
                .build(),
        }
    })
}

/// The HTTPS client (rustls with ring).
fn https_client(extra: &[Vec<u8>], proxy: ProxyConfig) -> Result<SharedHttpClient, String> {
    let context = TlsContext::builder()
        .with_trust_store(trust_store(extra))
        .build()
        .map_err(|e| format!("TLS configuration: {e}"))?;
    Ok(client(proxy, Some(context)))
}

#[derive(Debug)]
struct Clients {
    http: SharedHttpClient,
    https: OnceLock<Result<SharedHttpClient, String>>,
    extra: Vec<Vec<u8>>,
    https_proxy: ProxyConfig,
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
            components: components.clone(),
        })
    }
}

/// The connector for one set of settings: picks the client by the request's scheme.
#[derive(Debug)]
struct ByScheme {
    clients: Arc<Clients>,
    settings: HttpConnectorSettings,
    components: RuntimeComponents,
}

impl HttpConnector for ByScheme {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let client = if request.uri().starts_with("https:") {
            let https = self.clients.https.get_or_init(|| {
                https_client(&self.clients.extra, self.clients.https_proxy.clone())
            });
            match https {
                Ok(client) => client,
                Err(e) => {
                    return HttpConnectorFuture::ready(Err(ConnectorError::other(
                        e.clone().into(),
                        None,
                    )));
                }
            }
        } else {
            &self.clients.http
        };
        let response = client
            .http_connector(&self.settings, &self.components)
            .call(request);
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

/// The HTTP client for the SDK; `AWS_CA_BUNDLE`, `SSL_CERT_FILE` and the proxy variables are
/// read and checked now.
pub fn http_client() -> Result<SharedHttpClient, Reason> {
    Ok(SharedHttpClient::new(LazyTls(Arc::new(Clients {
        http: client(proxy_config(false)?, None),
        https: OnceLock::new(),
        extra: extra_cas()?,
        https_proxy: proxy_config(true)?,
    }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roots_are_pem_and_usable() {
        let pem = builtin_roots();
        let text = String::from_utf8(pem.clone()).unwrap();
        let count = text.matches("-----BEGIN CERTIFICATE-----").count();
        assert!(count > 100, "{count}");
        assert_eq!(count, text.matches("-----END CERTIFICATE-----").count());
        let (same, usable_count) = usable(pem.clone());
        assert_eq!(usable_count, count);
        assert_eq!(same, pem, "nothing to leave out");
    }

    #[test]
    fn unusable_certificates_are_left_out_of_a_bundle() {
        let good = builtin_roots();
        let mut pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec();
        pem.extend_from_slice(&good);
        let (kept, n) = usable(pem);
        let kept = String::from_utf8(kept).unwrap();
        assert_eq!(n, kept.matches("-----BEGIN CERTIFICATE-----").count());
        assert_eq!(
            n,
            String::from_utf8(good)
                .unwrap()
                .matches("-----BEGIN CERTIFICATE-----")
                .count()
        );
    }
}
