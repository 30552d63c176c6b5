//! Wiring: command line → plan → resolve (one tokio runtime per resolution) → exec or print.
//!
//! This is the only module that touches the process environment, files, stdin and stdout;
//! everything it calls is either pure (`plan`, `reference`, `envfile`, `dotenv`, `export`,
//! `sealed`) or behind the source ports. One file per command; `files` holds the file I/O the
//! env-file commands share. [`with_aws`] is the one place that runs AWS work under the
//! deadline. See ARCHITECTURE.md.

mod add;
mod check;
mod decrypt;
mod encrypt;
mod exec;
mod export;
mod files;
mod files_dir;
mod init;
mod install;
mod migrate;
mod refresh;
mod show;

use crate::aws::{Aws, jitter, load_config};
use crate::cli::{Cli, Command, Global, LogLevel};
use crate::error::{Class, Error, Reason};
use crate::plan::{Options, Plan};
use crate::source::kms::AwsKms;
use crate::source::sm::AwsSecretsManager;
use crate::source::ssm::AwsSsm;
use crate::source::{Clients, Outcomes, resolve};
use crate::value::Vars;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStringExt;
use tokio::time::Instant;
use tracing::{debug, info};

/// Runs one command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    init_logging(&cli.global);
    let global = &cli.global;
    let result = match cli.command {
        Command::Exec(args) => exec::exec(global, args),
        Command::Encrypt(args) => encrypt::encrypt(global, args).map(|()| 0),
        Command::Decrypt(args) => decrypt::decrypt(global, args).map(|()| 0),
        Command::Export(args) => export::export(global, args).map(|()| 0),
        Command::Init(args) => init::init(global, args).map(|()| 0),
        Command::Add(args) => add::add(global, args).map(|()| 0),
        Command::Show(args) => show::show(global, args).map(|()| 0),
        Command::Check(args) => check::check(global, args).map(|()| 0),
        Command::Install(args) => install::install(&args).map(|()| 0),
        Command::Migrate(args) => migrate::migrate(global, &args).map(|()| 0),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kms-env: {e}");
            e.exit_code()
        }
    }
}

fn init_logging(global: &Global) {
    use tracing::level_filters::LevelFilter;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::prelude::*;

    let from_flags = match global.verbose {
        0 => LogLevel::Warn,
        1 => LogLevel::Info,
        2 => LogLevel::Debug,
        _ => LogLevel::Trace,
    };
    let level = global.log_level.map_or(from_flags, |l| l.max(from_flags));
    let ours = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug | LogLevel::Trace => LevelFilter::DEBUG,
    };
    let mut filter = Targets::new().with_target("kms_env", ours);
    if level == LogLevel::Trace {
        // The SDK's debug log shows requests and credential lookups, never bodies.
        filter = filter.with_default(LevelFilter::DEBUG);
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(level == LogLevel::Trace);
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .try_init();
}

/// What the process does after its AWS work, which decides what becomes of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    /// It ends soon, by `execve` or exit: the runtime, its tasks and its connections are left to
    /// the kernel, which discards them with the address space (every descriptor is close-on-exec),
    /// instead of being torn down one by one first (BENCHMARKS.md: about 2 ms at N = 50).
    Ends,
    /// It goes on (`--init` supervising, the refresh rounds): the runtime is shut down.
    GoesOn,
}

/// Runs `work` with the AWS configuration under the one deadline (`--timeout`, which `work` is
/// given too), on a fresh current-thread runtime that nothing runs on after this returns:
/// loading the configuration counts against the deadline, and nothing runs past it.
/// `fallback_region` is an env file's region; `then` decides whether the runtime is shut down.
fn with_aws<T>(
    global: &Global,
    fallback_region: Option<&str>,
    then: Then,
    work: impl AsyncFnOnce(&Aws, Instant) -> Result<T, Reason>,
) -> Result<T, Reason> {
    // I/O and timers only: the AWS work needs no signal or process driver (whose set-up, a
    // socket pair and a dup of the poller, every start would otherwise pay).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| {
            Reason::new(
                Class::Config,
                format!("cannot start the async runtime: {e}"),
            )
        })?;
    // Boxed: on the stack, the run's future and its moves touched about seven more pages of
    // it at every start (BENCHMARKS.md, twelfth session).
    let out = rt.block_on(Box::pin(async {
        let deadline = Instant::now() + global.timeout;
        let run = async {
            let aws = load_config(
                global.region.clone(),
                fallback_region.map(str::to_owned),
                global.timeout,
            )
            .await?;
            debug!(region = ?aws.config.region(), "AWS configuration loaded");
            work(&aws, deadline).await
        };
        crate::deadline::scope(deadline, run)
            .await
            .unwrap_or_else(|_| {
                Err(Reason::new(
                    Class::TimedOut,
                    "no answer before the deadline",
                ))
            })
    }));
    match then {
        // Never polled again: its connections close with the process image.
        Then::Ends => std::mem::forget(rt),
        // Do not wait for lingering tasks (a DNS lookup past the deadline).
        Then::GoesOn => rt.shutdown_background(),
    }
    out
}

/// Planning options from the command line.
fn options(global: &Global, keep_references: bool, loads: &[String]) -> Options {
    Options {
        keep_references,
        context: global.context(),
        loads: loads.to_vec(),
    }
}

/// Looks up everything `plan` needs; without references, no AWS configuration is loaded.
/// `fallback_region` (an env file's `AWS_REGION`) is used when no region is configured.
fn lookups(global: &Global, plan: &Plan, fallback_region: Option<&str>, then: Then) -> Outcomes {
    if !plan.is_empty() && !global.start_jitter.is_zero() {
        let pause = global.start_jitter.mul_f64(jitter());
        debug!("start jitter: waiting {} ms", pause.as_millis());
        std::thread::sleep(pause);
    }
    lookups_now(global, plan, fallback_region, then)
}

/// [`lookups`] without the start jitter (the refresh rounds have their own).
fn lookups_now(
    global: &Global,
    plan: &Plan,
    fallback_region: Option<&str>,
    then: Then,
) -> Outcomes {
    if plan.is_empty() {
        debug!("no references to resolve; AWS configuration not loaded");
        return Outcomes::default();
    }
    info!("resolving {}", plan.lookups.summary());
    with_aws(global, fallback_region, then, async |aws, deadline| {
        let kms = AwsKms::new(aws);
        let ssm = AwsSsm::new(aws);
        let sm = AwsSecretsManager::new(aws);
        let clients = Clients {
            kms: &kms,
            ssm: &ssm,
            sm: &sm,
        };
        Ok(resolve(&plan.lookups, &clients, deadline).await)
    })
    .unwrap_or_else(|reason| Outcomes::fail_all(&plan.lookups, &reason))
}

/// Resolves every reference in `plan` into the final variables.
fn resolve_plan(
    global: &Global,
    plan: Plan,
    fallback_region: Option<&str>,
    then: Then,
) -> Result<Vars, Error> {
    let started = std::time::Instant::now();
    let outcomes = lookups(global, &plan, fallback_region, then);
    let applied = plan.apply_noted(outcomes).map_err(Error::Resolve)?;
    for note in &applied.notes {
        info!("{note}");
    }
    info!("resolved in {} ms", started.elapsed().as_millis());
    Ok(applied.vars)
}

/// The most read from stdin: far above any value an environment variable can carry (128 KiB).
const MAX_STDIN: u64 = 1024 * 1024;

/// The value from the command line, or all of stdin (at most [`MAX_STDIN`]) when absent or `-`.
fn read_value(value: Option<OsString>) -> Result<Vec<u8>, Error> {
    match value {
        Some(v) if v != "-" => Ok(v.into_vec()),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .take(MAX_STDIN + 1)
                .read_to_end(&mut buf)
                .map_err(|source| Error::Io {
                    what: "cannot read stdin".into(),
                    source,
                })?;
            if buf.len() as u64 > MAX_STDIN {
                return Err(Error::Value(Reason::new(
                    Class::Malformed,
                    "stdin holds more than 1 MiB; no value an environment variable can carry is that large",
                )));
            }
            Ok(buf)
        }
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            what: "cannot write to stdout".into(),
            source,
        })
}
