//! `kms-env add FILE K=V...`: encrypt values into an env file of the original kms-env under its
//! data key (one KMS `Decrypt`), then replace the file atomically (see `files`).

use super::files::{data_error, data_key_blob, read_file, replace_file};
use super::{Then, read_value, with_aws};
use crate::cli::{AddArgs, Global};
use crate::envfile::{REGION_VAR, crypto, valid_key};
use crate::error::{Class, Error, Reason};
use crate::secret::Secret;
use crate::source::kms::{AwsKms, DATA_KEY_VAR, Kms, SECURE_PREFIX};
use crate::value::{Context, MAX_ENV_STRING};

/// One `KEY=VALUE` (or, with `--stdin`, `KEY`) entry of `add`.
fn parse_entries(args: &AddArgs) -> Result<Vec<(String, Secret)>, Error> {
    let usage = |m: String| Err(Error::Usage(m));
    if args.stdin {
        let [key] = &args.entries[..] else {
            return usage("--stdin takes exactly one KEY".into());
        };
        if !valid_key(key) {
            return usage(format!(
                "{key:?} is not a valid name (letters, digits, '_')"
            ));
        }
        let value = Secret::new(read_value(None)?);
        return Ok(vec![(key.clone(), value)]);
    }
    let mut out = Vec::new();
    for entry in &args.entries {
        let Some((key, value)) = entry.split_once('=') else {
            return usage("entries are KEY=VALUE (or use --stdin KEY)".into());
        };
        if !valid_key(key) {
            return usage(format!(
                "{key:?} is not a valid name (letters, digits, '_')"
            ));
        }
        out.push((key.to_owned(), Secret::new(value.as_bytes().to_vec())));
    }
    Ok(out)
}

/// `kms-env add FILE K=V...`.
pub fn add(global: &Global, args: AddArgs) -> Result<(), Error> {
    let entries = parse_entries(&args)?;
    for (key, value) in &entries {
        if value.contains_nul() || std::str::from_utf8(value.expose()).is_err() {
            return Err(data_error(
                Class::Malformed,
                format!("{key}: the env-file format holds UTF-8 text without NUL only"),
            ));
        }
        // NAME=secure:<32 hex of IV>$<2 hex per byte> and its NUL: the limit `encrypt` keeps.
        let line = key.len() + 1 + SECURE_PREFIX.len() + 33 + 2 * value.expose().len() + 1;
        if line > MAX_ENV_STRING {
            return Err(data_error(
                Class::Malformed,
                format!(
                    "{key}: the value is {} bytes; encrypted it would not fit in one environment \
                     variable (Linux allows 128 KiB per NAME=VALUE string). Store it in S3 or split it",
                    value.expose().len()
                ),
            ));
        }
    }
    let mut file = read_file(&args.file, false)?;
    let blob = data_key_blob(&file, &args.file)?;
    let fallback = file.get(REGION_VAR).map(str::to_owned);
    let key = with_aws(
        global,
        fallback.as_deref(),
        Then::Ends,
        async |config, deadline| {
            AwsKms::new(config)
                .decrypt(&blob, &Context::new(), deadline)
                .await
                .map_err(|r| Reason::new(r.class, format!("{DATA_KEY_VAR}: {}", r.detail)))
        },
    )
    .map_err(Error::Value)?;
    let key = crypto::data_key(key.secret.expose()).map_err(Error::Value)?;
    for (name, value) in entries {
        let sealed = crypto::encrypt(value.expose(), &key).map_err(Error::Value)?;
        file.set(&name, format!("{SECURE_PREFIX}{sealed}"));
    }
    replace_file(&args.file, file.render().as_bytes())
}
