//! `kms-env migrate FILE`: a way off the original kms-env's format, whose `secure:` values carry
//! no integrity check. Every `secure:` value is decrypted with the file's data key and encrypted
//! again with KMS (`kms:`, or `kms:v1:` when bound or over 4 KiB, as `encrypt` does); the new
//! file is printed (no `KMS_DATA_KEY` in it), never a plaintext, and the file is not changed.

use super::encrypt::{check_plaintext, seal_value};
use super::files::{data_key_blob, read_unique_file};
use super::{Then, with_aws, write_stdout};
use crate::cli::{Global, MigrateArgs};
use crate::envfile::{REGION_VAR, crypto};
use crate::error::{Class, Error, Reason};
use crate::secret::Secret;
use crate::source::kms::{AwsKms, DATA_KEY_VAR, Kms, SECURE_PREFIX};
use crate::value::Context;
use futures_util::future::try_join_all;
use std::collections::HashMap;

/// `kms-env migrate FILE [--key-id KEY] [--bind-name]`.
pub fn migrate(global: &Global, args: &MigrateArgs) -> Result<(), Error> {
    let mut file = read_unique_file(&args.file)?;
    let blob = data_key_blob(&file, &args.file)?;
    let fallback = file.get(REGION_VAR).map(str::to_owned);
    let secure: Vec<(String, String)> = file
        .pairs()
        .filter_map(|(k, v)| {
            v.strip_prefix(SECURE_PREFIX)
                .map(|body| (k.to_owned(), body.to_owned()))
        })
        .collect();
    let context = global.context();
    let path = args.file.display().to_string();
    let sealed: HashMap<String, String> = with_aws(
        global,
        fallback.as_deref(),
        Then::Ends,
        async |config, deadline| {
            let kms = AwsKms::new(config);
            let dk = kms
                .decrypt(&blob, &Context::new(), deadline)
                .await
                .map_err(|r| Reason::new(r.class, format!("{DATA_KEY_VAR}: {}", r.detail)))?;
            let key_id = args.key_id.clone().or(dk.source.clone()).ok_or_else(|| {
                Reason::new(
                    Class::Config,
                    "KMS did not say which key holds the data key; give --key-id",
                )
            })?;
            let data_key = crypto::data_key(dk.secret.expose())?;
            let plaintexts: Vec<(String, Secret)> = secure
                .iter()
                .map(|(k, body)| {
                    crypto::decrypt(body, &data_key)
                        .map(|p| (k.clone(), p))
                        .map_err(|r| Reason::new(r.class, format!("{path}: {k}: {}", r.detail)))
                })
                .collect::<Result<_, _>>()?;
            let values = try_join_all(plaintexts.iter().map(|(k, p)| {
                let (kms, key_id, context) = (&kms, &key_id, &context);
                async move {
                    // An empty value needs no secret (and KMS cannot encrypt nothing).
                    if p.expose().is_empty() {
                        return Ok(String::new());
                    }
                    let bound = args.bind_name.then_some(k.as_str());
                    check_plaintext(p.expose(), Some(k))?;
                    seal_value(kms, key_id, p, context, bound)
                        .await
                        .map_err(|r| Reason::new(r.class, format!("{k}: {}", r.detail)))
                }
            }))
            .await?;
            Ok(plaintexts.into_iter().map(|(k, _)| k).zip(values).collect())
        },
    )
    .map_err(Error::Value)?;
    file.map_values::<Error>(|key, value| {
        Ok(value
            .starts_with(SECURE_PREFIX)
            .then(|| sealed.get(key).cloned())
            .flatten())
    })?;
    file.remove(DATA_KEY_VAR);
    write_stdout(file.render().as_bytes())
}
