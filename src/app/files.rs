//! The file I/O the commands share: reading text, dotenv and env files, and replacing a file
//! atomically. A file is replaced only by renaming a complete, synced temporary file next to
//! it: a failure or a kill never leaves a truncated or half-encrypted file.

use crate::envfile::EnvFile;
use crate::error::{Class, Error, Reason};
use crate::source::kms::{DATA_KEY_VAR, decode_blob};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The largest env file read: far above anything an environment can hold (`ARG_MAX`, 2 MiB by
/// default), so `check --env-file /dev/zero` ends with an error, not with the memory.
pub const MAX_ENV_FILE: u64 = 8 * 1024 * 1024;

/// Reads a UTF-8 text file of at most [`MAX_ENV_FILE`] bytes; a missing one is `NotFound` (66).
pub fn read_text(path: &Path) -> Result<String, Error> {
    let read = |path: &Path| -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)?
            .take(MAX_ENV_FILE + 1)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    let bytes = read(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::Value(Reason::new(
                Class::NotFound,
                format!("{} does not exist", path.display()),
            ))
        } else {
            Error::Io {
                what: format!("cannot read {}", path.display()),
                source: e,
            }
        }
    })?;
    if bytes.len() as u64 > MAX_ENV_FILE {
        return Err(Error::Value(Reason::new(
            Class::Malformed,
            format!(
                "{} is larger than 8 MiB; no env file is (an environment holds at most ARG_MAX, 2 MiB by default)",
                path.display()
            ),
        )));
    }
    String::from_utf8(bytes).map_err(|_| {
        Error::Value(Reason::new(
            Class::Malformed,
            format!("{} is not UTF-8 text", path.display()),
        ))
    })
}

/// Reads and parses a dotenv file.
pub fn read_dotenv(path: &Path) -> Result<Vec<crate::dotenv::Pair>, Error> {
    crate::dotenv::parse(&read_text(path)?).map_err(|e| {
        Error::Value(Reason::new(
            Class::Malformed,
            format!("{}: {e}", path.display()),
        ))
    })
}

pub fn io_error(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { what, source }
}

pub fn data_error(class: Class, detail: String) -> Error {
    Error::Value(Reason::new(class, detail))
}

/// Reads and parses `path`; a missing file is empty when `missing_ok`.
pub fn read_file(path: &Path, missing_ok: bool) -> Result<EnvFile, Error> {
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

/// Reads and parses the env file `path`, refusing one with a key given twice (which line would
/// `exec` use?).
pub fn read_unique_file(path: &Path) -> Result<EnvFile, Error> {
    let file = read_file(path, false)?;
    if let Some(key) = file.duplicate_key() {
        return Err(data_error(
            Class::Malformed,
            format!(
                "{}: {key} is given more than once; keep one",
                path.display()
            ),
        ));
    }
    Ok(file)
}

/// Replaces `path` with `contents` atomically: a synced temporary file in the same directory,
/// renamed over it. An existing file keeps its mode, owner and group; a new one gets 0600; a
/// symlink is written through to its target.
pub fn replace_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    // Through a symlink to the file it names: the link stays a link.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let path = real.as_path();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let what = || format!("cannot write {}", path.display());
    let existing = std::fs::metadata(path).ok();
    let mode = existing
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let mut tmp = tempfile::Builder::new()
        .prefix(".kms-env-")
        .tempfile_in(dir)
        .map_err(io_error(what()))?;
    tmp.write_all(contents)
        .and_then(|()| match &existing {
            // The replaced file's owner and group stay (root editing another user's file must
            // not take it over); if they cannot be kept, nothing is replaced.
            Some(m) => std::os::unix::fs::fchown(tmp.as_file(), Some(m.uid()), Some(m.gid())),
            None => Ok(()),
        })
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
pub fn data_key_blob(file: &EnvFile, path: &Path) -> Result<Vec<u8>, Error> {
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
