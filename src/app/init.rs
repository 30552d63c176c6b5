//! `kms-env init KEY FILE`: start an env file of the original kms-env with a new data key, or
//! rotate an existing file's data key (every `secure:` value moves to the new one). Every KMS
//! call happens before the file is replaced (atomically, see `files`).

use super::files::{data_key_blob, read_file, replace_file};
use super::{Then, with_aws};
use crate::cli::{Global, InitArgs};
use crate::envfile::{EnvFile, REGION_VAR, crypto};
use crate::error::{Class, Error, Reason};
use crate::source::kms::{AwsKms, DATA_KEY_VAR, Kms, SECURE_PREFIX};
use crate::value::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::path::Path;
use tokio::time::Instant;

/// `kms-env init KEY FILE`.
pub fn init(global: &Global, args: InitArgs) -> Result<(), Error> {
    let mut file = read_file(&args.file, true)?;
    let has_secure = file.pairs().any(|(_, v)| v.starts_with(SECURE_PREFIX));
    let old_blob = if has_secure {
        Some(data_key_blob(&file, &args.file)?)
    } else {
        None
    };
    let fallback = file.get(REGION_VAR).map(str::to_owned);
    with_aws(
        global,
        fallback.as_deref(),
        Then::Ends,
        async |config, deadline| {
            let kms = AwsKms::new(config);
            rekey(
                &kms,
                &mut file,
                &args.key_id,
                old_blob.as_deref(),
                &args.file,
                deadline,
            )
            .await
        },
    )
    .map_err(Error::Value)?;
    replace_file(&args.file, file.render().as_bytes())
}

/// The region in a KMS key ARN (`arn:aws:kms:<region>:<account>:key/<id>`).
fn region_of_key_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// Gives `file` a new data key under `key_id` (`GenerateDataKey`). With `old_blob`, the file's
/// current data key, every `secure:` value is decrypted with it and re-encrypted under the new
/// one (legacy values come out in the current format). `path` names the file in messages.
async fn rekey(
    kms: &impl Kms,
    file: &mut EnvFile,
    key_id: &str,
    old_blob: Option<&[u8]>,
    path: &Path,
    deadline: Instant,
) -> Result<(), Reason> {
    let new = kms.generate_data_key(key_id, &Context::new()).await?;
    let old =
        match old_blob {
            Some(blob) => Some(kms.decrypt(blob, &Context::new(), deadline).await.map_err(
                |r| Reason::new(r.class, format!("the current {DATA_KEY_VAR}: {}", r.detail)),
            )?),
            None => None,
        };
    let region = region_of_key_arn(&new.key_arn).ok_or_else(|| {
        Reason::new(
            Class::ServiceError,
            "KMS returned a key id that is not an ARN",
        )
    })?;
    let new_key = crypto::data_key(new.plaintext.expose())?;
    if let Some(old) = old {
        let old_key = crypto::data_key(old.secret.expose())?;
        file.map_values(|key, value| {
            let Some(body) = value.strip_prefix(SECURE_PREFIX) else {
                return Ok(None);
            };
            let plain = crypto::decrypt(body, &old_key).map_err(|r| {
                Reason::new(r.class, format!("{}: {key}: {}", path.display(), r.detail))
            })?;
            let sealed = crypto::encrypt(plain.expose(), &new_key)?;
            Ok(Some(format!("{SECURE_PREFIX}{sealed}")))
        })?;
    }
    file.set_header(STANDARD.encode(&new.blob), region.to_owned());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kms::fake::FakeKms;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn key_arn_regions() {
        assert_eq!(
            region_of_key_arn("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_key_arn("abc"), None);
    }

    #[test]
    fn a_new_file_gets_a_data_key_and_the_key_region() {
        let kms = FakeKms::default();
        let mut file = EnvFile::default();
        block_on(rekey(
            &kms,
            &mut file,
            "alias/k",
            None,
            Path::new("f"),
            Instant::now(),
        ))
        .unwrap();
        assert_eq!(*kms.calls.borrow(), ["GenerateDataKey"]);
        let blob: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(file.get(DATA_KEY_VAR), Some(STANDARD.encode(blob).as_str()));
        assert_eq!(file.get(REGION_VAR), Some("us-east-1"));
    }

    #[test]
    fn rotation_moves_every_value_to_the_new_data_key() {
        // The fake decrypts a blob to its reverse: this blob holds the old data key.
        let old_key: Vec<u8> = (100u8..132).collect();
        let old_blob: Vec<u8> = old_key.iter().rev().copied().collect();
        let old = crypto::data_key(&old_key).unwrap();
        // Long enough that the old key's keystream over the new ciphertext (random bytes) is
        // never valid UTF-8 by chance (a 9-byte value was, about once in 300 runs).
        let plaintext = b"rotate me: a value long enough to fail UTF-8 under a wrong key!!";
        let text = format!(
            "{DATA_KEY_VAR}={}\nAWS_REGION=eu-west-1\nA=secure:{}\nB=plain\n",
            STANDARD.encode(&old_blob),
            crypto::encrypt(plaintext, &old).unwrap()
        );
        let mut file = EnvFile::parse(&text).unwrap();
        let kms = FakeKms::default();
        block_on(rekey(
            &kms,
            &mut file,
            "alias/k",
            Some(&old_blob),
            Path::new("f"),
            Instant::now(),
        ))
        .unwrap();
        assert_eq!(kms.count("GenerateDataKey"), 1);
        assert_eq!(kms.count("Decrypt"), 1);
        assert_eq!(kms.count("Encrypt"), 0);
        let new = crypto::data_key(&(0u8..32).collect::<Vec<u8>>()).unwrap();
        let a = file.get("A").unwrap().strip_prefix(SECURE_PREFIX).unwrap();
        assert_eq!(crypto::decrypt(a, &new).unwrap().expose(), plaintext);
        assert!(crypto::decrypt(a, &old).is_err_and(|r| r.class == Class::BadCiphertext));
        assert_eq!(file.get("B"), Some("plain"));
        assert_eq!(file.get(REGION_VAR), Some("us-east-1"));
    }
}
