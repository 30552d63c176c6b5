//! The original kms-env's file workflow: `init`, `add`, `show`, and the file I/O they need
//! (read, atomic replace). The format and cipher are in `crate::envfile`.
//!
//! Every network call happens before anything is written, and a file is replaced only by
//! renaming a complete, synced temporary file next to it: a failure or a kill never leaves a
//! truncated or half-encrypted file.

use super::{read_text, read_value, resolve_plan, with_kms, write_stdout};
use crate::cli::{AddArgs, Global, InitArgs, ShowArgs};
use crate::envfile::{EnvFile, REGION_VAR, crypto, valid_key};
use crate::error::{Class, Error, Reason};
use crate::plan::{DATA_KEY_VAR, Plan, Value};
use crate::reference::{SECURE_PREFIX, decode_blob};
use crate::resolve::Kms;
use crate::sealed::Context;
use crate::secret::Secret;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tracing::warn;

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

fn data_error(class: Class, detail: String) -> Error {
    Error::Value(Reason::new(class, detail))
}

/// Reads and parses `path`; a missing file is empty when `missing_ok`.
fn read_file(path: &Path, missing_ok: bool) -> Result<EnvFile, Error> {
    let missing = matches!(std::fs::symlink_metadata(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let text = if missing_ok && missing {
        String::new()
    } else {
        read_text(path)?
    };
    EnvFile::parse(&text)
        .map_err(|e| data_error(Class::Malformed, format!("{}: {e}", path.display())))
}

/// Replaces `path` with `contents` atomically: a synced temporary file in the same directory,
/// renamed over it. An existing file keeps its mode; a new one gets 0600.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let what = || format!("cannot write {}", path.display());
    let mode = match std::fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => 0o600,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kms-env-")
        .tempfile_in(dir)
        .map_err(io_error(what()))?;
    tmp.write_all(contents)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_error(what()))?;
    tmp.persist(path).map_err(|e| io_error(what())(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The decoded `KMS_DATA_KEY` blob of a file.
fn data_key_blob(file: &EnvFile, path: &Path) -> Result<Vec<u8>, Error> {
    let encoded = file.get(DATA_KEY_VAR).ok_or_else(|| {
        data_error(
            Class::Config,
            format!(
                "{} has no {DATA_KEY_VAR}; run `kms-env init KEY {}` first",
                path.display(),
                path.display()
            ),
        )
    })?;
    decode_blob(encoded.as_bytes()).map_err(|r| {
        data_error(
            r.class,
            format!("{}: {DATA_KEY_VAR}: {}", path.display(), r.detail),
        )
    })
}

/// The region in a KMS key ARN (`arn:aws:kms:<region>:<account>:key/<id>`).
fn region_of_key_arn(arn: &str) -> Option<&str> {
    let mut parts = arn.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region)) if !region.is_empty() => Some(region),
        _ => None,
    }
}

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
    let (new, old) = with_kms(global, fallback.as_deref(), async |kms, deadline| {
        let new = kms.generate_data_key(&args.key_id, &Context::new()).await?;
        let old = match &old_blob {
            Some(blob) => Some(kms.decrypt(blob, &Context::new(), deadline).await.map_err(
                |r| Reason::new(r.class, format!("the current {DATA_KEY_VAR}: {}", r.detail)),
            )?),
            None => None,
        };
        Ok((new, old))
    })?;
    let region = region_of_key_arn(&new.key_arn)
        .map(str::to_owned)
        .ok_or_else(|| {
            data_error(
                Class::ServiceError,
                "KMS returned a key id that is not an ARN".into(),
            )
        })?;
    let new_key = crypto::data_key(new.plaintext.expose()).map_err(Error::Value)?;
    if let Some(old) = old {
        // Rotation: every secure: value moves to the new data key.
        let old_key = crypto::data_key(old.secret.expose()).map_err(Error::Value)?;
        file.map_values(|key, value| {
            let Some(body) = value.strip_prefix(SECURE_PREFIX) else {
                return Ok(None);
            };
            let plain = crypto::decrypt(body, &old_key).map_err(|r| {
                data_error(
                    r.class,
                    format!("{}: {key}: {}", args.file.display(), r.detail),
                )
            })?;
            let sealed = crypto::encrypt(plain.expose(), &new_key).map_err(Error::Value)?;
            Ok(Some(format!("{SECURE_PREFIX}{sealed}")))
        })?;
    }
    file.set_header(STANDARD.encode(&new.blob), region);
    replace_file(&args.file, file.render().as_bytes())
}

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
    }
    let mut file = read_file(&args.file, false)?;
    let blob = data_key_blob(&file, &args.file)?;
    let fallback = file.get(REGION_VAR).map(str::to_owned);
    let key = with_kms(global, fallback.as_deref(), async |kms, deadline| {
        kms.decrypt(&blob, &Context::new(), deadline)
            .await
            .map_err(|r| Reason::new(r.class, format!("{DATA_KEY_VAR}: {}", r.detail)))
    })?;
    let key = crypto::data_key(key.secret.expose()).map_err(Error::Value)?;
    for (name, value) in entries {
        let sealed = crypto::encrypt(value.expose(), &key).map_err(Error::Value)?;
        file.set(&name, format!("{SECURE_PREFIX}{sealed}"));
    }
    replace_file(&args.file, file.render().as_bytes())
}

/// `kms-env show FILE`: the file with every reference resolved, on stdout.
pub fn show(global: &Global, args: ShowArgs) -> Result<(), Error> {
    let mut file = read_file(&args.file, false)?;
    warn!("show prints secrets in plaintext; use it for debugging only");
    let pairs: Vec<(OsString, OsString)> = file
        .pairs()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    let plan = Plan::new(pairs, &super::options(global, true));
    let fallback = file.get(REGION_VAR).map(str::to_owned);
    let vars = resolve_plan(global, plan, fallback.as_deref())?;
    let mut resolved: HashMap<String, Secret> = HashMap::new();
    for (name, value) in vars {
        if let Value::Secret(s) = value {
            resolved.insert(name.to_string_lossy().into_owned(), s);
        }
    }
    file.map_values::<Error>(|key, _| {
        Ok(resolved
            .get(key)
            .map(|s| String::from_utf8_lossy(s.expose()).into_owned()))
    })?;
    let text = Secret::new(file.render().into_bytes());
    write_stdout(text.expose())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_arn_regions() {
        assert_eq!(
            region_of_key_arn("arn:aws:kms:eu-west-1:111122223333:key/abc"),
            Some("eu-west-1")
        );
        assert_eq!(region_of_key_arn("abc"), None);
    }
}
