//! `kms-env check`: resolve every reference of the environment or of a file without printing
//! any value; print a table (or the minimal IAM policy) and exit with the taxonomy of README "Exit codes".

use super::files::read_dotenv;
use super::{Then, lookups, options, write_stdout};
use crate::cli::{CheckArgs, Global};
use crate::envfile::REGION_VAR;
use crate::error::{Error, Failure};
use crate::plan::Plan;
use crate::reference::has_reference_prefix;
use crate::report;
use std::ffi::OsString;
use tracing::warn;

/// `kms-env check [--env-file FILE] [--iam-policy]`.
pub fn check(global: &Global, args: CheckArgs) -> Result<(), Error> {
    let (vars, fallback): (Vec<(OsString, OsString)>, Option<String>) = match &args.env_file {
        Some(path) => {
            let pairs = read_dotenv(path)?;
            for p in pairs
                .iter()
                .filter(|p| p.quoted && has_reference_prefix(p.value.as_bytes()))
            {
                warn!(
                    "{}: the value of {} is in quotes; docker --env-file and ECS environmentFiles \
                     pass quotes on literally, so there it would not be a reference. Remove them",
                    path.display(),
                    p.key
                );
            }
            let region = pairs
                .iter()
                .find(|p| p.key == REGION_VAR)
                .map(|p| p.value.clone());
            let vars = pairs
                .into_iter()
                .map(|p| (p.key.into(), p.value.into()))
                .collect();
            (vars, region)
        }
        None => (std::env::vars_os().collect(), None),
    };
    let plan = Plan::new(vars, &options(global, false, &args.load));
    let outcomes = lookups(global, &plan, fallback.as_deref(), Then::Ends);
    let rows = plan.report(&outcomes);
    drop(outcomes);
    if args.iam_policy {
        let policy = report::iam_policy(&rows);
        let text = serde_json::to_string_pretty(&policy).unwrap_or_default();
        write_stdout(format!("{text}\n").as_bytes())?;
    } else {
        write_stdout(report::table(&rows).as_bytes())?;
    }
    let failures: Vec<Failure> = rows
        .into_iter()
        .filter_map(|r| {
            r.status.err().map(|reason| Failure {
                variable: r.variable,
                kind: r.kind,
                reason,
            })
        })
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(Error::Check(failures))
    }
}
