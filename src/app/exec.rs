//! `kms-env exec`: resolve the process environment, then replace this process with the
//! application (or supervise it with `--init`).

use super::{Then, options, resolve_plan};
use crate::cli::{ExecArgs, Global};
use crate::error::Error;
use crate::plan::Plan;
use crate::supervise::Stop;
use tracing::debug;

/// `kms-env exec [--] COMMAND [ARGS...]`; only returns on failure, or with `--init` with the
/// application's exit code.
pub fn exec(global: &Global, args: ExecArgs) -> Result<u8, Error> {
    if args.refresh.is_some() && !args.init {
        return Err(Error::Usage(
            "--refresh needs --init: kms-env must stay as the application's parent to notice changes"
                .into(),
        ));
    }
    let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
    let plan = Plan::new(
        env.clone(),
        &options(global, args.keep_references, &args.load),
    );
    debug!("{} variables hold references", plan.reference_count());
    // With `--init` this process stays as the application's parent.
    let then = if args.init { Then::GoesOn } else { Then::Ends };
    let vars = resolve_plan(global, plan, None, then)?;
    if let Some(interval) = args.refresh {
        let current = super::refresh::digests(&vars);
        let (vars, files) =
            super::files_dir::deliver(vars, args.files_dir.as_deref(), args.files_owner)?;
        let launch = crate::exec::prepare(&args.command, vars)?;
        let mut rounds = super::refresh::Rounds {
            global,
            args: &args,
            env,
            current,
            files_dir: files.as_ref().map(|d| d.path().to_owned()),
            interval,
        };
        let stop = Stop {
            signal: args.stop_signal,
            grace: args.grace,
        };
        return crate::supervise::run(launch, files, Some((&mut rounds, stop)));
    }
    let (vars, files) =
        super::files_dir::deliver(vars, args.files_dir.as_deref(), args.files_owner)?;
    // `files` removes the directory when dropped: after a failed `execve`, or with `--init` once
    // the child has exited; a successful `execve` keeps it for the application.
    let code = crate::exec::exec(&args.command, vars, args.init);
    drop(files);
    code
}
