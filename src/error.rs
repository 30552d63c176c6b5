//! Typed errors and the one mapping from an error to a process exit code (README "Exit codes").
//!
//! Nothing in here ever holds a secret value: failures carry the variable name, the reference
//! kind (`kms`, `ssm /name`), a [`Class`] and a human detail written by us or by AWS about the
//! request, never the plaintext.

use std::fmt;

/// Exit code of a usage error (clap uses the same).
pub const EX_USAGE: u8 = 2;
/// A reference is malformed or a ciphertext cannot be decrypted.
pub const EX_DATAERR: u8 = 65;
/// A parameter or key does not exist.
pub const EX_NOINPUT: u8 = 66;
/// Reading input or writing output failed.
pub const EX_IOERR: u8 = 74;
/// AWS unreachable, throttled past retries, or the deadline passed.
pub const EX_UNAVAILABLE: u8 = 69;
/// Access denied or no credentials.
pub const EX_NOPERM: u8 = 77;
/// Configuration error, e.g. no region.
pub const EX_CONFIG: u8 = 78;
/// The command was found but could not be executed.
pub const EX_CANNOT_EXEC: u8 = 126;
/// The command was not found.
pub const EX_NOT_FOUND: u8 = 127;

/// Why a reference could not be resolved, as the operator needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// The value is not a well-formed reference (bad base64, bad parameter name).
    Malformed,
    /// KMS refused the ciphertext, or the plaintext cannot be an environment value.
    BadCiphertext,
    /// The parameter, version, label or key does not exist.
    NotFound,
    /// The caller's identity is not allowed, or its credentials are invalid.
    AccessDenied,
    /// No credentials could be found at all.
    NoCredentials,
    /// AWS throttled the request past the retries.
    Throttled,
    /// The endpoint could not be reached or answered with something unusable.
    Unreachable,
    /// The service answered with an error of its own (5xx, unknown code).
    ServiceError,
    /// The overall deadline passed before an answer came.
    TimedOut,
    /// Local configuration is missing or wrong (no region).
    Config,
}

impl Class {
    /// The exit code this class maps to.
    pub fn exit_code(self) -> u8 {
        match self {
            Class::Malformed | Class::BadCiphertext => EX_DATAERR,
            Class::NotFound => EX_NOINPUT,
            Class::AccessDenied | Class::NoCredentials => EX_NOPERM,
            Class::Throttled | Class::Unreachable | Class::ServiceError | Class::TimedOut => {
                EX_UNAVAILABLE
            }
            Class::Config => EX_CONFIG,
        }
    }

    /// Short label used in messages.
    pub fn label(self) -> &'static str {
        match self {
            Class::Malformed => "malformed reference",
            Class::BadCiphertext => "bad ciphertext",
            Class::NotFound => "not found",
            Class::AccessDenied => "access denied",
            Class::NoCredentials => "no credentials",
            Class::Throttled => "throttled",
            Class::Unreachable => "unreachable",
            Class::ServiceError => "service error",
            Class::TimedOut => "timed out",
            Class::Config => "configuration error",
        }
    }
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`), for names printed in messages and
/// tables: a variable name with a newline or an escape sequence cannot forge a log line.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The reason one lookup failed: a class and a detail that never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// What kind of failure.
    pub class: Class,
    /// What happened, for a human.
    pub detail: String,
    /// What to try, when the cause is known better than its class (printed once after the
    /// failures; otherwise the class's own hint, if any).
    pub hint: Option<&'static str>,
}

impl Reason {
    /// A reason of `class` with `detail`.
    pub fn new(class: Class, detail: impl Into<String>) -> Self {
        Reason {
            class,
            detail: detail.into(),
            hint: None,
        }
    }

    /// The same reason with advice for its actual cause.
    pub fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// The advice to print: the cause's, else the class's.
    pub fn advice(&self) -> Option<&'static str> {
        self.hint.or_else(|| hint(self.class))
    }
}

/// Advice when no region could be found.
pub const REGION_HINT: &str = "set --region or KMS_ENV_REGION, or AWS_REGION / AWS_DEFAULT_REGION, or a region in the AWS profile";

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.class.label())
        } else {
            write!(f, "{}: {}", self.class.label(), self.detail)
        }
    }
}

/// One variable that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The variable's name (lossy UTF-8 for display).
    pub variable: String,
    /// The reference kind and target, e.g. `kms` or `ssm /prod/db`.
    pub kind: String,
    /// Why.
    pub reason: Reason,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.variable, self.kind, self.reason)
    }
}

/// Everything that ends a run with a non-zero code before or instead of the application.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// References could not be resolved; the application was not started.
    #[error("{}", render_failures(.0, "could not be resolved; the application was not started"))]
    Resolve(Vec<Failure>),
    /// `check` found references that do not resolve.
    #[error("{}", render_failures(.0, "failed the check"))]
    Check(Vec<Failure>),
    /// A single value given on the command line or stdin could not be handled.
    #[error("{}", render_reason(.0))]
    Value(Reason),
    /// Bad usage that clap could not catch.
    #[error("{0}")]
    Usage(String),
    /// Reading input or writing output failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `execve` failed.
    #[error("cannot run {command:?}: {reason}")]
    Exec {
        /// The command as given.
        command: String,
        /// Human reason.
        reason: String,
        /// 126 or 127.
        code: u8,
    },
}

impl Error {
    /// The one mapping from an error to the process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            // The first failing variable in name order decides.
            Error::Resolve(failures) | Error::Check(failures) => failures
                .iter()
                .min_by(|a, b| a.variable.cmp(&b.variable))
                .map_or(EX_DATAERR, |f| f.reason.class.exit_code()),
            Error::Value(reason) => reason.class.exit_code(),
            Error::Usage(_) => EX_USAGE,
            Error::Io { .. } => EX_IOERR,
            Error::Exec { code, .. } => *code,
        }
    }
}

fn render_failures(failures: &[Failure], what: &str) -> String {
    let mut sorted: Vec<&Failure> = failures.iter().collect();
    sorted.sort_by(|a, b| a.variable.cmp(&b.variable));
    let n = sorted.len();
    let mut out = format!(
        "{n} {} {what}:",
        if n == 1 { "variable" } else { "variables" }
    );
    for f in &sorted {
        out.push_str("\n  ");
        out.push_str(&f.to_string());
    }
    let mut hinted = Vec::new();
    for f in &sorted {
        if let Some(h) = f.reason.advice()
            && !hinted.contains(&h)
        {
            hinted.push(h);
        }
    }
    for h in hinted {
        out.push_str("\nhint: ");
        out.push_str(h);
    }
    out
}

fn render_reason(reason: &Reason) -> String {
    match reason.advice() {
        Some(h) => format!("{reason}\nhint: {h}"),
        None => reason.to_string(),
    }
}

/// Advice printed once after the failures of a class.
pub fn hint(class: Class) -> Option<&'static str> {
    match class {
        Class::NoCredentials => Some(
            "no AWS credentials were found. Tried, in order: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             the profile (AWS_PROFILE, ~/.aws/config and credentials), web identity \
             (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), ECS container credentials \
             (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI) and EC2 instance metadata \
             (unless AWS_EC2_METADATA_DISABLED=true). On ECS, give the task a task role.",
        ),
        Class::TimedOut => Some("raise the deadline with --timeout or KMS_ENV_TIMEOUT"),
        Class::Unreachable => Some(
            "check the endpoint (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>, a VPC endpoint's \
             DNS), the proxy settings (HTTPS_PROXY, NO_PROXY) and that the network lets the task \
             reach it",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(variable: &str, class: Class) -> Failure {
        Failure {
            variable: variable.into(),
            kind: "kms".into(),
            reason: Reason::new(class, "x"),
        }
    }

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(printable("DB_PASSWORD"), "DB_PASSWORD");
        assert_eq!(printable("A\nB\x1b[31m"), "A\\nB\\u{1b}[31m");
        assert_eq!(printable("Ünïcode"), "Ünïcode");
    }

    #[test]
    fn exit_code_is_that_of_the_first_variable_by_name() {
        let e = Error::Resolve(vec![
            failure("ZED", Class::NotFound),
            failure("ALPHA", Class::AccessDenied),
            failure("MID", Class::Malformed),
        ]);
        assert_eq!(e.exit_code(), EX_NOPERM);
    }

    #[test]
    fn classes_map_to_design_codes() {
        assert_eq!(Class::Malformed.exit_code(), 65);
        assert_eq!(Class::BadCiphertext.exit_code(), 65);
        assert_eq!(Class::NotFound.exit_code(), 66);
        assert_eq!(Class::Throttled.exit_code(), 69);
        assert_eq!(Class::Unreachable.exit_code(), 69);
        assert_eq!(Class::TimedOut.exit_code(), 69);
        assert_eq!(Class::AccessDenied.exit_code(), 77);
        assert_eq!(Class::NoCredentials.exit_code(), 77);
        assert_eq!(Class::Config.exit_code(), 78);
    }

    #[test]
    fn message_lists_every_failure_sorted_with_hints_once() {
        let e = Error::Resolve(vec![
            failure("B", Class::NoCredentials),
            failure("A", Class::NoCredentials),
        ]);
        let msg = e.to_string();
        assert!(msg.starts_with("2 variables could not be resolved"));
        let a = msg.find("\n  A (kms)").unwrap();
        let b = msg.find("\n  B (kms)").unwrap();
        assert!(a < b);
        assert_eq!(msg.matches("hint:").count(), 1);
    }
}
