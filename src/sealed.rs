//! kms-env's own self-describing value format, `kms:v1:<base64>` (pure).
//!
//! The base64 (standard or URL-safe) decodes to:
//!
//! ```text
//! byte 0      version, 1
//! byte 1      flags: bit 0 BOUND (the variable name is in the KMS encryption context and, for
//!             envelopes, in the associated data); bit 1 ENVELOPE
//! direct:     bytes 2..    the KMS ciphertext blob (plaintext up to KMS's 4096 bytes)
//! envelope:   bytes 2..4   L, big-endian length of the encrypted data key
//!             bytes 4..4+L the data key blob from KMS GenerateDataKey (AES_256)
//!             next 12      the AES-256-GCM nonce
//!             rest         the AES-256-GCM ciphertext and its 16-byte tag
//! ```
//!
//! The envelope's associated data is `kms-env:v1`, the flags byte and, when bound, the variable
//! name, so a value cannot be moved to another variable or have its flags changed undetected.
//! A bound value's KMS encryption context holds `kms-env:name = <NAME>` besides the user's own.

use crate::error::{Class, Reason};
use crate::secret::Secret;
use crate::value::Context;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

/// The text prefix after `kms:`.
pub const V1_TAG: &str = "v1:";
/// Encryption-context key that binds a value to its variable name.
pub const NAME_CONTEXT_KEY: &str = "kms-env:name";
/// The largest plaintext KMS `Encrypt` takes; larger values use an envelope.
pub const KMS_MAX_PLAINTEXT: usize = 4096;

const VERSION: u8 = 1;
const BOUND: u8 = 0b01;
const ENVELOPE: u8 = 0b10;
const NONCE_LEN: usize = 12;
const AAD_PREFIX: &[u8] = b"kms-env:v1";

/// A decoded `kms:v1:` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Whether the value is bound to its variable name.
    pub bound: bool,
    /// What KMS decrypts: the value itself, or the data key of an envelope.
    pub blob: Vec<u8>,
    /// For envelopes: the nonce and the AES-GCM ciphertext with its tag.
    pub envelope: Option<(Vec<u8>, Vec<u8>)>,
}

fn malformed(detail: &str) -> Reason {
    Reason::new(Class::Malformed, detail)
}

impl Sealed {
    /// Parses the decoded bytes of a `kms:v1:` value.
    pub fn decode(bytes: &[u8]) -> Result<Sealed, Reason> {
        let [version, flags, rest @ ..] = bytes else {
            return Err(malformed("the kms:v1: value is too short"));
        };
        if *version != VERSION || flags & !(BOUND | ENVELOPE) != 0 {
            return Err(malformed(
                "the kms:v1: value has an unknown version or flags (made by a newer kms-env?)",
            ));
        }
        let bound = flags & BOUND != 0;
        if flags & ENVELOPE == 0 {
            if rest.is_empty() {
                return Err(malformed("the kms:v1: value holds no ciphertext"));
            }
            return Ok(Sealed {
                bound,
                blob: rest.to_vec(),
                envelope: None,
            });
        }
        let short = || malformed("the kms:v1: envelope is truncated");
        let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(short)?;
        let len = usize::from(u16::from_be_bytes(*len));
        if len == 0 || rest.len() < len + NONCE_LEN + 16 {
            return Err(short());
        }
        let (blob, rest) = rest.split_at(len);
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        Ok(Sealed {
            bound,
            blob: blob.to_vec(),
            envelope: Some((nonce.to_vec(), ct.to_vec())),
        })
    }

    fn flags(&self) -> u8 {
        (u8::from(self.bound) * BOUND) | (u8::from(self.envelope.is_some()) * ENVELOPE)
    }

    /// The binary form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION, self.flags()];
        match &self.envelope {
            None => out.extend_from_slice(&self.blob),
            Some((nonce, ct)) => {
                let len = u16::try_from(self.blob.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&self.blob);
                out.extend_from_slice(nonce);
                out.extend_from_slice(ct);
            }
        }
        out
    }

    /// The KMS encryption context for this value in variable `name`.
    pub fn context(&self, user: &Context, name: &str) -> Context {
        context_for(user, self.bound.then_some(name))
    }

    /// Opens an envelope with the decrypted data key; a direct value is returned as is.
    pub fn open(&self, kms_plaintext: Secret, name: &str) -> Result<Secret, Reason> {
        let Some((nonce, ct)) = &self.envelope else {
            return Ok(kms_plaintext);
        };
        let cipher = Aes256Gcm::new_from_slice(kms_plaintext.expose()).map_err(|_| {
            Reason::new(
                Class::BadCiphertext,
                "the envelope's data key is not 32 bytes",
            )
        })?;
        let aad = aad(self.flags(), self.bound.then_some(name));
        cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map(Secret::new)
            .map_err(|_| {
                Reason::new(
                    Class::BadCiphertext,
                    "the envelope failed authentication (corrupted, or moved from another variable)",
                )
            })
    }
}

/// The user's context plus, for a bound value, the variable name.
pub fn context_for(user: &Context, bound_name: Option<&str>) -> Context {
    let mut context = user.clone();
    if let Some(name) = bound_name {
        context.insert(NAME_CONTEXT_KEY.to_owned(), name.to_owned());
    }
    context
}

fn aad(flags: u8, bound_name: Option<&str>) -> Vec<u8> {
    let mut aad = AAD_PREFIX.to_vec();
    aad.push(flags);
    if let Some(name) = bound_name {
        aad.extend_from_slice(name.as_bytes());
    }
    aad
}

/// Seals `plaintext` with a 32-byte data key (from `GenerateDataKey`) whose encrypted form is
/// `data_key_blob`, using `nonce`.
pub fn seal(
    plaintext: &[u8],
    data_key: &Secret,
    data_key_blob: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    bound_name: Option<&str>,
) -> Result<Sealed, Reason> {
    let cipher = Aes256Gcm::new_from_slice(data_key.expose()).map_err(|_| {
        Reason::new(
            Class::ServiceError,
            "KMS returned a data key that is not 32 bytes",
        )
    })?;
    let flags = ENVELOPE | (u8::from(bound_name.is_some()) * BOUND);
    let aad = aad(flags, bound_name);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .map_err(|_| Reason::new(Class::Malformed, "the value is too large to seal"))?;
    if data_key_blob.len() > usize::from(u16::MAX) {
        return Err(Reason::new(
            Class::ServiceError,
            "KMS returned an oversized data key",
        ));
    }
    Ok(Sealed {
        bound: bound_name.is_some(),
        blob: data_key_blob,
        envelope: Some((nonce.to_vec(), ct)),
    })
}

/// A fresh random nonce.
pub fn nonce() -> Result<[u8; NONCE_LEN], Reason> {
    let mut n = [0u8; NONCE_LEN];
    getrandom::fill(&mut n)
        .map_err(|e| Reason::new(Class::Config, format!("no randomness for the nonce: {e}")))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new(vec![7u8; 32])
    }

    #[test]
    fn direct_round_trip() {
        let s = Sealed {
            bound: true,
            blob: vec![1, 2, 3],
            envelope: None,
        };
        assert_eq!(s.encode(), vec![1, 1, 1, 2, 3]);
        assert_eq!(Sealed::decode(&s.encode()).unwrap(), s);
        let ctx = s.context(&Context::from([("app".into(), "web".into())]), "DB");
        assert_eq!(ctx.get("kms-env:name").map(String::as_str), Some("DB"));
        assert_eq!(ctx.get("app").map(String::as_str), Some("web"));
    }

    #[test]
    fn envelope_round_trip_and_binding() {
        let plain = vec![b'x'; 20 * 1024];
        let s = seal(&plain, &key(), vec![9; 184], [3; 12], Some("CERT")).unwrap();
        let decoded = Sealed::decode(&s.encode()).unwrap();
        assert_eq!(decoded, s);
        assert_eq!(decoded.open(key(), "CERT").unwrap().expose(), &plain[..]);
        // Another variable name: authentication fails.
        assert_eq!(
            decoded.open(key(), "OTHER").unwrap_err().class,
            Class::BadCiphertext
        );
        // A flipped flag (unbinding) fails too.
        let mut bytes = s.encode();
        bytes[1] &= !BOUND;
        let unbound = Sealed::decode(&bytes).unwrap();
        assert!(unbound.open(key(), "CERT").is_err());
    }

    #[test]
    fn unbound_envelope_ignores_the_name() {
        let s = seal(b"pem", &key(), vec![9; 10], [0; 12], None).unwrap();
        assert_eq!(s.open(key(), "ANY").unwrap().expose(), b"pem");
        assert!(s.context(&Context::new(), "ANY").is_empty());
    }

    #[test]
    fn malformed_inputs() {
        for bad in [
            &[][..],
            &[1],
            &[2, 0, 1],
            &[1, 4, 1],
            &[1, 0],
            &[1, 2, 0, 5, 1, 2],
            &[1, 2, 0, 0],
        ] {
            assert_eq!(
                Sealed::decode(bad).unwrap_err().class,
                Class::Malformed,
                "{bad:?}"
            );
        }
    }
}
