//! Wiring: command line → plan → resolve (one tokio runtime, dropped before exec) → exec or print.
//!
//! This is the only module that touches the process environment, files, stdin and stdout;
//! everything it calls is either pure (`plan`, `reference`, `envfile`, `dotenv`, `export`,
//! `sealed`) or behind the resolver ports. `envfile` holds the original kms-env's file
//! commands, `encode` the `encrypt` command, `check` the preflight.

mod check;
mod encode;
mod envfile;

use crate::cli::{Cli, Command, DecryptArgs, ExecArgs, ExportArgs, Global, LogLevel};
use crate::error::{Class, Error, Reason};
use crate::exec;
use crate::plan::{DATA_KEY_VAR, Options, Outcomes, Plan, Value, Vars};
use crate::reference::{KMS_PREFIX, has_reference_prefix};
use crate::resolve::aws::{AwsKms, AwsSsm, load_config};
use crate::resolve::resolve;
use std::ffi::OsString;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use tracing::{debug, info, warn};

/// Runs one command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    init_logging(&cli.global);
    let global = &cli.global;
    let result = match cli.command {
        Command::Exec(args) => exec_command(global, args),
        Command::Encrypt(args) => encode::encrypt(global, args).map(|()| 0),
        Command::Decrypt(args) => decrypt(global, args).map(|()| 0),
        Command::Export(args) => export(global, args).map(|()| 0),
        Command::Init(args) => envfile::init(global, args).map(|()| 0),
        Command::Add(args) => envfile::add(global, args).map(|()| 0),
        Command::Show(args) => envfile::show(global, args).map(|()| 0),
        Command::Check(args) => check::check(global, args).map(|()| 0),
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

/// Runs `fut` on a fresh current-thread runtime that is gone when this returns.
fn block_on<F: Future>(fut: F) -> Result<F::Output, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            what: "cannot start the async runtime".into(),
            source,
        })?;
    let out = rt.block_on(fut);
    // Do not wait for lingering tasks (a DNS lookup past the deadline): we exec or exit next.
    rt.shutdown_background();
    Ok(out)
}

fn timed_out() -> Reason {
    Reason::new(Class::TimedOut, "no answer before the deadline")
}

/// Runs `work` with a KMS client under the deadline (which `work` is given too);
/// `fallback_region` is an env file's region.
fn with_kms<T>(
    global: &Global,
    fallback_region: Option<&str>,
    work: impl AsyncFnOnce(&AwsKms, tokio::time::Instant) -> Result<T, Reason>,
) -> Result<T, Error> {
    block_on(async {
        let deadline = tokio::time::Instant::now() + global.timeout;
        let run = async {
            let config = load_config(
                global.region.clone(),
                fallback_region.map(str::to_owned),
                global.timeout,
            )
            .await?;
            work(&AwsKms::new(&config), deadline).await
        };
        tokio::time::timeout_at(deadline, run)
            .await
            .unwrap_or_else(|_| Err(timed_out()))
    })?
    .map_err(Error::Value)
}

/// Planning options from the command line.
fn options(global: &Global, keep_references: bool) -> Options {
    Options {
        keep_references,
        context: global.context(),
    }
}

/// Looks up everything `plan` needs; without references, no AWS configuration is loaded.
/// `fallback_region` (an env file's `AWS_REGION`) is used when no region is configured.
fn lookups(global: &Global, plan: &Plan, fallback_region: Option<&str>) -> Result<Outcomes, Error> {
    if plan.is_empty() {
        debug!("no references to resolve; AWS configuration not loaded");
        return Ok(Outcomes::default());
    }
    if !global.start_jitter.is_zero() {
        let pause = global.start_jitter.mul_f64(crate::resolve::aws::jitter());
        debug!("start jitter: waiting {} ms", pause.as_millis());
        std::thread::sleep(pause);
    }
    info!(
        "resolving {} KMS ciphertexts and {} SSM parameters in {} GetParameters calls",
        plan.kms.len(),
        plan.ssm.len(),
        plan.batches.len()
    );
    block_on(async {
        let deadline = tokio::time::Instant::now() + global.timeout;
        let config = load_config(
            global.region.clone(),
            fallback_region.map(str::to_owned),
            global.timeout,
        );
        match tokio::time::timeout_at(deadline, config).await {
            Ok(Err(reason)) => plan.fail_all(reason),
            Ok(Ok(config)) => {
                debug!(region = ?config.region(), "AWS configuration loaded");
                resolve(plan, &AwsKms::new(&config), &AwsSsm::new(&config), deadline).await
            }
            Err(_) => plan.fail_all(Reason::new(
                Class::TimedOut,
                "loading the AWS configuration did not finish before the deadline",
            )),
        }
    })
}

/// Resolves every reference in `plan` into the final variables.
fn resolve_plan(global: &Global, plan: Plan, fallback_region: Option<&str>) -> Result<Vars, Error> {
    let started = std::time::Instant::now();
    let outcomes = lookups(global, &plan, fallback_region)?;
    let vars = plan.apply(outcomes).map_err(Error::Resolve)?;
    info!("resolved in {} ms", started.elapsed().as_millis());
    Ok(vars)
}

fn exec_command(global: &Global, args: ExecArgs) -> Result<u8, Error> {
    let plan = Plan::new(std::env::vars_os(), &options(global, args.keep_references));
    debug!("{} variables hold references", plan.reference_count());
    let vars = resolve_plan(global, plan, None)?;
    exec::exec(&args.command, vars, args.init)
}

/// The value from the command line, or all of stdin when absent or `-`.
fn read_value(value: Option<OsString>) -> Result<Vec<u8>, Error> {
    match value {
        Some(v) if v != "-" => Ok(v.into_vec()),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|source| Error::Io {
                    what: "cannot read stdin".into(),
                    source,
                })?;
            Ok(buf)
        }
    }
}

/// Reads a UTF-8 text file; a missing one is `NotFound` (66).
fn read_text(path: &Path) -> Result<String, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
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
    String::from_utf8(bytes).map_err(|_| {
        Error::Value(Reason::new(
            Class::Malformed,
            format!("{} is not UTF-8 text", path.display()),
        ))
    })
}

/// Reads and parses a dotenv file.
fn read_dotenv(path: &Path) -> Result<Vec<crate::dotenv::Pair>, Error> {
    crate::dotenv::parse(&read_text(path)?).map_err(|e| {
        Error::Value(Reason::new(
            Class::Malformed,
            format!("{}: {e}", path.display()),
        ))
    })
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

fn decrypt(global: &Global, args: DecryptArgs) -> Result<(), Error> {
    let input = read_value(args.value)?;
    let input = input.trim_ascii();
    let value = if has_reference_prefix(input) {
        input.to_vec()
    } else {
        [KMS_PREFIX.as_bytes(), input].concat()
    };
    // A secure: value of the original kms-env needs the environment's data key.
    let mut env: Vec<(OsString, OsString)> = std::env::var_os(DATA_KEY_VAR)
        .map(|k| (OsString::from(DATA_KEY_VAR), k))
        .into_iter()
        .collect();
    let name = args.name.unwrap_or_else(|| "VALUE".to_owned());
    env.push((OsString::from(name), OsString::from_vec(value)));
    let plan = Plan::new(env, &options(global, false));
    // One value: report its reason, not a list of variables.
    let vars = resolve_plan(global, plan, None).map_err(|e| match e {
        Error::Resolve(mut failures) if !failures.is_empty() => {
            Error::Value(failures.swap_remove(0).reason)
        }
        other => other,
    })?;
    match vars.last() {
        Some((_, Value::Secret(s))) => write_stdout(s.expose()),
        Some((_, Value::Plain(p))) => write_stdout(p.as_bytes()),
        None => Err(Error::Usage("nothing to decrypt".into())),
    }
}

fn export(global: &Global, args: ExportArgs) -> Result<(), Error> {
    let plan = Plan::new(std::env::vars_os(), &options(global, args.keep_references));
    let vars = resolve_plan(global, plan, None)?;
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
