//! Pure classification of one environment value into a [`Reference`] (DESIGN §2).
//!
//! `kms:<base64>` is a KMS ciphertext blob (standard or URL-safe alphabet, padding optional);
//! `kms:v1:<base64>` is kms-env's self-describing format (bound to a name, or an envelope for
//! values over KMS's 4 KiB, see `sealed`);
//! `ssm:<name>`, `ssm://<name>`, an optional `:<version>` or `:<label>` selector, and
//! `ssm:arn:<partition>:ssm:<region>:<account>:parameter/<name>` name a Parameter Store
//! parameter. `secure:` is the original kms-env's envelope value when the environment holds a
//! `KMS_DATA_KEY`, and a direct KMS ciphertext in base64 (mapbox's convention) otherwise. Every
//! other value is plain and passes through untouched. A value with a reference prefix that does
//! not parse is an error; its message never repeats the value.

use crate::error::{Class, Reason};
use crate::sealed::{Sealed, V1_TAG};
use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// Prefix of a KMS ciphertext value.
pub const KMS_PREFIX: &str = "kms:";
/// Prefix of a Parameter Store reference.
pub const SSM_PREFIX: &str = "ssm:";
/// Prefix of the original kms-env's values (and of mapbox's direct ciphertexts).
pub const SECURE_PREFIX: &str = "secure:";

/// Longest parameter name SSM accepts (a full ARN may be longer by its prefix).
const MAX_NAME_LEN: usize = 2048;
/// Longest selector (a label is at most 100 characters).
const MAX_SELECTOR_LEN: usize = 100;

/// What a value refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A KMS ciphertext blob, already base64-decoded.
    Kms(Vec<u8>),
    /// A `kms:v1:` value.
    Sealed(Sealed),
    /// A Parameter Store parameter.
    Ssm(SsmRef),
    /// An original kms-env value to decrypt with the data key: `<hex iv>$<hex>` or legacy `<hex>`.
    Envelope(String),
}

impl Reference {
    /// Short description for messages, e.g. `kms` or `ssm /prod/db:3`. Never a secret.
    pub fn kind(&self) -> String {
        match self {
            Reference::Kms(_) => "kms".to_owned(),
            Reference::Sealed(s) => match (s.bound, s.envelope.is_some()) {
                (false, false) => "kms v1",
                (true, false) => "kms v1, bound",
                (false, true) => "kms v1 envelope",
                (true, true) => "kms v1 envelope, bound",
            }
            .to_owned(),
            Reference::Ssm(r) => format!("ssm {}", r.request()),
            Reference::Envelope(_) => "secure, KMS_DATA_KEY".to_owned(),
        }
    }
}

/// A parameter reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SsmRef {
    /// The parameter's name as SSM knows it, e.g. `/prod/db` or `prod.db`.
    pub name: String,
    /// The full ARN when the reference was given by ARN.
    pub arn: Option<String>,
    /// The region to call: the ARN's region, otherwise the configured one (`None`).
    pub region: Option<String>,
    /// A version number or label, without the colon.
    pub selector: Option<String>,
}

impl SsmRef {
    /// The string sent to SSM: the name or ARN, with `:selector` when pinned.
    pub fn request(&self) -> String {
        let base = self.arn.as_deref().unwrap_or(&self.name);
        match &self.selector {
            Some(sel) => format!("{base}:{sel}"),
            None => base.to_owned(),
        }
    }
}

impl fmt::Display for SsmRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.request())
    }
}

/// Whether a value starts with one of the reference prefixes (`kms:`, `ssm:`, `secure:`).
pub fn has_reference_prefix(value: &[u8]) -> bool {
    [KMS_PREFIX, SSM_PREFIX, SECURE_PREFIX]
        .iter()
        .any(|p| value.starts_with(p.as_bytes()))
}

/// Classifies one value. `Ok(None)` means a plain value that passes through. `data_key` says
/// whether the environment holds a `KMS_DATA_KEY`, which decides what `secure:` means.
pub fn classify(value: &OsStr, data_key: bool) -> Result<Option<Reference>, Reason> {
    let bytes = value.as_bytes();
    if let Some(body) = bytes.strip_prefix(KMS_PREFIX.as_bytes()) {
        if let Some(v1) = body.strip_prefix(V1_TAG.as_bytes()) {
            let sealed = Sealed::decode(&decode_blob(v1)?)?;
            return Ok(Some(Reference::Sealed(sealed)));
        }
        return decode_blob(body).map(|b| Some(Reference::Kms(b)));
    }
    if let Some(body) = bytes.strip_prefix(SECURE_PREFIX.as_bytes()) {
        if !data_key {
            return decode_blob(body).map(|b| Some(Reference::Kms(b)));
        }
        let envelope = std::str::from_utf8(body)
            .ok()
            .filter(|b| is_envelope(b))
            .ok_or_else(|| {
                malformed("a secure: value must be <hex iv>$<hex ciphertext> or <hex ciphertext>")
            })?;
        return Ok(Some(Reference::Envelope(envelope.to_owned())));
    }
    if let Some(body) = bytes.strip_prefix(SSM_PREFIX.as_bytes()) {
        let body = std::str::from_utf8(body)
            .map_err(|_| malformed("an ssm: reference must be valid UTF-8"))?;
        return parse_ssm(body).map(|r| Some(Reference::Ssm(r)));
    }
    Ok(None)
}

/// `<hex>$<hex>` or `<hex>`, the hex parts of even length. The ciphertext may be empty: the
/// original wrote `secure:` alone for an empty value in the legacy format.
fn is_envelope(body: &str) -> bool {
    let hex = |s: &str| s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit());
    match body.split_once('$') {
        Some((iv, ct)) => !iv.is_empty() && hex(iv) && hex(ct),
        None => hex(body),
    }
}

fn malformed(detail: &str) -> Reason {
    Reason::new(Class::Malformed, detail)
}

/// Decodes a KMS ciphertext blob given in standard or URL-safe base64, padded or not.
pub fn decode_blob(body: &[u8]) -> Result<Vec<u8>, Reason> {
    const INDIFFERENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);

    if body.is_empty() {
        return Err(malformed("the ciphertext is empty"));
    }
    if body.iter().any(u8::is_ascii_whitespace) {
        return Err(malformed(
            "the ciphertext contains whitespace (a stray newline?)",
        ));
    }
    STANDARD
        .decode(body)
        .or_else(|_| URL_SAFE.decode(body))
        .map_err(|_| malformed("the ciphertext is not valid base64"))
}

fn parse_ssm(body: &str) -> Result<SsmRef, Reason> {
    let body = body.strip_prefix("//").unwrap_or(body);
    if body.is_empty() {
        return Err(malformed("the ssm: reference names no parameter"));
    }
    if body.starts_with("arn:") {
        return parse_arn(body);
    }
    let (name, selector) = split_selector(body)?;
    check_name(name)?;
    Ok(SsmRef {
        name: name.to_owned(),
        arn: None,
        region: None,
        selector,
    })
}

/// `arn:<partition>:ssm:<region>:<account>:parameter/<name>[:selector]`
fn parse_arn(body: &str) -> Result<SsmRef, Reason> {
    const SHAPE: &str =
        "an ssm: ARN must look like arn:aws:ssm:<region>:<account>:parameter/<name>";
    let parts: Vec<&str> = body.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return Err(malformed(SHAPE));
    };
    let Some(path) = resource.strip_prefix("parameter/") else {
        return Err(malformed(SHAPE));
    };
    let lower_dash = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if service != "ssm"
        || !lower_dash(partition)
        || !lower_dash(region)
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed(SHAPE));
    }
    let (path, selector) = split_selector(path)?;
    // The ARN of `/prod/db` is `…:parameter/prod/db`; that of `prod.db` is `…:parameter/prod.db`.
    let name = if path.contains('/') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    check_name(&name)?;
    Ok(SsmRef {
        arn: Some(format!(
            "arn:{partition}:ssm:{region}:{account}:parameter/{path}"
        )),
        name,
        region: Some(region.to_owned()),
        selector,
    })
}

fn split_selector(s: &str) -> Result<(&str, Option<String>), Reason> {
    let Some((name, selector)) = s.split_once(':') else {
        return Ok((s, None));
    };
    if selector.is_empty()
        || selector.len() > MAX_SELECTOR_LEN
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(malformed(
            "the ssm: selector after ':' must be a version number or a label of letters, digits, '_', '.', '-'",
        ));
    }
    Ok((name, Some(selector.to_owned())))
}

fn check_name(name: &str) -> Result<(), Reason> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(malformed(
            "the parameter name must be 1 to 2048 characters long",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err(malformed(
            "the parameter name may hold only letters, digits, '_', '.', '-' and '/'",
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(malformed(
            "a parameter path must start with '/': write ssm:///prod/db or ssm:/prod/db",
        ));
    }
    if name.contains("//") || (name.len() > 1 && name.ends_with('/')) {
        return Err(malformed("the parameter path has an empty segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssm(name: &str, selector: Option<&str>) -> Option<Reference> {
        Some(Reference::Ssm(SsmRef {
            name: name.into(),
            arn: None,
            region: None,
            selector: selector.map(Into::into),
        }))
    }

    fn c(v: &str) -> Result<Option<Reference>, Reason> {
        classify(OsStr::new(v), false)
    }

    fn class_of(v: &str) -> Class {
        c(v).unwrap_err().class
    }

    #[test]
    fn plain_values_pass() {
        for v in [
            "",
            "info",
            "kms",
            "KMS:AAAA",
            "ssm",
            "SSM:/x",
            "arn:aws:ssm:us-east-1:123456789012:parameter/x",
            "SECURE:abc",
            " kms:AAAA",
            "https://kms:443",
        ] {
            assert_eq!(c(v).unwrap(), None, "{v}");
        }
    }

    #[test]
    fn kms_standard_and_url_safe_padded_or_not() {
        let bytes = vec![0xfb, 0xff, 0xbf, 0x01];
        for v in ["kms:+/+/AQ==", "kms:+/+/AQ", "kms:-_-_AQ==", "kms:-_-_AQ"] {
            assert_eq!(c(v).unwrap(), Some(Reference::Kms(bytes.clone())), "{v}");
        }
    }

    #[test]
    fn kms_malformed() {
        for v in [
            "kms:",
            "kms:not base64!",
            "kms:AAAA\n",
            "kms:+/-_AQ==",
            "kms:A",
        ] {
            assert_eq!(class_of(v), Class::Malformed, "{v}");
        }
    }

    #[test]
    fn malformed_messages_never_repeat_the_value() {
        let r = c("kms:s3cr3t-l00k!ng").unwrap_err();
        assert!(!r.detail.contains("s3cr3t"), "{}", r.detail);
    }

    #[test]
    fn ssm_forms() {
        assert_eq!(c("ssm:///prod/db").unwrap(), ssm("/prod/db", None));
        assert_eq!(c("ssm:/prod/db").unwrap(), ssm("/prod/db", None));
        assert_eq!(c("ssm://prod.db").unwrap(), ssm("prod.db", None));
        assert_eq!(c("ssm:prod.db").unwrap(), ssm("prod.db", None));
        assert_eq!(c("ssm:/prod/db:3").unwrap(), ssm("/prod/db", Some("3")));
        assert_eq!(
            c("ssm:///prod/db:current").unwrap(),
            ssm("/prod/db", Some("current"))
        );
        assert_eq!(c("ssm:a_b-c.d").unwrap(), ssm("a_b-c.d", None));
    }

    #[test]
    fn ssm_request_strings() {
        let Some(Reference::Ssm(r)) = c("ssm:/prod/db:7").unwrap() else {
            panic!()
        };
        assert_eq!(r.request(), "/prod/db:7");
        assert_eq!(Reference::Ssm(r).kind(), "ssm /prod/db:7");
    }

    #[test]
    fn ssm_arn() {
        let Some(Reference::Ssm(r)) =
            c("ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db").unwrap()
        else {
            panic!()
        };
        assert_eq!(r.name, "/prod/db");
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.selector, None);
        assert_eq!(
            r.request(),
            "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db"
        );

        let Some(Reference::Ssm(r)) =
            c("ssm://arn:aws-cn:ssm:cn-north-1:123456789012:parameter/flat.name:prod").unwrap()
        else {
            panic!()
        };
        assert_eq!(r.name, "flat.name");
        assert_eq!(r.region.as_deref(), Some("cn-north-1"));
        assert_eq!(r.selector.as_deref(), Some("prod"));
        assert_eq!(
            r.request(),
            "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/flat.name:prod"
        );
    }

    #[test]
    fn ssm_malformed() {
        for v in [
            "ssm:",
            "ssm://",
            "ssm:/prod/db:",
            "ssm:/prod/db:1:2",
            "ssm:/prod db",
            "ssm:prod/db",
            "ssm://prod/db",
            "ssm:/prod//db",
            "ssm:/prod/",
            "ssm:/prod/db:lab el",
            "ssm:arn:aws:ssm:us-east-1:123456789012:parameter/",
            "ssm:arn:aws:ssm:us-east-1:123:parameter/x",
            "ssm:arn:aws:kms:us-east-1:123456789012:parameter/x",
            "ssm:arn:aws:ssm::123456789012:parameter/x",
            "ssm:arn:aws:ssm:us-east-1:123456789012:secret/x",
            "ssm:arn:aws:ssm:us-east-1",
        ] {
            assert_eq!(class_of(v), Class::Malformed, "{v}");
        }
        let long = format!("ssm:/{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(class_of(&long), Class::Malformed);
    }

    #[test]
    fn non_utf8_ssm_is_malformed_and_non_utf8_plain_passes() {
        use std::os::unix::ffi::OsStrExt;
        assert_eq!(
            classify(OsStr::from_bytes(b"ssm:/a\xff"), false)
                .unwrap_err()
                .class,
            Class::Malformed
        );
        assert_eq!(
            classify(OsStr::from_bytes(b"\xffplain"), false).unwrap(),
            None
        );
    }

    #[test]
    fn secure_depends_on_the_data_key() {
        // mapbox: a direct KMS ciphertext in base64.
        assert_eq!(c("secure:AQI=").unwrap(), Some(Reference::Kms(vec![1, 2])));
        assert_eq!(class_of("secure:not base64"), Class::Malformed);
        // the original kms-env: an envelope value.
        let env = |v: &str| classify(OsStr::new(v), true);
        assert_eq!(
            env("secure:0a0b$ff00").unwrap(),
            Some(Reference::Envelope("0a0b$ff00".into()))
        );
        assert_eq!(
            env("secure:19fc").unwrap(),
            Some(Reference::Envelope("19fc".into()))
        );
        assert_eq!(
            env("secure:0a0b$").unwrap(),
            Some(Reference::Envelope("0a0b$".into()))
        );
        // The original wrote an empty legacy value as `secure:` alone.
        assert_eq!(
            env("secure:").unwrap(),
            Some(Reference::Envelope(String::new()))
        );
        for bad in [
            "secure:xyz",
            "secure:abc",
            "secure:$00",
            "secure:00$0g",
            "secure:00$11$22",
        ] {
            assert_eq!(env(bad).unwrap_err().class, Class::Malformed, "{bad}");
        }
        // kms: and ssm: do not depend on it.
        assert_eq!(env("kms:AQI=").unwrap(), Some(Reference::Kms(vec![1, 2])));
    }

    mod properties {
        use super::*;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        use proptest::prelude::*;
        use std::os::unix::ffi::OsStrExt;

        proptest! {
            #[test]
            fn never_panics_and_never_echoes_the_value(bytes in proptest::collection::vec(any::<u8>(), 0..300), data_key in any::<bool>()) {
                // A marker appended to the value must never appear in a message.
                let mut value = bytes.clone();
                value.extend_from_slice(b"Zq9SECRETv4L");
                if let Err(reason) = classify(OsStr::from_bytes(&value), data_key) {
                    prop_assert!(!reason.detail.contains("Zq9SECRETv4L"));
                }
            }

            #[test]
            fn values_without_a_prefix_are_plain(s in "[^ks][^:]{0,40}") {
                prop_assert_eq!(classify(OsStr::new(&s), true).unwrap(), None);
            }

            #[test]
            fn kms_blobs_round_trip_in_both_alphabets(blob in proptest::collection::vec(any::<u8>(), 1..200)) {
                for encoded in [STANDARD.encode(&blob), URL_SAFE_NO_PAD.encode(&blob)] {
                    let value = format!("kms:{encoded}");
                    prop_assert_eq!(classify(OsStr::new(&value), false).unwrap(), Some(Reference::Kms(blob.clone())));
                }
            }

            #[test]
            fn ssm_names_and_selectors_parse_back(
                path in proptest::collection::vec("[A-Za-z0-9_.-]{1,12}", 1..5),
                selector in proptest::option::of("[A-Za-z0-9_.-]{1,10}"),
                slashes in 0usize..3,
            ) {
                let name = format!("/{}", path.join("/"));
                let reference = format!(
                    "ssm:{}{name}{}",
                    "/".repeat(slashes).chars().take(if slashes == 1 { 0 } else { slashes }).collect::<String>(),
                    selector.as_ref().map(|s| format!(":{s}")).unwrap_or_default()
                );
                let Some(Reference::Ssm(r)) = classify(OsStr::new(&reference), false).unwrap() else {
                    return Err(TestCaseError::fail("not an ssm reference"));
                };
                prop_assert_eq!(r.name, name);
                prop_assert_eq!(r.selector, selector);
            }
        }
    }
}
