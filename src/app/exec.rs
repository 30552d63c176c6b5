//! `kms-env exec`: resolve the process environment, then replace this process with the
//! application (or supervise it with `--init`).

use super::{options, resolve_plan};
use crate::cli::{ExecArgs, Global};
use crate::error::Error;
use crate::plan::Plan;
use tracing::debug;

/// `kms-env exec [--] COMMAND [ARGS...]`; only returns on failure, or with `--init` with the
/// application's exit code.
pub fn exec(global: &Global, args: ExecArgs) -> Result<u8, Error> {
    let plan = Plan::new(
        std::env::vars_os(),
        &options(global, args.keep_references, &args.load),
    );
    debug!("{} variables hold references", plan.reference_count());
    let vars = resolve_plan(global, plan, None)?;
    let (vars, files) =
        super::files_dir::deliver(vars, args.files_dir.as_deref(), args.files_owner)?;
    // `files` removes the directory when dropped: after a failed `execve`, or with `--init` once
    // the child has exited; a successful `execve` keeps it for the application.
    let code = crate::exec::exec(&args.command, vars, args.init);
    drop(files);
    code
}
