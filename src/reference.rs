//! Classification of one environment value into a [`Reference`]: which source's grammar applies,
//! decided by the value's prefix (see README "Reference syntax"). The grammars themselves live in
//! the source modules (`crate::source::kms`, `ssm`, `sm`). Every other value is plain and passes
//! through untouched. A value with a reference prefix that does not parse is an error; its
//! message never repeats the value.

use crate::error::Reason;
use crate::source::kms::{self, KMS_PREFIX, KmsRef, SECURE_PREFIX};
use crate::source::sm::{self, SecretRef};
use crate::source::ssm::{self, Parameter};
use crate::template::{self, Piece};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

/// What a value refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A KMS value: `kms:`, `kms:v1:`, `secure:`.
    Kms(KmsRef),
    /// A Parameter Store parameter.
    Ssm(Parameter),
    /// A Secrets Manager secret, or one key of it.
    Sm(SecretRef),
    /// A `tmpl:` value: text and placeholders.
    Template(Vec<Piece>),
}

impl Reference {
    /// Short description for messages, e.g. `kms` or `ssm /prod/db:3`. Never a secret.
    pub fn kind(&self) -> String {
        match self {
            Reference::Kms(r) => r.kind(),
            Reference::Ssm(r) => r.kind(),
            Reference::Sm(r) => r.kind(),
            Reference::Template(pieces) => {
                // The kinds of the references it uses; of one that does not parse, only its
                // prefix (it might be a mistyped plaintext).
                let inner: Vec<String> = pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Placeholder { reference, .. } => {
                            Some(match classify(OsStr::new(reference), false) {
                                Ok(Some(r)) => r.kind(),
                                _ => reference.split(':').next().unwrap_or_default().to_owned(),
                            })
                        }
                        Piece::Text(_) => None,
                    })
                    .collect();
                format!("tmpl ({})", inner.join(", "))
            }
        }
    }
}

/// Every reference prefix.
const PREFIXES: [&str; 5] = [
    KMS_PREFIX,
    ssm::PREFIX,
    sm::PREFIX,
    SECURE_PREFIX,
    template::PREFIX,
];

/// Whether a value starts with one of the reference prefixes (`kms:`, `ssm:`, `sm:`, `secure:`,
/// `tmpl:`).
pub fn has_reference_prefix(value: &[u8]) -> bool {
    PREFIXES.iter().any(|p| value.starts_with(p.as_bytes()))
}

/// Classifies one value. `Ok(None)` means a plain value that passes through. `data_key` says
/// whether the environment holds a `KMS_DATA_KEY`, which decides what `secure:` means.
pub fn classify(value: &OsStr, data_key: bool) -> Result<Option<Reference>, Reason> {
    let bytes = value.as_bytes();
    if let Some(body) = bytes.strip_prefix(KMS_PREFIX.as_bytes()) {
        return kms::parse(body).map(|r| Some(Reference::Kms(r)));
    }
    if let Some(body) = bytes.strip_prefix(SECURE_PREFIX.as_bytes()) {
        return kms::parse_secure(body, data_key).map(|r| Some(Reference::Kms(r)));
    }
    if let Some(body) = bytes.strip_prefix(ssm::PREFIX.as_bytes()) {
        return ssm::parse(body).map(|r| Some(Reference::Ssm(r)));
    }
    if let Some(body) = bytes.strip_prefix(sm::PREFIX.as_bytes()) {
        return sm::parse(body).map(|r| Some(Reference::Sm(r)));
    }
    if let Some(body) = bytes.strip_prefix(template::PREFIX.as_bytes()) {
        let body = std::str::from_utf8(body).map_err(|_| {
            Reason::new(
                crate::error::Class::Malformed,
                "a tmpl: value must be valid UTF-8",
            )
        })?;
        return template::parse(body, |r| has_reference_prefix(r.as_bytes()))
            .map(|p| Some(Reference::Template(p)));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Class;

    fn c(v: &str) -> Result<Option<Reference>, Reason> {
        classify(OsStr::new(v), false)
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
            "SM:x",
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:x-AbCdEf",
        ] {
            assert_eq!(c(v).unwrap(), None, "{v}");
        }
    }

    #[test]
    fn prefixes_pick_the_source() {
        assert_eq!(
            c("kms:AQI=").unwrap(),
            Some(Reference::Kms(KmsRef::Blob(vec![1, 2])))
        );
        assert_eq!(
            c("secure:AQI=").unwrap(),
            Some(Reference::Kms(KmsRef::Blob(vec![1, 2])))
        );
        assert!(matches!(c("ssm:/x").unwrap(), Some(Reference::Ssm(_))));
        assert!(matches!(c("sm:prod/db").unwrap(), Some(Reference::Sm(_))));
        assert!(has_reference_prefix(b"sm:x") && !has_reference_prefix(b"smx"));
        assert_eq!(
            classify(OsStr::new("secure:19fc"), true).unwrap(),
            Some(Reference::Kms(KmsRef::Envelope("19fc".into())))
        );
        // kms: and ssm: do not depend on the data key.
        assert_eq!(
            classify(OsStr::new("kms:AQI="), true).unwrap(),
            Some(Reference::Kms(KmsRef::Blob(vec![1, 2])))
        );
    }

    #[test]
    fn malformed_messages_never_repeat_the_value() {
        let r = c("kms:s3cr3t-l00k!ng").unwrap_err();
        assert_eq!(r.class, Class::Malformed);
        assert!(!r.detail.contains("s3cr3t"), "{}", r.detail);
    }

    #[test]
    fn non_utf8_ssm_is_malformed_and_non_utf8_plain_passes() {
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

    mod properties {
        use super::*;
        use base64::Engine as _;
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
                    prop_assert_eq!(classify(OsStr::new(&value), false).unwrap(), Some(Reference::Kms(KmsRef::Blob(blob.clone()))));
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
