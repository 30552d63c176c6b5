//! `*_FILE` delivery for `exec` (README "Secrets as files"): the plaintexts of `*_FILE`
//! variables are written to a fresh 0700 directory in a memory-backed file system, one 0400
//! file each, fully written and synced before `execve`; the variables then hold the files'
//! paths. On any failure everything written is removed and the application is not started.

use super::files::io_error;
use crate::error::{Class, Error, Reason};
use crate::value::{FILE_SUFFIX, Value, Vars};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to a new file `path` (never an existing one), mode 0400, synced, owned by
/// `owner` when given.
pub fn write_secret_file(
    path: &Path,
    bytes: &[u8],
    owner: Option<(u32, Option<u32>)>,
) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), gid),
        None => Ok(()),
    }
}

/// Whether `dir` is on a memory-backed file system (tmpfs, ramfs).
fn memory_backed(dir: &Path) -> bool {
    use nix::sys::statfs::{FsType, TMPFS_MAGIC, statfs};
    /// ramfs, from linux/magic.h (nix names tmpfs only).
    const RAMFS_MAGIC: FsType = FsType(0x8584_58f6);
    statfs(dir).is_ok_and(|s| {
        let t = s.filesystem_type();
        t == TMPFS_MAGIC || t == RAMFS_MAGIC
    })
}

/// The directory to make the files' directory in: the one named, else `/dev/shm` or
/// `$XDG_RUNTIME_DIR` when memory-backed; never a disk-backed one the user did not name.
fn base_dir(named: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(dir) = named {
        return std::path::absolute(dir).map_err(io_error(format!(
            "cannot use --files-dir {}",
            dir.display()
        )));
    }
    let candidates = [
        Some(PathBuf::from("/dev/shm")),
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|d| d.is_absolute() && memory_backed(d))
        .ok_or_else(|| {
            Error::Value(
                Reason::new(
                    Class::Config,
                    "no memory-backed directory for the *_FILE secrets: /dev/shm is not a tmpfs \
                     here and XDG_RUNTIME_DIR is unset or not memory-backed",
                )
                .with_hint(
                    "give --files-dir DIR or KMS_ENV_FILES_DIR (a tmpfs mount: a memory emptyDir \
                     on Kubernetes, a tmpfs mount in the ECS task definition)",
                ),
            )
        })
}

/// Writes every `Value::File` of `vars` to its file and replaces it by the file's path. The
/// returned directory removes itself when dropped: keep it until `execve` (which makes it
/// outlive the wrapper) or, with `--init`, until the child has exited.
pub fn deliver(
    vars: Vars,
    named: Option<&Path>,
    owner: Option<(u32, Option<u32>)>,
) -> Result<(Vars, Option<tempfile::TempDir>), Error> {
    if !vars.iter().any(|(_, v)| matches!(v, Value::File(_))) {
        return Ok((vars, None));
    }
    let base = base_dir(named)?;
    let what = || format!("cannot write the *_FILE secrets in {}", base.display());
    let dir = tempfile::Builder::new()
        .prefix("kms-env.")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(io_error(what()))?;
    let chown = |path: &Path| match owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), gid),
        None => Ok(()),
    };
    chown(dir.path()).map_err(io_error(what()))?;
    let mut out = Vec::with_capacity(vars.len());
    for (name, value) in vars {
        let Value::File(secret) = value else {
            out.push((name, value));
            continue;
        };
        let stem = &name.as_bytes()[..name.len() - FILE_SUFFIX.len()];
        if stem.contains(&b'/') || stem == b"." || stem == b".." {
            return Err(Error::Value(Reason::new(
                Class::Malformed,
                format!(
                    "{}: the name without _FILE cannot be a file name",
                    crate::error::printable(&name.to_string_lossy())
                ),
            )));
        }
        let path = dir.path().join(std::ffi::OsStr::from_bytes(stem));
        write_secret_file(&path, secret.expose(), owner).map_err(io_error(what()))?;
        out.push((name, Value::Plain(OsString::from(path))));
    }
    if let Ok(d) = std::fs::File::open(dir.path()) {
        let _ = d.sync_all();
    }
    Ok((out, Some(dir)))
}
