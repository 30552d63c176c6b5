//! The command line: clap derive types only, plus the parser for `--timeout`.

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Resolve AWS KMS ciphertexts, SSM Parameter Store and Secrets Manager references in the
/// environment, then exec the application.
#[derive(Debug, Parser)]
#[command(name = "kms-env", version, about, propagate_version = true)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options that containers set through `KMS_ENV_*` variables.
#[derive(Debug, Args)]
pub struct Global {
    /// AWS region to call; overrides AWS_REGION and the profile. ARN references use their own region.
    #[arg(long, global = true, env = "KMS_ENV_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// Deadline for resolving everything, e.g. 30, 2.5, 500ms, 1m (plain numbers are seconds).
    #[arg(
        long,
        global = true,
        env = "KMS_ENV_TIMEOUT",
        default_value = "30s",
        value_parser = parse_timeout,
        value_name = "DURATION"
    )]
    pub timeout: Duration,

    /// Wait a random time up to DURATION before the first AWS call, so a fleet that starts at
    /// once spreads its requests (not counted in --timeout). Default 0.
    #[arg(
        long,
        global = true,
        env = "KMS_ENV_START_JITTER",
        default_value = "0",
        value_parser = parse_jitter,
        value_name = "DURATION"
    )]
    pub start_jitter: Duration,

    /// More diagnostics on stderr (-v info, -vv debug, -vvv also the AWS SDK's debug log). Never values.
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,

    /// KMS encryption context KEY=VALUE for kms: values (repeatable; KMS_ENV_CONTEXT takes k=v,k=v).
    #[arg(
        long = "context",
        global = true,
        env = "KMS_ENV_CONTEXT",
        value_delimiter = ',',
        value_parser = parse_context_pair,
        value_name = "KEY=VALUE"
    )]
    pub context: Vec<(String, String)>,

    /// Diagnostics level, as an alternative to -v for containers.
    #[arg(
        long,
        global = true,
        env = "KMS_ENV_LOG_LEVEL",
        value_enum,
        value_name = "LEVEL"
    )]
    pub log_level: Option<LogLevel>,
}

impl Global {
    /// The encryption context given with --context / KMS_ENV_CONTEXT.
    pub fn context(&self) -> crate::value::Context {
        self.context.iter().cloned().collect()
    }
}

/// Diagnostic levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    /// Only errors.
    Error,
    /// Errors and warnings (the default).
    Warn,
    /// A line per run.
    Info,
    /// A line per variable (names and kinds, never values).
    Debug,
    /// Debug plus the AWS SDK's own debug log.
    Trace,
}

/// The commands. Each one's arguments are built only when it is the one given (`defer`): a start
/// builds `exec`'s alone (BENCHMARKS.md). Their `Args` structs have no doc comment: clap would
/// apply it, when it builds the command, as the command's about over the variant's.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Resolve every reference in the environment, then replace this process with COMMAND.
    Exec(ExecArgs),
    /// Encrypt a value with KMS and print it as kms:<base64>.
    Encrypt(EncryptArgs),
    /// Print the plaintext of a kms: value, a raw base64 ciphertext, an ssm: or sm: reference or a secure: value.
    Decrypt(DecryptArgs),
    /// Resolve the environment and print it for eval, docker --env-file or JSON tools.
    Export(ExportArgs),
    /// Original kms-env: start an env file with a new data key (rotates the key of an existing one).
    Init(InitArgs),
    /// Original kms-env: encrypt KEY=VALUE entries into an env file.
    Add(AddArgs),
    /// Original kms-env: print an env file with its values decrypted (debugging only).
    Show(ShowArgs),
    /// Resolve every reference without printing any value; report and exit with the taxonomy.
    Check(CheckArgs),
    /// Rewrite an env file of the original kms-env with kms: values (authenticated by KMS)
    /// instead of secure: ones, and print it; the file itself is not changed.
    Migrate(MigrateArgs),
    /// Copy this executable into DIR (atomically, mode 0755), e.g. from a Kubernetes
    /// initContainer into an emptyDir the application container mounts.
    Install(InstallArgs),
}

// `kms-env migrate`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The env file of the original kms-env.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// KMS key for the new values (default: the key of the file's KMS_DATA_KEY).
    #[arg(long, env = "KMS_ENV_KEY_ID", value_name = "KEY")]
    pub key_id: Option<String>,

    /// Bind each value to its variable name (kms:v1: values, see encrypt --bind-name).
    #[arg(long)]
    pub bind_name: bool,
}

// `kms-env install`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The directory to copy the executable into (as DIR/kms-env).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

// `kms-env exec`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The application and its arguments, passed exactly as given.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<OsString>,

    /// Keep helper variables (KMS_DATA_KEY, KMS_ENCRYPTED_*, KMS_ENV_LOAD) in the application's environment.
    #[arg(long)]
    pub keep_references: bool,

    /// Load every parameter under a path or every key of a JSON secret: ssm:/path/*,
    /// ssm:/path/**[:label], sm:<secret>#*, with PREFIX_= in front and ?optional after
    /// (repeatable; adds to KMS_ENV_LOAD).
    #[arg(long = "load", value_name = "SPEC")]
    pub load: Vec<String>,

    /// With --init: resolve the references again every DURATION (±10 %, at least 10 s) and act
    /// on a change (see --on-change).
    #[arg(long, env = "KMS_ENV_REFRESH", value_name = "DURATION", value_parser = parse_refresh)]
    pub refresh: Option<Duration>,

    /// What a change found by --refresh does: restart (stop and start the application again),
    /// exit (stop it and exit 0), or signal:NAME (rewrite changed *_FILE files in place, send NAME).
    #[arg(
        long,
        env = "KMS_ENV_ON_CHANGE",
        value_name = "ACTION",
        default_value = "restart",
        value_parser = parse_on_change
    )]
    pub on_change: OnChange,

    /// The signal that stops the application for a restart or an exit.
    #[arg(long, value_name = "SIGNAL", default_value = "TERM", value_parser = parse_signal)]
    pub stop_signal: nix::sys::signal::Signal,

    /// How long the application may take to stop before SIGKILL.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub grace: Duration,

    /// Where *_FILE variables' files go: a fresh 0700 directory inside DIR (default: /dev/shm or
    /// $XDG_RUNTIME_DIR when memory-backed).
    #[arg(long, env = "KMS_ENV_FILES_DIR", value_name = "DIR")]
    pub files_dir: Option<PathBuf>,

    /// Owner of the *_FILE directory and files, UID[:GID] (for entrypoints that drop root).
    #[arg(long, env = "KMS_ENV_FILES_OWNER", value_name = "UID[:GID]", value_parser = parse_owner)]
    pub files_owner: Option<(u32, Option<u32>)>,

    /// Run COMMAND as a child: forward signals, reap zombies, exit with its status (for images
    /// without an init; also KMS_ENV_INIT=1). By default kms-env replaces itself with COMMAND.
    #[arg(
        long,
        env = "KMS_ENV_INIT",
        action = ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub init: bool,
}

// `kms-env encrypt`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// KMS key: id, ARN, alias/name or alias ARN.
    #[arg(long, env = "KMS_ENV_KEY_ID", value_name = "KEY")]
    pub key_id: String,

    /// Remove trailing whitespace (such as the newline of `echo`) from the plaintext.
    #[arg(long)]
    pub trim: bool,

    /// The plaintext; read from stdin when absent or '-'. Prefer stdin: argv is visible to other users.
    #[arg(value_name = "VALUE", conflicts_with = "env_file")]
    pub value: Option<OsString>,

    /// Bind the value to the variable NAME (in the KMS encryption context); with --env-file, bind
    /// each value to its own key.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "NAME")]
    pub bind_name: Option<String>,

    /// Encrypt every value of this dotenv file and print the result.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    /// Output format for --env-file.
    #[arg(long, value_enum, default_value_t = EncodeFormat::Dotenv)]
    pub format: EncodeFormat,

    /// With --env-file: encrypt only these keys (the others pass through as they are).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "KEY,...",
        conflicts_with = "skip"
    )]
    pub only: Vec<String>,

    /// With --env-file: do not encrypt these keys.
    #[arg(long, value_delimiter = ',', value_name = "KEY,...")]
    pub skip: Vec<String>,
}

/// Output formats of `encrypt --env-file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncodeFormat {
    /// `KEY=value` lines, quoted where dotenv needs it.
    Dotenv,
    /// The task definition's `environment` array: `[{"name": …, "value": …}]`.
    Ecs,
    /// One JSON object.
    Json,
}

// `kms-env check`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Check the references in this dotenv or env file instead of the environment.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    /// Print the minimal IAM policy for the references instead of the table.
    #[arg(long)]
    pub iam_policy: bool,

    /// Load every parameter under a path or every key of a JSON secret: ssm:/path/*,
    /// ssm:/path/**[:label], sm:<secret>#*, with PREFIX_= in front and ?optional after
    /// (repeatable; adds to KMS_ENV_LOAD).
    #[arg(long = "load", value_name = "SPEC")]
    pub load: Vec<String>,
}

// `kms-env decrypt`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// The variable name a bound (--bind-name) value belongs to.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// kms:<base64>, a bare base64 ciphertext, ssm:<name> or sm:<secret>[#key]; read from stdin when absent or '-'.
    #[arg(value_name = "VALUE")]
    pub value: Option<OsString>,
}

// `kms-env export`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Shell)]
    pub format: ExportFormat,

    /// Print every variable, not only the resolved ones.
    #[arg(long)]
    pub all: bool,

    /// With --all: keep helper variables (KMS_DATA_KEY, KMS_ENCRYPTED_*, KMS_ENV_LOAD).
    #[arg(long)]
    pub keep_references: bool,

    /// Load every parameter under a path or every key of a JSON secret: ssm:/path/*,
    /// ssm:/path/**[:label], sm:<secret>#*, with PREFIX_= in front and ?optional after
    /// (repeatable; adds to KMS_ENV_LOAD).
    #[arg(long = "load", value_name = "SPEC")]
    pub load: Vec<String>,
}

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `export NAME='value'` lines, POSIX single-quoted, for `eval` in sh, dash and bash.
    Shell,
    /// `NAME=value` lines by Docker's --env-file rules; refuses values it cannot represent.
    Dotenv,
    /// One JSON object, in environment order.
    Json,
}

// `kms-env init`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct InitArgs {
    /// KMS key for the data key: id, ARN, alias/name or alias ARN.
    #[arg(value_name = "KEY")]
    pub key_id: String,

    /// The env file; created (mode 0600) when missing.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

// `kms-env add`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The env file (made by init).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// KEY=VALUE entries; the value is everything after the first '=', exactly. With --stdin, one KEY.
    #[arg(value_name = "KEY=VALUE", required = true)]
    pub entries: Vec<String>,

    /// Read the value of the single KEY from stdin (exactly), keeping it out of argv and history.
    #[arg(long)]
    pub stdin: bool,
}

// `kms-env show`: no doc comment, see `Command`.
#[allow(missing_docs)]
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The env file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Parses the process's command line. A `KMS_ENV_*` variable that is set but empty counts as
/// unset (task-definition templates set variables to empty strings): it neither fails the
/// parse nor overrides what it would override (an empty `KMS_ENV_REGION` leaves `AWS_REGION`).
///
/// The command tree and the matches are left to the process's end, as the runtime is (the
/// process ends soon, by `execve` or exit): dropping them was 16 % of the instructions of a
/// start without references (BENCHMARKS.md).
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    if let Some(cli) = plain_exec(std::env::args_os(), std::env::vars_os()) {
        return cli;
    }
    let mut command = Cli::command();
    if std::env::vars_os().any(|(k, v)| v.is_empty() && is_ours(&k)) {
        command = without_empty_env(command);
    }
    let matches = command.get_matches_mut();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    std::mem::forget(matches);
    std::mem::forget(command);
    cli
}

/// `kms-env exec [--] COMMAND [ARGS...]` with no option and no `KMS_ENV_*` variable set, the way
/// an image's `ENTRYPOINT` usually runs it, parsed without clap: building clap's command tree and
/// matching was 0.2 to 0.3 ms of a start, the largest part of what kms-env adds to a start
/// without references (BENCHMARKS.md). `None` for anything else (an option, a `KMS_ENV_*`
/// variable, no command, an argument that starts with `-` without `--` before the command),
/// which clap parses; a unit test checks that clap gives the same `Cli` for what this takes.
fn plain_exec(
    mut args: impl Iterator<Item = OsString>,
    mut vars: impl Iterator<Item = (OsString, OsString)>,
) -> Option<Cli> {
    args.next()?;
    if args.next()? != "exec" {
        return None;
    }
    let mut command: Vec<OsString> = args.collect();
    if command.first()? == "--" {
        command.remove(0);
    } else if command
        .iter()
        .any(|a| a.as_encoded_bytes().starts_with(b"-"))
    {
        return None;
    }
    if command.is_empty() || vars.any(|(k, _)| is_ours(&k)) {
        return None;
    }
    Some(Cli {
        global: Global {
            region: None,
            timeout: Duration::from_secs(30),
            start_jitter: Duration::ZERO,
            verbose: 0,
            context: Vec::new(),
            log_level: None,
        },
        command: Command::Exec(ExecArgs {
            command,
            keep_references: false,
            load: Vec::new(),
            refresh: None,
            on_change: OnChange::Restart,
            stop_signal: nix::sys::signal::Signal::SIGTERM,
            grace: Duration::from_secs(10),
            files_dir: None,
            files_owner: None,
            init: false,
        }),
    })
}

/// Whether `name` is one of kms-env's variables (`KMS_ENV_*`: every one clap reads is, a test
/// checks).
fn is_ours(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"KMS_ENV_")
}

/// `cmd` with the environment variables of its arguments that are set but empty ignored: its own
/// (the global ones among them) and every command's, whose arguments are built here instead of
/// deferred.
fn without_empty_env(cmd: clap::Command) -> clap::Command {
    let mut cmd = without_empty_env_of_args(cmd);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |sc| without_empty_env_of_args(with_args(sc)));
    }
    cmd
}

/// The command `sc` with its arguments, which `Command`'s `defer` would add when it is built.
fn with_args(sc: clap::Command) -> clap::Command {
    let sc = sc.defer(|sc| sc);
    match sc.get_name() {
        "exec" => ExecArgs::augment_args(sc),
        "encrypt" => EncryptArgs::augment_args(sc),
        "decrypt" => DecryptArgs::augment_args(sc),
        "export" => ExportArgs::augment_args(sc),
        "init" => InitArgs::augment_args(sc),
        "add" => AddArgs::augment_args(sc),
        "show" => ShowArgs::augment_args(sc),
        "check" => CheckArgs::augment_args(sc),
        "migrate" => MigrateArgs::augment_args(sc),
        "install" => InstallArgs::augment_args(sc),
        other => unreachable!("the command {other} is missing from cli::with_args"),
    }
}

/// `cmd` with the environment variables of its own arguments that are set but empty ignored.
fn without_empty_env_of_args(mut cmd: clap::Command) -> clap::Command {
    let empty: Vec<clap::Id> = cmd
        .get_arguments()
        .filter(|a| {
            a.get_env()
                .and_then(std::env::var_os)
                .is_some_and(|v| v.is_empty())
        })
        .map(|a| a.get_id().clone())
        .collect();
    for id in empty {
        cmd = cmd.mut_arg(id, |a| a.env(None::<&'static str>));
    }
    cmd
}

/// Parses one `KEY=VALUE` of an encryption context.
pub fn parse_context_pair(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| "expected KEY=VALUE".to_owned())?;
    if k.is_empty() {
        return Err("the key is empty".into());
    }
    if k == crate::sealed::NAME_CONTEXT_KEY {
        return Err(format!("{k} is reserved for --bind-name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// What `--refresh` does on a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnChange {
    /// Stop the application and start it again with the new values.
    Restart,
    /// Stop the application and exit 0, for the orchestrator to replace the task.
    Exit,
    /// Rewrite the changed `*_FILE` files in place and send this signal.
    Signal(nix::sys::signal::Signal),
}

/// Parses `TERM`, `SIGTERM` or `15`.
pub fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, String> {
    use std::str::FromStr;
    let name = s.trim().to_ascii_uppercase();
    if let Ok(n) = name.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n).map_err(|_| format!("no signal {n}"));
    }
    let full = if name.starts_with("SIG") {
        name
    } else {
        format!("SIG{name}")
    };
    nix::sys::signal::Signal::from_str(&full).map_err(|_| format!("no signal {s}"))
}

/// Parses `restart`, `exit` or `signal:NAME`.
pub fn parse_on_change(s: &str) -> Result<OnChange, String> {
    match s.trim() {
        "restart" => Ok(OnChange::Restart),
        "exit" => Ok(OnChange::Exit),
        other => match other.strip_prefix("signal:") {
            Some(name) => parse_signal(name).map(OnChange::Signal),
            None => Err("one of restart, exit, signal:NAME".into()),
        },
    }
}

/// Parses a refresh interval: at least 10 s (the test suite lowers the floor through a variable
/// of its own).
pub fn parse_refresh(s: &str) -> Result<Duration, String> {
    let d = parse_timeout(s)?;
    let floor = std::env::var("KMS_ENV_TEST_REFRESH_FLOOR")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_secs);
    if d < floor {
        return Err(format!("must be at least {} s", floor.as_secs()));
    }
    Ok(d)
}

/// Parses `UID[:GID]`.
pub fn parse_owner(s: &str) -> Result<(u32, Option<u32>), String> {
    let number = |p: &str| {
        p.parse::<u32>()
            .map_err(|_| format!("{p:?} is not a numeric id"))
    };
    match s.split_once(':') {
        Some((uid, gid)) => Ok((number(uid)?, Some(number(gid)?))),
        None => Ok((number(s)?, None)),
    }
}

/// Parses a start jitter: like a timeout, but 0 (off) is allowed.
pub fn parse_jitter(s: &str) -> Result<Duration, String> {
    if s.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Duration::ZERO);
    }
    parse_timeout(s)
}

/// The longest deadline any form may give.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Parses `30`, `2.5` (seconds) or a humantime duration such as `500ms`, `1m`; more than 0 and
/// less than a day, whatever the form.
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    const RANGE: &str = "must be more than 0 and less than a day";
    let d = match s.trim().parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 && secs < MAX_TIMEOUT.as_secs_f64() => {
            Duration::from_secs_f64(secs)
        }
        Ok(_) => return Err(RANGE.into()),
        Err(_) => humantime::parse_duration(s.trim()).map_err(|e| match e {
            humantime::DurationError::NumberOverflow => RANGE.to_owned(),
            other => other.to_string(),
        })?,
    };
    if d.is_zero() || d >= MAX_TIMEOUT {
        return Err(RANGE.into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command's arguments and about, once built, as `(name, about, argument ids)`.
    fn built(mut cmd: clap::Command) -> Vec<(String, String, Vec<String>)> {
        cmd.build();
        cmd.get_subcommands()
            .map(|sc| {
                let about = sc.get_about().map(|a| a.to_string()).unwrap_or_default();
                let mut ids: Vec<String> =
                    sc.get_arguments().map(|a| a.get_id().to_string()).collect();
                ids.sort();
                (sc.get_name().to_owned(), about, ids)
            })
            .collect()
    }

    #[test]
    fn plain_exec_gives_what_clap_gives_and_leaves_the_rest_to_it() {
        let os = |args: &[&str]| -> Vec<OsString> { args.iter().map(OsString::from).collect() };
        let no_vars = || std::iter::empty::<(OsString, OsString)>();
        let read = variables_clap_reads();
        assert!(
            read.iter().all(|name| std::env::var_os(name).is_none()),
            "clap reads {read:?}: run the unit tests without them"
        );
        let taken: &[&[&str]] = &[
            &["kms-env", "exec", "--", "app"],
            &["kms-env", "exec", "--", "app", "--port", "8080", "-v"],
            &["kms-env", "exec", "--", "-dash-first", "--", "x"],
            &["kms-env", "exec", "--", "sh", "-c", "echo $X"],
            &["kms-env", "exec", "app", "serve", "now"],
            &["/usr/local/bin/kms-env", "exec", "--", "--help"],
        ];
        for args in taken {
            let ours = plain_exec(os(args).into_iter(), no_vars()).expect("taken");
            let clap = Cli::try_parse_from(os(args)).unwrap();
            assert_eq!(format!("{ours:?}"), format!("{clap:?}"), "{args:?}");
        }
        let left: &[&[&str]] = &[
            &["kms-env"],
            &["kms-env", "exec"],
            &["kms-env", "exec", "--"],
            &["kms-env", "exec", "--init", "--", "app"],
            &["kms-env", "exec", "app", "--port", "1"],
            &["kms-env", "exec", "app", "--", "x"],
            &["kms-env", "--region", "eu-west-1", "exec", "--", "app"],
            &["kms-env", "export"],
            &["kms-env", "exe", "--", "app"],
        ];
        for args in left {
            assert!(
                plain_exec(os(args).into_iter(), no_vars()).is_none(),
                "{args:?}"
            );
        }
        let set = [(OsString::from("KMS_ENV_INIT"), OsString::from("1"))];
        assert!(plain_exec(os(taken[0]).into_iter(), set.into_iter()).is_none());
    }

    /// The environment variables clap reads, in every command.
    fn variables_clap_reads() -> Vec<String> {
        let mut cmd = Cli::command();
        cmd.build();
        let mut names: Vec<String> = std::iter::once(&cmd)
            .chain(cmd.get_subcommands())
            .flat_map(|c| c.get_arguments())
            .filter_map(|a| a.get_env())
            .map(|e| e.to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    #[test]
    fn every_variable_the_command_line_reads_is_a_kms_env_one() {
        let names = variables_clap_reads();
        assert!(names.len() >= 10, "{names:?}");
        assert!(names.iter().all(|n| n.starts_with("KMS_ENV_")), "{names:?}");
        assert!(names.iter().all(|n| is_ours(n.as_ref())), "{names:?}");
    }

    #[test]
    fn commands_built_for_empty_variables_are_the_deferred_ones() {
        let deferred = built(Cli::command());
        assert_eq!(built(without_empty_env(Cli::command())), deferred);
        let exec = deferred.iter().find(|(name, ..)| name == "exec").unwrap();
        assert!(exec.1.starts_with("Resolve every reference"), "{}", exec.1);
        assert!(exec.2.iter().any(|id| id == "refresh") && exec.2.iter().any(|id| id == "region"));
        let commands = deferred.iter().filter(|(name, ..)| name != "help");
        assert!(commands.clone().count() >= 10);
        assert!(
            commands
                .clone()
                .all(|(_, about, _)| !about.is_empty() && !about.starts_with('`'))
        );
        assert!(
            commands.clone().all(|(_, _, ids)| ids.len() > 8),
            "{deferred:?}"
        );
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_timeout("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("0s").is_err());
        // One bound for every form; an overflowing one is refused, not a panic.
        assert!(parse_timeout("86400").is_err());
        assert!(parse_timeout("1000y").is_err());
        assert!(parse_timeout("25h").is_err());
        assert!(parse_timeout("584542046090y").is_err());
        assert_eq!(parse_timeout("23h"), Ok(Duration::from_secs(23 * 3600)));
        assert_eq!(parse_jitter("0"), Ok(Duration::ZERO));
        assert_eq!(parse_jitter("10s"), Ok(Duration::from_secs(10)));
    }

    #[test]
    fn exec_takes_everything_after_the_command_verbatim() {
        let cli = Cli::try_parse_from([
            "kms-env",
            "--region",
            "eu-west-1",
            "exec",
            "app",
            "--region",
            "x",
            "-v",
        ])
        .unwrap();
        assert_eq!(cli.global.region.as_deref(), Some("eu-west-1"));
        let Command::Exec(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.command, ["app", "--region", "x", "-v"]);
    }
}
