//! `exec --init --refresh`: notice changed secrets while the application runs (README
//! "Rotation"). Every interval (±10 % jitter) the same planner and resolver run again, under the
//! same deadline, and the results are compared with what the application was started with by
//! SHA-256 digests (no second copy of a plaintext is kept). A round that fails leaves the
//! application alone; a change restarts it, stops it, or rewrites its `*_FILE` files in place
//! and signals it.

use super::{Then, files_dir, lookups_now, options};
use crate::aws::jitter;
use crate::cli::{ExecArgs, Global, OnChange};
use crate::error::printable;
use crate::exec::prepare;
use crate::plan::Plan;
use crate::supervise::{Change, Refresher};
use crate::value::{FILE_SUFFIX, Value, Vars};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;
use tracing::{info, warn};

/// Each variable's digest, and whether it is a `*_FILE` one.
type Digests = BTreeMap<OsString, ([u8; 32], bool)>;

/// The digests of `vars`.
pub fn digests(vars: &Vars) -> Digests {
    vars.iter()
        .map(|(name, value)| {
            let digest: [u8; 32] = Sha256::digest(value.bytes()).into();
            (name.clone(), (digest, matches!(value, Value::File(_))))
        })
        .collect()
}

/// The refresh rounds of one supervised application.
pub struct Rounds<'a> {
    /// Options every command takes.
    pub global: &'a Global,
    /// The `exec` command line.
    pub args: &'a ExecArgs,
    /// The wrapper's own environment, as the first start saw it.
    pub env: Vec<(OsString, OsString)>,
    /// What the running application was started with.
    pub current: Digests,
    /// Its `*_FILE` directory, if any.
    pub files_dir: Option<PathBuf>,
    /// `--refresh`.
    pub interval: Duration,
}

impl Rounds<'_> {
    /// A new launch with `vars` and its files; `None` (logged) when it cannot be made.
    fn relaunch(&mut self, vars: Vars) -> Change {
        let made = files_dir::deliver(vars, self.args.files_dir.as_deref(), self.args.files_owner)
            .and_then(|(vars, files)| Ok((prepare(&self.args.command, vars)?, files)));
        match made {
            Ok((launch, files)) => {
                self.files_dir = files.as_ref().map(|d| d.path().to_owned());
                Change::Restart(launch, files)
            }
            Err(e) => {
                warn!("refresh: cannot start the application again ({e}); it keeps running");
                Change::Nothing
            }
        }
    }

    /// Rewrites the changed `*_FILE` files in place: a new file in the same directory, renamed
    /// over the old one, so the path never changes. False when one could not be.
    fn rewrite(&self, vars: &Vars, changed: &[OsString]) -> bool {
        let Some(dir) = &self.files_dir else {
            return false;
        };
        for (name, value) in vars {
            let Value::File(secret) = value else { continue };
            if !changed.contains(name) {
                continue;
            }
            let stem =
                std::ffi::OsStr::from_bytes(&name.as_bytes()[..name.len() - FILE_SUFFIX.len()]);
            let target = dir.join(stem);
            let tmp = dir.join(format!(".{}.new", stem.to_string_lossy()));
            let written =
                files_dir::write_secret_file(&tmp, secret.expose(), self.args.files_owner)
                    .and_then(|()| std::fs::rename(&tmp, &target));
            if let Err(e) = written {
                let _ = std::fs::remove_file(&tmp);
                warn!(
                    "refresh: cannot rewrite the file of {}: {e}",
                    printable(&name.to_string_lossy())
                );
                return false;
            }
        }
        true
    }
}

impl Refresher for Rounds<'_> {
    fn next(&mut self) -> Duration {
        self.interval.mul_f64(0.9 + 0.2 * jitter())
    }

    fn round(&mut self) -> Change {
        let started = std::time::Instant::now();
        let plan = Plan::new(
            self.env.clone(),
            &options(self.global, self.args.keep_references, &self.args.load),
        );
        let count = plan.reference_count();
        let outcomes = lookups_now(self.global, &plan, None, Then::GoesOn);
        let vars = match plan.apply(outcomes) {
            Ok(vars) => vars,
            Err(failures) => {
                let what: Vec<String> = failures
                    .iter()
                    .map(|f| format!("{} ({})", f.variable, f.reason.class.label()))
                    .collect();
                warn!(
                    "refresh: {} could not be resolved; the application keeps its values and the next round is in {} s",
                    what.join(", "),
                    self.interval.as_secs()
                );
                return Change::Nothing;
            }
        };
        let fresh = digests(&vars);
        let changed: Vec<OsString> = fresh
            .iter()
            .filter(|(name, d)| self.current.get(*name) != Some(d))
            .map(|(name, _)| name.clone())
            .chain(
                self.current
                    .keys()
                    .filter(|n| !fresh.contains_key(*n))
                    .cloned(),
            )
            .collect();
        info!(
            "refresh: {count} references resolved in {} ms, {} changed",
            started.elapsed().as_millis(),
            changed.len()
        );
        if changed.is_empty() {
            return Change::Nothing;
        }
        let names: Vec<String> = changed
            .iter()
            .map(|n| printable(&n.to_string_lossy()))
            .collect();
        warn!("refresh: changed: {}", names.join(", "));
        let all_files = changed
            .iter()
            .all(|n| fresh.get(n).is_some_and(|(_, file)| *file));
        let change = match self.args.on_change {
            OnChange::Exit => Change::Exit,
            OnChange::Restart => self.relaunch(vars),
            OnChange::Signal(signal) if all_files && self.rewrite(&vars, &changed) => {
                Change::Signal(signal)
            }
            OnChange::Signal(_) => {
                warn!(
                    "refresh: {} changed in the environment, which a signal cannot deliver; restarting",
                    names.join(", ")
                );
                self.relaunch(vars)
            }
        };
        if !matches!(change, Change::Nothing) {
            self.current = fresh;
        }
        change
    }
}
