//! The roots the HTTPS client trusts, read and turned into trust anchors only as far as a
//! handshake needs.
//!
//! A system CA bundle holds about 140 certificates, and making a trust anchor of each (an X.509
//! parse and copies) was most of reading it at every HTTPS start (BENCHMARKS.md), for a chain
//! that one or two of them anchor. [`Roots`] reads the certificates (DER) once, when
//! [`Roots::load`] is called (while the first handshake waits for the server's answer) or when
//! a chain is first verified, and then makes anchors of only those that can anchor the
//! chain: the ones whose subject name is the issuer name of a certificate of the chain (webpki
//! uses an anchor only when its subject equals the issuer name of the certificate it signed, byte
//! for byte). The verification itself is rustls's `WebPkiServerVerifier` over those anchors and
//! the always-trusted ones (`AWS_CA_BUNDLE`, `SSL_CERT_FILE`, parsed at start), so a chain is
//! trusted exactly when it would be with every root made an anchor. A chain that an
//! always-trusted anchor can anchor is first verified against those alone, without the system's
//! roots: trusted there, it is trusted with more anchors too.

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tracing::debug;

/// The roots of one start: certificates to read and make anchors of on demand, and anchors
/// always trusted.
#[derive(Debug)]
pub struct Roots {
    /// Reads the system's (or the built-in) root certificates.
    read: fn() -> Vec<CertificateDer<'static>>,
    /// Those certificates, read once, not parsed.
    certs: OnceLock<Vec<CertificateDer<'static>>>,
    /// Anchors trusted for every chain.
    always: Vec<TrustAnchor<'static>>,
    /// The verifier over `always` alone, made when a chain names one of them as its issuer.
    always_only: OnceLock<Option<Arc<WebPkiServerVerifier>>>,
    provider: Arc<CryptoProvider>,
    /// The last verifier made, with the indices in `certs` of its anchors.
    made: Mutex<Option<(Vec<usize>, Arc<WebPkiServerVerifier>)>>,
}

impl Roots {
    /// Roots of the certificates `read` reads (when a handshake first needs them, or at
    /// [`Roots::load`]; made anchors of when a chain needs them) and `always`, verifying
    /// signatures with `provider`'s algorithms.
    pub fn new(
        read: fn() -> Vec<CertificateDer<'static>>,
        always: Vec<TrustAnchor<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            read,
            certs: OnceLock::new(),
            always,
            always_only: OnceLock::new(),
            provider,
            made: Mutex::new(None),
        }
    }

    /// Reads the root certificates now, unless they are read or there are always-trusted
    /// anchors: a chain one of those anchors needs no other root, so with `AWS_CA_BUNDLE` or
    /// `SSL_CERT_FILE` set the roots are read only when a chain needs them.
    pub fn load(&self) {
        if self.always.is_empty() {
            self.certs();
        }
    }

    fn certs(&self) -> &[CertificateDer<'static>] {
        self.certs.get_or_init(self.read)
    }

    /// The indices in `certs` of the certificates that can anchor a path through a chain whose
    /// certificates name `issuers` (or, for a certificate whose subject [`subject`] cannot find,
    /// that contain one).
    fn candidates(&self, issuers: &[Vec<u8>]) -> Vec<usize> {
        let certs = self.certs();
        (0..certs.len())
            .filter(|&i| match subject(&certs[i]) {
                Some(subject) => issuers.iter().any(|issuer| issuer == subject),
                None => issuers
                    .iter()
                    .any(|issuer| memchr::memmem::find(&certs[i], issuer).is_some()),
            })
            .collect()
    }

    /// The verifier over the always-trusted anchors alone, when one of them is named by
    /// `issuers`.
    fn always_only(&self, issuers: &[Vec<u8>]) -> Option<Arc<WebPkiServerVerifier>> {
        let named = self
            .always
            .iter()
            .any(|a| issuers.iter().any(|issuer| issuer == a.subject.as_ref()));
        if !named {
            return None;
        }
        self.always_only
            .get_or_init(|| {
                self.webpki(RootCertStore {
                    roots: self.always.clone(),
                })
                .ok()
            })
            .clone()
    }

    /// rustls's webpki verifier over the anchors of `store`.
    fn webpki(&self, store: RootCertStore) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        WebPkiServerVerifier::builder_with_provider(Arc::new(store), self.provider.clone())
            .build()
            // No anchor at all: what webpki says of a chain no anchor signed.
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))
    }

    /// The verifier for a chain whose certificates name `issuers`: webpki over the anchors the
    /// chain can use and the always-trusted ones; the last one made is reused while the
    /// candidates are the same (every connection of a start to the same service).
    fn verifier(&self, issuers: &[Vec<u8>]) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        let wanted = self.candidates(issuers);
        let mut made = self.made.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((have, verifier)) = made.as_ref()
            && *have == wanted
        {
            return Ok(verifier.clone());
        }
        let certs = self.certs();
        let mut store = RootCertStore::empty();
        let (n, bad) = store.add_parsable_certificates(wanted.iter().map(|&i| certs[i].clone()));
        debug!(
            "{n} of {} roots made trust anchors for a chain ({bad} could not be)",
            certs.len()
        );
        store.roots.extend(self.always.iter().cloned());
        let verifier = self.webpki(store)?;
        *made = Some((wanted, verifier.clone()));
        Ok(verifier)
    }
}

#[cfg(test)]
impl Roots {
    /// Roots whose certificates are `certs`, already read.
    fn with_certs(
        certs: Vec<CertificateDer<'static>>,
        always: Vec<TrustAnchor<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        let roots = Self::new(
            || unreachable!("the certificates are read"),
            always,
            provider,
        );
        roots.certs.set(certs).unwrap();
        roots
    }
}

/// The issuer names of the certificates of `chain`, each once. A certificate that does not parse
/// cannot be in a path, so its issuer is not looked for.
fn issuers(chain: &[&CertificateDer<'_>]) -> Vec<Vec<u8>> {
    let mut issuers: Vec<Vec<u8>> = chain
        .iter()
        .filter_map(|c| webpki::EndEntityCert::try_from(*c).ok())
        .map(|c| c.issuer().to_vec())
        .filter(|issuer| !issuer.is_empty())
        .collect();
    // A chain may repeat an issuer (or a server pad it): each name is looked for once.
    issuers.sort_unstable();
    issuers.dedup();
    issuers
}

/// The subject name of a certificate (the contents of its `Name`, without the SEQUENCE header,
/// as webpki compares names), found by stepping over the DER headers before it in the
/// `TBSCertificate`: the optional version, the serial number, the signature algorithm, the issuer
/// and the validity (RFC 5280, 4.1). `None` when the headers are not what X.509 puts there.
/// Only a guide to which roots to parse: webpki parses the anchors and decides.
fn subject(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, mut tbs, _) = tlv(cert)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = tlv(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = tlv(tbs)?.2;
    }
    match tlv(tbs)? {
        (0x30, subject, _) => Some(subject),
        _ => None,
    }
}

/// The DER element at the start of `der`: its tag, its contents and what follows it (lengths in
/// up to two bytes, as every certificate's headers fit).
fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, der) = der.split_first()?;
    let (&first, der) = der.split_first()?;
    let (len, der) = match first {
        0..=0x7f => (usize::from(first), der),
        0x81 => {
            let (&n, der) = der.split_first()?;
            (usize::from(n), der)
        }
        0x82 => {
            let (n, der) = der.split_at_checked(2)?;
            (usize::from(u16::from_be_bytes([n[0], n[1]])), der)
        }
        _ => return None,
    };
    let (contents, rest) = der.split_at_checked(len)?;
    Some((tag, contents, rest))
}

impl ServerCertVerifier for Roots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<&CertificateDer<'_>> =
            std::iter::once(end_entity).chain(intermediates).collect();
        let issuers = issuers(&chain);
        // Trusted by the always-trusted anchors alone, the chain is trusted with the system's
        // roots too; otherwise (also on any error) the verdict is the one over all of them.
        if let Some(verifier) = self.always_only(&issuers)
            && let Ok(verified) = verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            )
        {
            return Ok(verified);
        }
        self.verifier(&issuers)?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    /// A CA named `name`.
    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }

    /// A leaf for `kms.test` from an intermediate of `root`: (leaf, intermediate).
    fn chain(
        root: &CertifiedIssuer<'static, KeyPair>,
    ) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "an intermediate");
        let inter = CertifiedIssuer::signed_by(params, KeyPair::generate().unwrap(), root).unwrap();
        let leaf = CertificateParams::new(vec!["kms.test".to_owned()])
            .unwrap()
            .signed_by(&KeyPair::generate().unwrap(), &inter)
            .unwrap();
        (leaf.der().clone(), inter.der().clone())
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    /// The trust anchor made of `ca`'s certificate.
    fn anchor_of(ca: &CertifiedIssuer<'static, KeyPair>) -> TrustAnchor<'static> {
        webpki::anchor_from_trusted_cert(ca.der())
            .unwrap()
            .to_owned()
    }

    fn verify(
        roots: &Roots,
        leaf: &CertificateDer<'_>,
        inter: &CertificateDer<'_>,
    ) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("kms.test").unwrap();
        roots
            .verify_server_cert(
                leaf,
                std::slice::from_ref(inter),
                &name,
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn a_chain_is_trusted_through_its_root_among_many_and_only_its_root_is_parsed() {
        let root = ca("kms-env test root");
        let (leaf, inter) = chain(&root);
        let mut certs: Vec<_> = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        certs.insert(certs.len() / 2, root.der().clone());
        let roots = Roots::with_certs(certs, vec![], provider());
        assert_eq!(verify(&roots, &leaf, &inter), Ok(()));
        let made = roots.made.lock().unwrap();
        assert_eq!(
            made.as_ref().unwrap().0.len(),
            1,
            "one candidate, not all roots"
        );
    }

    #[test]
    fn the_subject_found_is_the_one_webpki_makes_the_anchors_name() {
        let made = ca("kms-env test root");
        let certs = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .chain([made.der()]);
        let mut n = 0;
        for cert in certs {
            let anchor = webpki::anchor_from_trusted_cert(cert).unwrap();
            assert_eq!(subject(cert), Some(anchor.subject.as_ref()));
            n += 1;
        }
        assert!(n > 100);
        assert_eq!(subject(b"\x30\x03\x02\x01\x01"), None);
        assert_eq!(subject(&made.der()[..40]), None, "cut short");
    }

    #[test]
    fn a_candidate_that_does_not_parse_is_left_out() {
        let root = ca("kms-env test root");
        let (leaf, inter) = chain(&root);
        let issuer = webpki::EndEntityCert::try_from(&inter)
            .unwrap()
            .issuer()
            .to_vec();
        let garbage = CertificateDer::from([b"\x30\x03".as_slice(), &issuer].concat());
        let roots = Roots::with_certs(vec![garbage, root.der().clone()], vec![], provider());
        assert_eq!(verify(&roots, &leaf, &inter), Ok(()));
        assert_eq!(roots.made.lock().unwrap().as_ref().unwrap().0, [0, 1]);
    }

    #[test]
    fn a_chain_of_a_root_not_held_is_refused_as_of_an_unknown_issuer() {
        let (leaf, inter) = chain(&ca("kms-env test root"));
        let certs = webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec();
        let other = ca("kms-env test root");
        let unknown = Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        for roots in [
            Roots::with_certs(certs.clone(), vec![], provider()),
            Roots::with_certs(vec![], vec![], provider()),
            // The same name, another key: a candidate, refused by the signature check.
            Roots::with_certs(vec![other.der().clone()], vec![], provider()),
        ] {
            assert!(verify(&roots, &leaf, &inter).is_err());
        }
        assert_eq!(
            verify(&Roots::with_certs(certs, vec![], provider()), &leaf, &inter),
            unknown
        );
    }

    #[test]
    fn always_trusted_anchors_and_the_wrong_name_are_webpkis_verdicts() {
        let root = ca("kms-env test root");
        let (leaf, inter) = chain(&root);
        let anchor = anchor_of(&root);
        let roots = Roots::with_certs(vec![], vec![anchor], provider());
        assert_eq!(verify(&roots, &leaf, &inter), Ok(()));
        let name = ServerName::try_from("sts.test").unwrap();
        let wrong = roots.verify_server_cert(&leaf, &[inter], &name, &[], UnixTime::now());
        assert!(
            matches!(
                wrong,
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                ))
            ),
            "{wrong:?}"
        );
    }

    #[test]
    fn a_chain_an_always_trusted_anchor_anchors_is_verified_without_reading_the_roots() {
        let root = ca("kms-env test root");
        let (leaf, inter) = chain(&root);
        let anchor = anchor_of(&root);
        let roots = Roots::new(|| panic!("the roots were read"), vec![anchor], provider());
        roots.load();
        assert_eq!(verify(&roots, &leaf, &inter), Ok(()));
        assert!(roots.certs.get().is_none());
    }

    #[test]
    fn a_chain_the_always_trusted_anchors_refuse_is_verified_against_the_roots_too() {
        let root = ca("kms-env test root");
        let (leaf, inter) = chain(&root);
        // The same name as the chain's root, another key: named, but it does not verify.
        let impostor = ca("kms-env test root");
        let anchor = anchor_of(&impostor);
        let with_root =
            Roots::with_certs(vec![root.der().clone()], vec![anchor.clone()], provider());
        assert_eq!(verify(&with_root, &leaf, &inter), Ok(()));
        let without = Roots::with_certs(vec![], vec![anchor], provider());
        assert!(verify(&without, &leaf, &inter).is_err());
    }

    #[test]
    fn the_roots_are_read_once_by_load_or_by_the_first_chain_to_verify() {
        fn read() -> Vec<CertificateDer<'static>> {
            webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()
        }
        let (leaf, inter) = chain(&ca("kms-env test root"));
        let roots = Roots::new(read, vec![], provider());
        assert!(roots.certs.get().is_none());
        assert!(verify(&roots, &leaf, &inter).is_err());
        assert_eq!(roots.certs.get().map(Vec::len), Some(read().len()));
        let loaded = Roots::new(read, vec![], provider());
        loaded.load();
        assert_eq!(loaded.certs.get().map(Vec::len), Some(read().len()));
    }
}
