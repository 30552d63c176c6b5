//! `kms-env export`: resolve the process environment and print it for `eval`, Docker's
//! `--env-file` or JSON tools (the formats are in `crate::export`).

use super::{Then, options, resolve_plan, write_stdout};
use crate::cli::{ExportArgs, Global};
use crate::error::Error;
use crate::plan::Plan;
use crate::value::{Value, Vars};
use tracing::warn;

/// `kms-env export [--format shell|dotenv|json] [--all]`.
pub fn export(global: &Global, args: ExportArgs) -> Result<(), Error> {
    let plan = Plan::new(
        std::env::vars_os(),
        &options(global, args.keep_references, &args.load),
    );
    let vars = resolve_plan(global, plan, None, Then::Ends)?;
    let selected: Vars = if args.all {
        vars
    } else {
        vars.into_iter()
            .filter(|(_, v)| matches!(v, Value::Secret(_)))
            .collect()
    };
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        warn!("export prints secrets in plaintext to a terminal");
    }
    let (text, skipped) = crate::export::render(&selected, args.format).map_err(Error::Value)?;
    for name in skipped {
        warn!("{name} is left out: the format cannot hold it");
    }
    write_stdout(text.expose())
}
