//! The HTTPS client's trust store, for minimal images.
//!
//! Roots: the system's CA bundle when there is one (and `SSL_CERT_FILE` is not set); otherwise
//! the Mozilla roots built into the binary (`webpki-root-certs`), so a `FROM scratch` image
//! needs no CA files. On top, `AWS_CA_BUNDLE` and `SSL_CERT_FILE` add PEM certificates, for VPC
//! endpoints with private CAs and TLS-inspecting proxies.

use crate::error::{Class, Reason};
use aws_sdk_kms::config::SharedHttpClient;
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use base64::Engine as _;
use std::path::Path;

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

fn system_bundle_present() -> bool {
    std::env::var_os("SSL_CERT_DIR").is_some()
        || SYSTEM_BUNDLES.iter().any(|p| Path::new(p).is_file())
}

/// The roots built into the binary, as one PEM blob.
fn builtin_roots() -> Vec<u8> {
    let mut pem = String::new();
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

/// The trust store for this process's environment.
pub fn trust_store() -> Result<TrustStore, Reason> {
    let native = system_bundle_present() && std::env::var_os("SSL_CERT_FILE").is_none();
    let mut store = if native {
        TrustStore::default()
    } else {
        TrustStore::empty().with_pem_certificate(builtin_roots())
    };
    for var in EXTRA_CA_VARS {
        let Some(path) = std::env::var_os(var) else {
            continue;
        };
        let pem = std::fs::read(&path).map_err(|e| {
            Reason::new(
                Class::Config,
                format!("{var}={}: cannot read it: {e}", path.to_string_lossy()),
            )
        })?;
        if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
            return Err(Reason::new(
                Class::Config,
                format!("{var}={}: no PEM certificate in it", path.to_string_lossy()),
            ));
        }
        store = store.with_pem_certificate(pem);
    }
    Ok(store)
}

/// The HTTPS client (rustls with aws-lc) with [`trust_store`].
pub fn http_client() -> Result<SharedHttpClient, Reason> {
    let context = TlsContext::builder()
        .with_trust_store(trust_store()?)
        .build()
        .map_err(|e| Reason::new(Class::Config, format!("TLS configuration: {e}")))?;
    Ok(Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context)
        .build_https())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_roots_are_pem() {
        let pem = String::from_utf8(builtin_roots()).unwrap();
        let count = pem.matches("-----BEGIN CERTIFICATE-----").count();
        assert!(count > 100, "{count}");
        assert_eq!(count, pem.matches("-----END CERTIFICATE-----").count());
    }
}
