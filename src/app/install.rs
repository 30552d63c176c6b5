//! `kms-env install DIR`: copy the running executable into a directory, so that a `FROM
//! scratch` kms-env image can be a Kubernetes initContainer that fills an `emptyDir` for the
//! application container (README "Kubernetes").

use super::files::io_error;
use crate::cli::InstallArgs;
use crate::error::Error;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

/// `kms-env install DIR`: `DIR/kms-env`, mode 0755, written to a temporary file in `DIR`, synced
/// and renamed into place, so an application container never sees half a binary.
pub fn install(args: &InstallArgs) -> Result<(), Error> {
    let target = args.dir.join("kms-env");
    let what = || format!("cannot install into {}", args.dir.display());
    let exe = std::env::current_exe()
        .and_then(std::fs::read)
        .map_err(io_error("cannot read the running executable".to_owned()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".kms-env-")
        .tempfile_in(&args.dir)
        .map_err(io_error(what()))?;
    tmp.write_all(&exe)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o755))
        })
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_error(what()))?;
    tmp.persist(&target)
        .map_err(|e| io_error(what())(e.error))?;
    Ok(())
}
