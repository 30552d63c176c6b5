//! The KMS source: `kms:<base64>`, `kms:v1:<base64>`, the original kms-env's `secure:` values
//! with their `KMS_DATA_KEY`, mapbox's `secure:<base64>` and shush's `KMS_ENCRYPTED_<NAME>`.
//!
//! It owns the grammar of those values (standard or URL-safe base64, padding optional), the
//! lookup ([`Decrypt`]: one per distinct blob and encryption context, the data key once for
//! all `secure:` values), the [`Kms`] port for every KMS call the product makes (`Decrypt`,
//! `Encrypt`, `GenerateDataKey`) with its SDK adapter [`AwsKms`], KMS's error codes, and the
//! `kms:Decrypt` IAM statement. See README "Reference syntax" and "The `kms:v1:` format".

use super::{Fetched, Lookup, LookupId, Lookups, Outcomes, Resolved, within};
use crate::aws::{self, Aws, Regional, json};
use crate::envfile::crypto;
use crate::error::{Class, Reason};
use crate::sealed::{NAME_CONTEXT_KEY, Sealed, V1_TAG};
use crate::secret::Secret;
use crate::value::Context;
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use tokio::time::Instant;

/// Prefix of a KMS ciphertext value.
pub const KMS_PREFIX: &str = "kms:";
/// Prefix of the original kms-env's values (and of mapbox's direct ciphertexts).
pub const SECURE_PREFIX: &str = "secure:";
/// The original kms-env's encrypted data key.
pub const DATA_KEY_VAR: &str = "KMS_DATA_KEY";
/// shush's convention: `KMS_ENCRYPTED_<NAME>=<base64>` sets `<NAME>`.
pub const SHUSH_PREFIX: &str = "KMS_ENCRYPTED_";
/// The kind shown for shush variables.
pub const SHUSH_KIND: &str = "kms, KMS_ENCRYPTED_*";

/// A KMS value, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KmsRef {
    /// A KMS ciphertext blob, already base64-decoded.
    Blob(Vec<u8>),
    /// A `kms:v1:` value.
    Sealed(Sealed),
    /// An original kms-env value to decrypt with the data key: `<hex iv>$<hex>` or legacy `<hex>`.
    Envelope(String),
}

impl KmsRef {
    /// Short description for messages. Never a secret.
    pub fn kind(&self) -> String {
        match self {
            KmsRef::Blob(_) => "kms",
            KmsRef::Sealed(s) => match (s.bound, s.envelope.is_some()) {
                (false, false) => "kms v1",
                (true, false) => "kms v1, bound",
                (false, true) => "kms v1 envelope",
                (true, true) => "kms v1 envelope, bound",
            },
            KmsRef::Envelope(_) => "secure, KMS_DATA_KEY",
        }
        .to_owned()
    }
}

fn malformed(detail: &str) -> Reason {
    Reason::new(Class::Malformed, detail)
}

/// Parses what follows `kms:`.
pub fn parse(body: &[u8]) -> Result<KmsRef, Reason> {
    if let Some(v1) = body.strip_prefix(V1_TAG.as_bytes()) {
        return Sealed::decode(&decode_blob(v1)?).map(KmsRef::Sealed);
    }
    decode_blob(body).map(KmsRef::Blob)
}

/// Parses what follows `secure:`: an envelope value when the environment holds a
/// `KMS_DATA_KEY` (`data_key`), a direct ciphertext in base64 (mapbox) otherwise.
pub fn parse_secure(body: &[u8], data_key: bool) -> Result<KmsRef, Reason> {
    if !data_key {
        return decode_blob(body).map(KmsRef::Blob);
    }
    std::str::from_utf8(body)
        .ok()
        .filter(|b| is_envelope(b))
        .map(|b| KmsRef::Envelope(b.to_owned()))
        .ok_or_else(|| {
            malformed("a secure: value must be <hex iv>$<hex ciphertext> or <hex ciphertext>")
        })
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

/// `<NAME>` of a variable named `KMS_ENCRYPTED_<NAME>` (non-empty).
pub fn shush_target(name: &OsStr) -> Option<OsString> {
    name.as_bytes()
        .strip_prefix(SHUSH_PREFIX.as_bytes())
        .filter(|rest| !rest.is_empty())
        .map(|rest| OsStr::from_bytes(rest).to_owned())
}

/// The value of a shush variable: base64, with or without `kms:`.
pub fn parse_shush(value: &OsStr) -> Result<KmsRef, Reason> {
    let body = value.as_bytes();
    let body = body.strip_prefix(KMS_PREFIX.as_bytes()).unwrap_or(body);
    decode_blob(body).map(KmsRef::Blob)
}

/// One KMS `Decrypt` to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Decrypt {
    /// The ciphertext blob.
    pub blob: Vec<u8>,
    /// The encryption context to send (empty for none).
    pub context: Context,
}

/// Selects the KMS lookups.
pub fn pick(lookup: &Lookup) -> Option<&Decrypt> {
    match lookup {
        Lookup::Kms(d) => Some(d),
        _ => None,
    }
}

/// The environment's `KMS_DATA_KEY`, planned at most once, and only when a `secure:` value
/// needs it.
#[derive(Debug, Default)]
pub struct DataKey {
    encoded: Option<OsString>,
    planned: Option<Result<LookupId, Reason>>,
}

impl DataKey {
    /// The environment's data key, if any.
    pub fn new(encoded: Option<OsString>) -> Self {
        DataKey {
            encoded,
            planned: None,
        }
    }

    /// Whether the environment holds one (which decides what `secure:` means).
    pub fn present(&self) -> bool {
        self.encoded.is_some()
    }

    fn lookup(&mut self, lookups: &mut Lookups) -> Result<LookupId, Reason> {
        let encoded = self.encoded.as_deref().unwrap_or_default();
        self.planned
            .get_or_insert_with(|| {
                decode_blob(encoded.as_bytes())
                    .map(|blob| {
                        lookups.intern(Lookup::Kms(Decrypt {
                            blob,
                            context: Context::new(),
                        }))
                    })
                    .map_err(|r| Reason::new(r.class, format!("{DATA_KEY_VAR}: {}", r.detail)))
            })
            .clone()
    }
}

/// How a variable gets its plaintext from KMS.
#[derive(Debug, Clone)]
pub enum Use {
    /// The plaintext of one `Decrypt`.
    Direct {
        /// The decryption.
        id: LookupId,
        /// The encryption context sent with it (for hints and IAM conditions).
        context: Context,
    },
    /// An original kms-env value under the decrypted data key.
    Envelope {
        /// The data key's decryption.
        key: LookupId,
        /// The hex part of the value.
        value: String,
    },
    /// A `kms:v1:` value.
    Sealed {
        /// Its decryption.
        key: LookupId,
        /// The context sent with it.
        context: Context,
        /// The value.
        sealed: Box<Sealed>,
        /// The variable name it is read as.
        name: String,
    },
}

/// Plans `reference` for the variable `name`, with the user's encryption `context`.
pub fn plan(
    reference: KmsRef,
    name: &str,
    context: &Context,
    data_key: &mut DataKey,
    lookups: &mut Lookups,
) -> Result<Use, Reason> {
    let mut decrypt = |blob: Vec<u8>, context: Context| {
        lookups.intern(Lookup::Kms(Decrypt {
            blob,
            context: context.clone(),
        }))
    };
    Ok(match reference {
        KmsRef::Blob(blob) => Use::Direct {
            id: decrypt(blob, context.clone()),
            context: context.clone(),
        },
        KmsRef::Sealed(sealed) => {
            let context = sealed.context(context, name);
            Use::Sealed {
                key: decrypt(sealed.blob.clone(), context.clone()),
                context,
                sealed: Box::new(sealed),
                name: name.to_owned(),
            }
        }
        KmsRef::Envelope(value) => Use::Envelope {
            key: data_key.lookup(lookups)?,
            value,
        },
    })
}

impl Use {
    /// The plaintext, from the answers.
    pub fn finish(&self, outcomes: &Outcomes) -> Result<Resolved, Reason> {
        let resolved = |f: &Fetched, secret: Secret, context: &Context| Resolved {
            secret,
            source: f.source.clone(),
            version: None,
            grants: f
                .source
                .clone()
                .map(|key| {
                    super::Grant::Kms(Grant {
                        key,
                        context: context.clone(),
                    })
                })
                .into_iter()
                .collect(),
        };
        match self {
            Use::Direct { id, context } => {
                let f = outcomes
                    .get(*id)
                    .map_err(|r| context_hint(r, context, false))?;
                Ok(resolved(f, f.secret.clone(), context))
            }
            Use::Envelope { key, value } => {
                let f = outcomes
                    .get(*key)
                    .map_err(|r| Reason::new(r.class, format!("{DATA_KEY_VAR}: {}", r.detail)))?;
                let data_key = crypto::data_key(f.secret.expose())?;
                let secret = crypto::decrypt(value, &data_key)?;
                Ok(resolved(f, secret, &Context::new()))
            }
            Use::Sealed {
                key,
                context,
                sealed,
                name,
            } => {
                let f = outcomes
                    .get(*key)
                    .map_err(|r| context_hint(r, context, sealed.bound))?;
                let secret = sealed.open(f.secret.clone(), name)?;
                Ok(resolved(f, secret, context))
            }
        }
    }
}

/// Explains a rejected ciphertext that was sent with an encryption context.
fn context_hint(reason: Reason, context: &Context, bound: bool) -> Reason {
    if reason.class != Class::BadCiphertext {
        return reason;
    }
    let hint = if bound {
        "the encryption context did not match: the value is bound to another variable name \
         (copied from another variable?) or needs another --context"
    } else if !context.is_empty() {
        "the encryption context did not match (check --context / KMS_ENV_CONTEXT), or the ciphertext is bad"
    } else {
        return reason;
    };
    Reason::new(reason.class, format!("{hint}; {}", reason.detail))
}

/// What `GenerateDataKey` returns.
pub struct DataKeyResponse {
    /// The encrypted data key.
    pub blob: Vec<u8>,
    /// The plaintext data key.
    pub plaintext: Secret,
    /// The ARN of the KMS key that encrypted it.
    pub key_arn: String,
}

/// Every KMS call the product makes, in the configured region.
pub trait Kms {
    /// `Decrypt` of one blob with an encryption context (empty for none); the answer's
    /// `source` is the key ARN.
    fn decrypt(
        &self,
        blob: &[u8],
        context: &Context,
        deadline: Instant,
    ) -> impl Future<Output = Result<Fetched, Reason>>;

    /// `Encrypt` of `plaintext` under `key_id` with `context`; the ciphertext blob.
    fn encrypt(
        &self,
        key_id: &str,
        plaintext: &Secret,
        context: &Context,
    ) -> impl Future<Output = Result<Vec<u8>, Reason>>;

    /// `GenerateDataKey` with `AES_256` under `key_id` with `context`.
    fn generate_data_key(
        &self,
        key_id: &str,
        context: &Context,
    ) -> impl Future<Output = Result<DataKeyResponse, Reason>>;
}

/// Makes every distinct `Decrypt`, all at once.
pub async fn resolve(
    decrypts: Vec<(LookupId, &Decrypt)>,
    kms: &impl Kms,
    deadline: Instant,
) -> Vec<(LookupId, Result<Fetched, Reason>)> {
    join_all(decrypts.into_iter().map(|(id, d)| async move {
        (
            id,
            within(deadline, || kms.decrypt(&d.blob, &d.context, deadline)).await,
        )
    }))
    .await
}

/// KMS's own error codes.
fn codes(code: &str, _message: &str) -> Option<Class> {
    match code {
        "InvalidCiphertextException"
        | "IncorrectKeyException"
        | "InvalidKeyUsageException"
        | "DisabledException"
        | "KMSInvalidStateException"
        | "InvalidKeyId"
        | "InvalidGrantTokenException" => Some(Class::BadCiphertext),
        "NotFoundException" => Some(Class::NotFound),
        _ => None,
    }
}

/// KMS in the configured region: `Decrypt`, on every start's critical path, without the SDK's
/// orchestrator ([`json`]); `Encrypt` and `GenerateDataKey` through the AWS SDK.
pub struct AwsKms {
    clients: Regional<aws_sdk_kms::Client>,
    lean: json::Clients,
}

/// KMS as [`json`] calls it.
static KMS: json::Service = json::Service {
    id: "KMS",
    signing_name: "kms",
    target: "TrentService",
    resolve: json::resolver!(aws_sdk_kms),
};

impl AwsKms {
    /// A KMS client for `aws`'s region (calls fail with a configuration error without one).
    pub fn new(aws: &Aws) -> Self {
        AwsKms {
            clients: Regional::new(&aws.config, aws_sdk_kms::Client::new),
            lean: json::Clients::new(&aws.json, &KMS),
        }
    }
}

/// `Decrypt`'s request (AWS JSON 1.1).
#[derive(serde::Serialize)]
struct DecryptRequest<'a> {
    #[serde(rename = "CiphertextBlob")]
    blob: String,
    #[serde(rename = "EncryptionContext", skip_serializing_if = "no_context")]
    context: &'a Context,
}

fn no_context(context: &&Context) -> bool {
    context.is_empty()
}

/// The parts of `Decrypt`'s answer that kms-env reads; the plaintext borrowed from the
/// answer, which is zeroed when dropped.
#[derive(serde::Deserialize)]
struct DecryptAnswer<'a> {
    #[serde(rename = "Plaintext", borrow)]
    plaintext: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "KeyId")]
    key_id: Option<String>,
}

/// The SDK's form of an encryption context; `None` when empty.
fn aws_context(context: &Context) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| context.clone().into_iter().collect())
}

impl Kms for AwsKms {
    async fn decrypt(
        &self,
        blob: &[u8],
        context: &Context,
        deadline: Instant,
    ) -> Result<Fetched, Reason> {
        let client = self.lean.client(None)?;
        let request = json::body(&DecryptRequest {
            blob: BASE64.encode(blob),
            context,
        })?;
        let answer = client
            .call_in_rounds("Decrypt", &request, codes, deadline)
            .await?;
        let parsed: DecryptAnswer = json::parse(&answer, &KMS, "Decrypt")?;
        let encoded = parsed
            .plaintext
            .ok_or_else(|| Reason::new(Class::ServiceError, "KMS returned no plaintext"))?;
        let plaintext = BASE64.decode(encoded.as_bytes());
        // A copy (only made for a JSON string with escapes) is zeroed, whether it decoded or not.
        if let std::borrow::Cow::Owned(copy) = encoded {
            zeroize::Zeroize::zeroize(&mut copy.into_bytes());
        }
        let plaintext = plaintext.map_err(|_| {
            Reason::new(
                Class::ServiceError,
                "KMS answered Decrypt with a plaintext that is not base64",
            )
        })?;
        Ok(Fetched {
            source: parsed.key_id,
            ..Fetched::plain(Secret::new(plaintext))
        })
    }

    async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &Secret,
        context: &Context,
    ) -> Result<Vec<u8>, Reason> {
        let out = self
            .clients
            .client(None)?
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext.expose()))
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(|e| aws::classify(e, codes))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| Reason::new(Class::ServiceError, "KMS returned no ciphertext"))
    }

    async fn generate_data_key(
        &self,
        key_id: &str,
        context: &Context,
    ) -> Result<DataKeyResponse, Reason> {
        let out = self
            .clients
            .client(None)?
            .generate_data_key()
            .key_id(key_id)
            .set_encryption_context(aws_context(context))
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await
            .map_err(|e| aws::classify(e, codes))?;
        let missing = || Reason::new(Class::ServiceError, "KMS returned an incomplete data key");
        Ok(DataKeyResponse {
            blob: out.ciphertext_blob.ok_or_else(missing)?.into_inner(),
            plaintext: Secret::new(out.plaintext.ok_or_else(missing)?.into_inner()),
            key_arn: out.key_id.ok_or_else(missing)?,
        })
    }
}

/// `kms:Decrypt` on a key, with the encryption context that was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The key ARN.
    pub key: String,
    /// The encryption context sent (a bound name included).
    pub context: Context,
}

/// The `kms:Decrypt` statements: keys grouped by the user's context, with
/// `kms:EncryptionContext:*` conditions where a context was sent; bound names become one list
/// condition.
pub fn statements(grants: &[&Grant]) -> Vec<Value> {
    let mut groups: BTreeMap<Context, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for grant in grants {
        let mut context = grant.context.clone();
        let name = context.remove(NAME_CONTEXT_KEY);
        let (keys, names) = groups.entry(context).or_default();
        keys.insert(grant.key.clone());
        names.extend(name);
    }
    let mut statements = Vec::new();
    for (i, (context, (keys, names))) in groups.into_iter().enumerate() {
        let mut statement = json!({
            "Sid": format!("DecryptKmsValues{}", i + 1),
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": keys.into_iter().collect::<Vec<_>>(),
        });
        let mut equals = serde_json::Map::new();
        for (k, v) in context {
            equals.insert(format!("kms:EncryptionContext:{k}"), Value::String(v));
        }
        if !names.is_empty() {
            equals.insert(
                format!("kms:EncryptionContext:{NAME_CONTEXT_KEY}"),
                Value::from(names.into_iter().collect::<Vec<_>>()),
            );
        }
        if !equals.is_empty() {
            statement["Condition"] = json!({ "StringEquals": equals });
        }
        statements.push(statement);
    }
    statements
}

#[cfg(test)]
pub mod fake {
    //! A KMS that "decrypts" a blob to its reversed bytes and "encrypts" by reversing;
    //! `[0xff]` hangs forever and `[0xee]` is a bad ciphertext. It records every call.

    use super::*;
    use std::cell::RefCell;

    /// The fake; `calls` names every operation in order.
    #[derive(Default)]
    pub struct FakeKms {
        /// Operations made, e.g. `Decrypt`, `Encrypt`, `GenerateDataKey`.
        pub calls: RefCell<Vec<&'static str>>,
    }

    impl FakeKms {
        /// How many calls of `op` were made.
        pub fn count(&self, op: &str) -> usize {
            self.calls.borrow().iter().filter(|c| **c == op).count()
        }
    }

    /// The ARN the fake reports.
    pub const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/fake";

    impl Kms for FakeKms {
        async fn decrypt(&self, blob: &[u8], _: &Context, _: Instant) -> Result<Fetched, Reason> {
            self.calls.borrow_mut().push("Decrypt");
            if blob == [0xff] {
                std::future::pending::<()>().await;
            }
            if blob == [0xee] {
                return Err(Reason::new(
                    Class::BadCiphertext,
                    "InvalidCiphertextException",
                ));
            }
            Ok(Fetched {
                source: Some(KEY_ARN.to_owned()),
                ..Fetched::plain(Secret::new(blob.iter().rev().copied().collect()))
            })
        }

        async fn encrypt(
            &self,
            _: &str,
            plaintext: &Secret,
            _: &Context,
        ) -> Result<Vec<u8>, Reason> {
            self.calls.borrow_mut().push("Encrypt");
            Ok(plaintext.expose().iter().rev().copied().collect())
        }

        async fn generate_data_key(&self, _: &str, _: &Context) -> Result<DataKeyResponse, Reason> {
            self.calls.borrow_mut().push("GenerateDataKey");
            let plaintext: Vec<u8> = (0u8..32).collect();
            Ok(DataKeyResponse {
                blob: plaintext.iter().rev().copied().collect(),
                plaintext: Secret::new(plaintext),
                key_arn: KEY_ARN.to_owned(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_follow_the_sdks_rules() {
        let target = |region: &str, fips: bool, dual: bool, url: Option<&str>| json::Target {
            region: region.into(),
            use_fips: fips,
            use_dual_stack: dual,
            endpoint: url.map(Into::into),
        };
        let url = |t: json::Target| (KMS.resolve)(&t).map(|e| e.url().to_owned());
        assert_eq!(
            url(target("eu-west-1", false, false, None)).unwrap(),
            "https://kms.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            url(target("us-east-1", true, false, None)).unwrap(),
            "https://kms-fips.us-east-1.amazonaws.com"
        );
        assert_eq!(
            url(target("cn-north-1", false, false, None)).unwrap(),
            "https://kms.cn-north-1.amazonaws.com.cn"
        );
        // An endpoint URL is used as it is (json::Clients takes that branch without the
        // resolver), and refused with FIPS or dual-stack.
        assert_eq!(
            url(target(
                "us-east-1",
                false,
                false,
                Some("http://127.0.0.1:5000")
            ))
            .unwrap(),
            "http://127.0.0.1:5000"
        );
        for (fips, dual) in [(true, false), (false, true)] {
            let err = url(target(
                "us-east-1",
                fips,
                dual,
                Some("http://127.0.0.1:5000"),
            ));
            assert!(err.is_err(), "{fips} {dual}");
        }
    }

    #[test]
    fn kms_standard_and_url_safe_padded_or_not() {
        let bytes = vec![0xfb, 0xff, 0xbf, 0x01];
        for v in ["+/+/AQ==", "+/+/AQ", "-_-_AQ==", "-_-_AQ"] {
            assert_eq!(
                parse(v.as_bytes()).unwrap(),
                KmsRef::Blob(bytes.clone()),
                "{v}"
            );
        }
    }

    #[test]
    fn kms_malformed() {
        for v in ["", "not base64!", "AAAA\n", "+/-_AQ==", "A"] {
            assert_eq!(
                parse(v.as_bytes()).unwrap_err().class,
                Class::Malformed,
                "{v}"
            );
        }
    }

    #[test]
    fn error_codes_map_to_classes() {
        assert_eq!(
            codes("InvalidCiphertextException", ""),
            Some(Class::BadCiphertext)
        );
        assert_eq!(codes("NotFoundException", ""), Some(Class::NotFound));
        assert_eq!(codes("KMSInternalException", ""), None);
    }

    #[test]
    fn secure_depends_on_the_data_key() {
        // mapbox: a direct KMS ciphertext in base64.
        assert_eq!(
            parse_secure(b"AQI=", false).unwrap(),
            KmsRef::Blob(vec![1, 2])
        );
        assert_eq!(
            parse_secure(b"not base64", false).unwrap_err().class,
            Class::Malformed
        );
        // the original kms-env: an envelope value.
        for ok in ["0a0b$ff00", "19fc", "0a0b$", ""] {
            assert_eq!(
                parse_secure(ok.as_bytes(), true).unwrap(),
                KmsRef::Envelope(ok.into()),
                "{ok}"
            );
        }
        for bad in ["xyz", "abc", "$00", "00$0g", "00$11$22"] {
            assert_eq!(
                parse_secure(bad.as_bytes(), true).unwrap_err().class,
                Class::Malformed,
                "{bad}"
            );
        }
    }

    #[test]
    fn policy_groups_keys_by_context_and_lists_bound_names() {
        let k1 = "arn:aws:kms:us-east-1:123456789012:key/a";
        let k2 = "arn:aws:kms:us-east-1:123456789012:key/b";
        let grant = |key: &str, context: &[(&str, &str)]| Grant {
            key: key.into(),
            context: context
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        };
        let grants = [
            grant(k1, &[]),
            grant(k1, &[]),
            grant(k2, &[("kms-env:name", "C"), ("app", "web")]),
            grant(k2, &[("kms-env:name", "D"), ("app", "web")]),
        ];
        let st = statements(&grants.iter().collect::<Vec<_>>());
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Resource"], json!([k1]));
        assert!(st[0].get("Condition").is_none());
        assert_eq!(st[1]["Resource"], json!([k2]));
        assert_eq!(
            st[1]["Condition"]["StringEquals"]["kms:EncryptionContext:kms-env:name"],
            json!(["C", "D"])
        );
        assert_eq!(
            st[1]["Condition"]["StringEquals"]["kms:EncryptionContext:app"],
            json!("web")
        );
    }
}
