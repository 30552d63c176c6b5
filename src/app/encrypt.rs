//! `kms-env encrypt`: one value, or every value of a dotenv file, for CI pipelines.
//!
//! Encoding needs only `kms:Encrypt` (values up to 4 KiB) and `kms:GenerateDataKey` (larger
//! values, as an AES-256-GCM envelope); it never decrypts. Values that are already references
//! are left as they are, so re-running on the output changes nothing.

use super::files::read_dotenv;
use super::{Then, read_value, with_aws, write_stdout};
use crate::cli::{EncodeFormat, EncryptArgs, Global};
use crate::dotenv::{self, Pair};
use crate::error::{Class, Error, Reason};
use crate::reference::{classify, has_reference_prefix};
use crate::sealed::{self, KMS_MAX_PLAINTEXT, Sealed, V1_TAG, context_for};
use crate::secret::Secret;
use crate::source::kms::{AwsKms, DATA_KEY_VAR, KMS_PREFIX, Kms};
use crate::value::{Context, MAX_ENV_STRING};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::try_join_all;
use tracing::warn;

/// The largest data-key blob we allow for in size estimates.
const MAX_DATA_KEY_BLOB: usize = 1024;

fn bad(detail: String) -> Reason {
    Reason::new(Class::Malformed, detail)
}

/// Refuses a plaintext that cannot become an environment value, before any KMS call.
pub(super) fn check_plaintext(plaintext: &[u8], name: Option<&str>) -> Result<(), Reason> {
    let what = name.map_or_else(
        || "the plaintext".to_owned(),
        |n| format!("{n}: the plaintext"),
    );
    if plaintext.is_empty() {
        return Err(bad(format!(
            "{what} is empty; KMS cannot encrypt an empty value"
        )));
    }
    if plaintext.contains(&0) {
        return Err(bad(format!(
            "{what} contains a NUL byte, which an environment variable cannot hold"
        )));
    }
    // `NAME=kms:v1:` + base64(header, data key, nonce, ciphertext, tag) + NUL must fit.
    let sealed_len = 4 + MAX_DATA_KEY_BLOB + 12 + plaintext.len() + 16;
    let encoded = KMS_PREFIX.len() + V1_TAG.len() + sealed_len.div_ceil(3) * 4;
    if name.map_or(0, str::len) + 1 + encoded + 1 > MAX_ENV_STRING {
        return Err(bad(format!(
            "{what} is {} bytes; encrypted it would not fit in one environment variable \
             (Linux allows 128 KiB per NAME=VALUE string). Store it in S3 or split it",
            plaintext.len()
        )));
    }
    Ok(())
}

/// Encrypts one plaintext into the right textual form.
pub(super) async fn seal_value(
    kms: &impl Kms,
    key_id: &str,
    plaintext: &Secret,
    user_context: &Context,
    bound_name: Option<&str>,
) -> Result<String, Reason> {
    let context = context_for(user_context, bound_name);
    if plaintext.expose().len() <= KMS_MAX_PLAINTEXT {
        let blob = kms.encrypt(key_id, plaintext, &context).await?;
        if bound_name.is_none() {
            return Ok(format!("{KMS_PREFIX}{}", STANDARD.encode(blob)));
        }
        let sealed = Sealed {
            bound: true,
            blob,
            envelope: None,
        };
        return Ok(format!(
            "{KMS_PREFIX}{V1_TAG}{}",
            STANDARD.encode(sealed.encode())
        ));
    }
    let key = kms.generate_data_key(key_id, &context).await?;
    let sealed = sealed::seal(
        plaintext.expose(),
        &key.plaintext,
        key.blob,
        sealed::nonce()?,
        bound_name,
    )?;
    Ok(format!(
        "{KMS_PREFIX}{V1_TAG}{}",
        STANDARD.encode(sealed.encode())
    ))
}

/// `kms-env encrypt`.
pub fn encrypt(global: &Global, args: EncryptArgs) -> Result<(), Error> {
    if args.env_file.is_some() {
        return encrypt_file(global, &args);
    }
    if !args.only.is_empty() || !args.skip.is_empty() {
        return Err(Error::Usage("--only and --skip need --env-file".into()));
    }
    let bound = match args.bind_name.as_deref() {
        Some("") => {
            return Err(Error::Usage(
                "--bind-name needs the variable NAME when encrypting one value".into(),
            ));
        }
        other => other,
    };
    let mut plaintext = Secret::new(read_value(args.value.clone())?);
    if args.trim {
        let keep = plaintext
            .expose()
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        plaintext = Secret::new(plaintext.expose()[..keep].to_vec());
    } else if plaintext
        .expose()
        .last()
        .is_some_and(u8::is_ascii_whitespace)
    {
        warn!(
            "the plaintext ends in whitespace (a newline from echo?); it is kept as is. Use --trim to remove it"
        );
    }
    check_plaintext(plaintext.expose(), bound).map_err(Error::Value)?;
    let context = global.context();
    let value = with_aws(global, None, Then::Ends, async |config, _| {
        seal_value(
            &AwsKms::new(config),
            &args.key_id,
            &plaintext,
            &context,
            bound,
        )
        .await
    })
    .map_err(Error::Value)?;
    check_fits(bound, &value).map_err(Error::Value)?;
    write_stdout(format!("{value}\n").as_bytes())
}

fn check_fits(name: Option<&str>, value: &str) -> Result<(), Reason> {
    if name.map_or(0, str::len) + value.len() + 2 > MAX_ENV_STRING {
        return Err(bad(
            "the encrypted value would not fit in one environment variable (128 KiB)".into(),
        ));
    }
    Ok(())
}

/// `kms-env encrypt --env-file FILE`.
fn encrypt_file(global: &Global, args: &EncryptArgs) -> Result<(), Error> {
    let path = args
        .env_file
        .as_deref()
        .unwrap_or(std::path::Path::new("-"));
    let pairs = read_dotenv(path)?;
    check_pairs(&pairs, path).map_err(Error::Value)?;
    for key in args.only.iter().chain(&args.skip) {
        if !pairs.iter().any(|p| &p.key == key) {
            return Err(Error::Usage(format!(
                "{key} (from --only/--skip) is not in {}",
                path.display()
            )));
        }
    }
    let bind = args.bind_name.is_some();
    if args.bind_name.as_deref().is_some_and(|n| !n.is_empty()) {
        return Err(Error::Usage(
            "with --env-file, --bind-name takes no NAME: each value is bound to its own key".into(),
        ));
    }
    let selected = |key: &str, value: &str| {
        !has_reference_prefix(value.as_bytes())
            && (args.only.is_empty() || args.only.iter().any(|k| k == key))
            && !args.skip.iter().any(|k| k == key)
    };
    for p in &pairs {
        if selected(&p.key, &p.value) {
            check_plaintext(p.value.as_bytes(), Some(&p.key)).map_err(Error::Value)?;
        }
    }
    let context = global.context();
    let values: Vec<String> = with_aws(global, None, Then::Ends, async |config, _| {
        let kms = AwsKms::new(config);
        encode_pairs(&kms, &args.key_id, &pairs, &selected, bind, &context).await
    })
    .map_err(Error::Value)?;
    for (p, v) in pairs.iter().zip(&values) {
        check_fits(Some(&p.key), v).map_err(Error::Value)?;
    }
    let keys = pairs.iter().map(|p| p.key.as_str());
    let out =
        Secret::new(render(args.format, keys.zip(values.iter().map(String::as_str))).into_bytes());
    write_stdout(out.expose())
}

/// Refuses a file that no output can represent faithfully: a key given twice (which value
/// would win?), and a value that starts like a reference but is not one (`PASSWORD=kms:hunter2`
/// would otherwise be left alone and shipped in plaintext). Messages name the key, never the
/// value.
fn check_pairs(pairs: &[Pair], path: &std::path::Path) -> Result<(), Reason> {
    let data_key = pairs.iter().any(|p| p.key == DATA_KEY_VAR);
    let mut seen = std::collections::HashSet::new();
    for p in pairs {
        if !seen.insert(p.key.as_str()) {
            return Err(bad(format!(
                "{}: {} is given more than once; keep one",
                path.display(),
                p.key
            )));
        }
        if has_reference_prefix(p.value.as_bytes())
            && let Err(r) = classify(std::ffi::OsStr::new(&p.value), data_key)
        {
            return Err(bad(format!(
                "{}: the value starts like a reference but is not one ({}); fix the reference \
                 (a value that starts with kms:, ssm:, sm: or secure: is never passed through)",
                p.key, r.detail
            )));
        }
    }
    Ok(())
}

/// Encrypts the `selected` values of `pairs`, all concurrently (bound to their keys with
/// `bind`); the others pass through. Nothing comes back unless every value was encrypted.
async fn encode_pairs(
    kms: &impl Kms,
    key_id: &str,
    pairs: &[Pair],
    selected: &impl Fn(&str, &str) -> bool,
    bind: bool,
    context: &Context,
) -> Result<Vec<String>, Reason> {
    try_join_all(pairs.iter().map(|p| async move {
        if !selected(&p.key, &p.value) {
            return Ok(p.value.clone());
        }
        let plaintext = Secret::new(p.value.as_bytes().to_vec());
        let bound = bind.then_some(p.key.as_str());
        seal_value(kms, key_id, &plaintext, context, bound)
            .await
            .map_err(|r| Reason::new(r.class, format!("{}: {}", p.key, r.detail)))
    }))
    .await
}

/// `open`, one indented item per line, `close`; `[]` / `{}` when empty.
fn json_block(open: char, close: char, items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|i| format!("  {i}")).collect();
    if items.is_empty() {
        format!("{open}{close}\n")
    } else {
        format!("{open}\n{}\n{close}\n", items.join(",\n"))
    }
}

/// Renders encoded pairs in `format`.
fn render<'a>(format: EncodeFormat, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let json = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::new();
    match format {
        EncodeFormat::Dotenv => {
            for (k, v) in pairs {
                dotenv::write_pair(&mut out, k, v);
            }
        }
        EncodeFormat::Ecs => {
            let items =
                pairs.map(|(k, v)| format!("{{\"name\": {}, \"value\": {}}}", json(k), json(v)));
            out = json_block('[', ']', items);
        }
        EncodeFormat::Json => {
            out = json_block(
                '{',
                '}',
                pairs.map(|(k, v)| format!("{}: {}", json(k), json(v))),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits() {
        assert!(check_plaintext(&[b'x'; 20 * 1024], Some("CERT")).is_ok());
        assert!(check_plaintext(&[b'x'; 200 * 1024], Some("CERT")).is_err());
        assert!(check_plaintext(b"", None).is_err());
        assert!(check_plaintext(b"a\0", None).is_err());
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn encoding_encrypts_small_values_seals_large_ones_and_never_decrypts() {
        use crate::source::kms::fake::FakeKms;
        let pair = |k: &str, v: String| Pair {
            key: k.into(),
            value: v,
            quoted: false,
        };
        let pairs = vec![
            pair("SMALL", "hunter2".into()),
            pair("LARGE", "x".repeat(KMS_MAX_PLAINTEXT + 1)),
            pair("REF", "ssm:/already/a/reference".into()),
            pair("SKIPPED", "stays".into()),
        ];
        let kms = FakeKms::default();
        let selected = |k: &str, v: &str| k != "SKIPPED" && !has_reference_prefix(v.as_bytes());
        let out = block_on(encode_pairs(
            &kms,
            "alias/k",
            &pairs,
            &selected,
            false,
            &Context::new(),
        ))
        .unwrap();
        // The fake encrypts by reversing the bytes.
        assert_eq!(out[0], format!("kms:{}", STANDARD.encode(b"2retnuh")));
        assert!(out[1].starts_with("kms:v1:"), "an envelope");
        assert_eq!(out[2], "ssm:/already/a/reference");
        assert_eq!(out[3], "stays");
        assert_eq!(kms.count("Encrypt"), 1);
        assert_eq!(kms.count("GenerateDataKey"), 1);
        assert_eq!(kms.count("Decrypt"), 0);

        // Bound: every value is a kms:v1: value bound to its key.
        let bound = block_on(encode_pairs(
            &kms,
            "alias/k",
            &pairs[..1],
            &selected,
            true,
            &Context::new(),
        ))
        .unwrap();
        let blob = STANDARD
            .decode(bound[0].strip_prefix("kms:v1:").unwrap())
            .unwrap();
        assert!(Sealed::decode(&blob).unwrap().bound);
    }

    #[test]
    fn formats() {
        let pairs = [("A", "kms:AQ=="), ("B", "x y")];
        assert_eq!(
            render(EncodeFormat::Dotenv, pairs.into_iter()),
            "A=kms:AQ==\nB=\"x y\"\n"
        );
        let ecs: serde_json::Value =
            serde_json::from_str(&render(EncodeFormat::Ecs, pairs.into_iter())).unwrap();
        assert_eq!(ecs[1]["name"], "B");
        assert_eq!(ecs[1]["value"], "x y");
        let obj: serde_json::Value =
            serde_json::from_str(&render(EncodeFormat::Json, pairs.into_iter())).unwrap();
        assert_eq!(obj["A"], "kms:AQ==");
        assert_eq!(render(EncodeFormat::Ecs, [].into_iter()), "[]\n");
    }
}
