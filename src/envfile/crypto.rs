//! The original kms-env's value cipher (README "`init`, `add`, `show`"; ARCHITECTURE.md): AES-256-CTR under the 32-byte data key.
//!
//! Current values are `<hex iv>$<hex ciphertext>`, the IV being the initial 128-bit big-endian
//! counter block. Legacy values (no `$`) came from Node's `crypto.createCipher`, which derives
//! key and IV with OpenSSL's `EVP_BytesToKey` (MD5, one round, no salt) from the data key. There
//! is no MAC in either format, so a wrong key yields garbage rather than an error; what can be
//! checked (hex, IV length, UTF-8 as the original required) is checked. We only ever write the
//! current format.

use crate::error::{Class, Reason};
use crate::secret::Secret;
use aes::Aes256;
use ctr::Ctr128BE;
use ctr::cipher::{KeyIvInit, StreamCipher};
use md5::{Digest, Md5};
use zeroize::Zeroizing;

/// Length of a data key (`GenerateDataKey` with `AES_256`).
pub const DATA_KEY_LEN: usize = 32;
const IV_LEN: usize = 16;

/// A decrypted data key.
pub type DataKey = Zeroizing<[u8; DATA_KEY_LEN]>;

/// Checks and copies the plaintext of a data key.
pub fn data_key(plaintext: &[u8]) -> Result<DataKey, Reason> {
    let key: [u8; DATA_KEY_LEN] = plaintext.try_into().map_err(|_| {
        Reason::new(
            Class::BadCiphertext,
            "KMS_DATA_KEY does not decrypt to a 32-byte AES-256 key",
        )
    })?;
    Ok(Zeroizing::new(key))
}

fn bad(detail: &str) -> Reason {
    Reason::new(Class::BadCiphertext, detail)
}

fn keystream(key: &[u8; 32], iv: &[u8; IV_LEN], buf: &mut [u8]) {
    let mut cipher = Ctr128BE::<Aes256>::new(key.into(), iv.into());
    cipher.apply_keystream(buf);
}

/// `EVP_BytesToKey(aes-256-ctr, md5, no salt, 1 round)`: key = D1‖D2, IV = D3.
fn evp_bytes_to_key(password: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; IV_LEN]) {
    let d1 = Md5::digest(password);
    let d2 = Md5::new()
        .chain_update(d1)
        .chain_update(password)
        .finalize();
    let d3 = Md5::new()
        .chain_update(d2)
        .chain_update(password)
        .finalize();
    let mut key = Zeroizing::new([0u8; 32]);
    key[..16].copy_from_slice(&d1);
    key[16..].copy_from_slice(&d2);
    (key, d3.into())
}

/// Decrypts the part after `secure:` in either format.
pub fn decrypt(value: &str, key: &DataKey) -> Result<Secret, Reason> {
    let (cipher_key, iv, hex_ct) = match value.split_once('$') {
        Some((iv_hex, ct)) => {
            let iv: [u8; IV_LEN] = hex::decode(iv_hex)
                .ok()
                .and_then(|v| v.try_into().ok())
                .ok_or_else(|| bad("the IV before '$' is not 32 hex digits"))?;
            (Zeroizing::new(**key), iv, ct)
        }
        None => {
            let (k, iv) = evp_bytes_to_key(&key[..]);
            (k, iv, value)
        }
    };
    let mut buf = hex::decode(hex_ct).map_err(|_| bad("the secure: value is not hex"))?;
    keystream(&cipher_key, &iv, &mut buf);
    let secret = Secret::new(buf);
    // The original wrote UTF-8 strings only; anything else means a wrong key or corruption.
    if std::str::from_utf8(secret.expose()).is_err() {
        return Err(bad(
            "the secure: value does not decrypt to UTF-8 text (wrong KMS_DATA_KEY or corrupted value)",
        ));
    }
    Ok(secret)
}

/// Encrypts `plaintext` in the current format with `iv`.
pub fn encrypt_with_iv(plaintext: &[u8], key: &DataKey, iv: [u8; IV_LEN]) -> String {
    let mut buf = Zeroizing::new(plaintext.to_vec());
    keystream(key, &iv, &mut buf);
    format!("{}${}", hex::encode(iv), hex::encode(&buf[..]))
}

/// Encrypts `plaintext` in the current format with a fresh random IV.
pub fn encrypt(plaintext: &[u8], key: &DataKey) -> Result<String, Reason> {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv)
        .map_err(|e| Reason::new(Class::Config, format!("no randomness for the IV: {e}")))?;
    Ok(encrypt_with_iv(plaintext, key, iv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DataKey {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        Zeroizing::new(k)
    }

    const PLAIN: &[u8] = b"p@ss word='\"$x\n";

    #[test]
    fn design_vector_legacy() {
        let s = decrypt("19fcf087b45dcaf7f9f7fe34bd8378", &key()).unwrap();
        assert_eq!(s.expose(), PLAIN);
    }

    #[test]
    fn design_vector_current() {
        let v = "000102030405060708090a0b0c0d0e0f$2a2e7724288c1ee49413721f26bbac";
        assert_eq!(decrypt(v, &key()).unwrap().expose(), PLAIN);
        let mut iv = [0u8; 16];
        for (i, b) in iv.iter_mut().enumerate() {
            *b = i as u8;
        }
        assert_eq!(encrypt_with_iv(PLAIN, &key(), iv), v);
    }

    #[test]
    fn round_trip_with_random_iv_is_lowercase_hex_and_unique() {
        let a = encrypt("ünï $x".as_bytes(), &key()).unwrap();
        let b = encrypt("ünï $x".as_bytes(), &key()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a, a.to_lowercase());
        assert_eq!(decrypt(&a, &key()).unwrap().expose(), "ünï $x".as_bytes());
    }

    #[test]
    fn malformed_values() {
        for v in ["zz", "0011$zz", "$00", "00$00", "0001020304050607$00"] {
            assert_eq!(
                decrypt(v, &key()).unwrap_err().class,
                Class::BadCiphertext,
                "{v}"
            );
        }
        assert!(data_key(&[0; 31]).is_err());
        assert!(data_key(&[0; 32]).is_ok());
    }
}
