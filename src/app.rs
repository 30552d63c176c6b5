//! Wiring: command line → plan → resolve (one tokio runtime, dropped before exec) → exec or print.
//!
//! This is the only module that touches the process environment, stdin and stdout; everything
//! it calls is either pure (`plan`, `reference`) or behind the resolver ports.

use crate::cli::{Cli, Command, DecryptArgs, EncryptArgs, ExecArgs, Global, LogLevel};
use crate::error::{Class, Error, Reason};
use crate::exec;
use crate::plan::{Outcomes, Plan, Value, Vars};
use crate::reference::{KMS_PREFIX, SSM_PREFIX};
use crate::resolve::aws::{AwsKms, AwsSsm, load_config};
use crate::resolve::resolve;
use crate::secret::Secret;
use base64::Engine as _;
use std::ffi::OsString;
use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use tracing::{debug, info, warn};

/// KMS `Encrypt` takes at most 4096 bytes of plaintext.
const KMS_MAX_PLAINTEXT: usize = 4096;

/// Runs one command line and returns the process exit code.
pub fn run(cli: Cli) -> u8 {
    init_logging(&cli.global);
    let result = match cli.command {
        Command::Exec(args) => exec_command(&cli.global, args),
        Command::Encrypt(args) => encrypt(&cli.global, args),
        Command::Decrypt(args) => decrypt(&cli.global, args),
    };
    match result {
        Ok(()) => 0,
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

/// Resolves every reference in `plan`; without references, no AWS configuration is loaded.
fn resolve_plan(global: &Global, plan: Plan) -> Result<Vars, Error> {
    if plan.is_empty() {
        debug!("no references to resolve; AWS configuration not loaded");
        return plan.apply(Outcomes::default()).map_err(Error::Resolve);
    }
    let started = std::time::Instant::now();
    info!(
        "resolving {} KMS ciphertexts and {} SSM parameters in {} GetParameters calls",
        plan.kms.len(),
        plan.ssm.len(),
        plan.batches.len()
    );
    let outcomes = block_on(async {
        let deadline = tokio::time::Instant::now() + global.timeout;
        match tokio::time::timeout_at(deadline, load_config(global.region.clone())).await {
            Ok(config) => {
                debug!(region = ?config.region(), "AWS configuration loaded");
                resolve(
                    &plan,
                    &AwsKms::new(&config),
                    &AwsSsm::new(&config),
                    deadline,
                )
                .await
            }
            Err(_) => plan.fail_all(Reason::new(
                Class::TimedOut,
                "loading the AWS configuration did not finish before the deadline",
            )),
        }
    })?;
    let vars = plan.apply(outcomes).map_err(Error::Resolve)?;
    info!("resolved in {} ms", started.elapsed().as_millis());
    Ok(vars)
}

fn exec_command(global: &Global, args: ExecArgs) -> Result<(), Error> {
    let plan = Plan::new(std::env::vars_os());
    debug!("{} variables hold references", plan.reference_count());
    let vars = resolve_plan(global, plan)?;
    Err(exec::exec(&args.command, vars))
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

fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|source| Error::Io {
            what: "cannot write to stdout".into(),
            source,
        })
}

fn encrypt(global: &Global, args: EncryptArgs) -> Result<(), Error> {
    let mut plaintext = Secret::new(read_value(args.value)?);
    if args.trim {
        let keep = plaintext
            .expose()
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        plaintext = Secret::new(plaintext.expose()[..keep].to_vec());
    } else if plaintext
        .expose()
        .last()
        .is_some_and(u8::is_ascii_whitespace)
    {
        warn!(
            "the plaintext ends in whitespace (a newline from echo?); it is kept as is. Use --trim to remove it"
        );
    }
    let bad = |detail: &str| Error::Value(Reason::new(Class::Malformed, detail));
    if plaintext.expose().is_empty() {
        return Err(bad(
            "the plaintext is empty; KMS cannot encrypt an empty value",
        ));
    }
    if plaintext.contains_nul() {
        return Err(bad(
            "the plaintext contains a NUL byte, which an environment variable cannot hold",
        ));
    }
    if plaintext.expose().len() > KMS_MAX_PLAINTEXT {
        return Err(bad("the plaintext is larger than KMS's 4096-byte limit"));
    }
    let blob = block_on(async {
        let deadline = tokio::time::Instant::now() + global.timeout;
        let work = async {
            let config = load_config(global.region.clone()).await;
            AwsKms::new(&config).encrypt(&args.key_id, &plaintext).await
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .unwrap_or_else(|_| {
                Err(Reason::new(
                    Class::TimedOut,
                    "no answer before the deadline",
                ))
            })
    })?
    .map_err(Error::Value)?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
    write_stdout(format!("{KMS_PREFIX}{encoded}\n").as_bytes())
}

fn decrypt(global: &Global, args: DecryptArgs) -> Result<(), Error> {
    let input = read_value(args.value)?;
    let input = input.trim_ascii();
    let value =
        if input.starts_with(KMS_PREFIX.as_bytes()) || input.starts_with(SSM_PREFIX.as_bytes()) {
            input.to_vec()
        } else {
            [KMS_PREFIX.as_bytes(), input].concat()
        };
    let plan = Plan::new([(OsString::from("VALUE"), OsString::from_vec(value))]);
    // One value: report its reason, not a list of variables.
    let vars = resolve_plan(global, plan).map_err(|e| match e {
        Error::Resolve(mut failures) if !failures.is_empty() => {
            Error::Value(failures.swap_remove(0).reason)
        }
        other => other,
    })?;
    match vars.first() {
        Some((_, Value::Secret(s))) => write_stdout(s.expose()),
        Some((_, Value::Plain(p))) => write_stdout(p.as_bytes()),
        None => Err(Error::Usage("nothing to decrypt".into())),
    }
}
