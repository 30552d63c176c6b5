//! A loopback TLS front for moto with a certificate from a CA made here.

use super::moto;
use super::proxy::read_message;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The handshakes a TLS front made, in full and resumed.
#[derive(Debug, Default)]
pub struct Handshakes {
    full: AtomicUsize,
    resumed: AtomicUsize,
}

impl Handshakes {
    /// Full handshakes so far.
    pub fn full(&self) -> usize {
        self.full.load(Ordering::SeqCst)
    }

    /// Resumed handshakes so far.
    pub fn resumed(&self) -> usize {
        self.resumed.load(Ordering::SeqCst)
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

/// A TLS front for moto that sends `tickets` TLS 1.3 session tickets after each handshake
/// (rustls's default is 2), and counts its handshakes.
pub fn tls_front_with(tickets: usize) -> (String, String, Arc<Handshakes>) {
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
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
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
    let mut config = config;
    config.send_tls13_tickets = tickets;
    let config = Arc::new(config);
    let handshakes = Arc::new(Handshakes::default());
    let counts = handshakes.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = moto().port;
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let (config, counts) = (config.clone(), counts.clone());
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
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
    (format!("https://localhost:{port}"), ca.pem(), handshakes)
}
