//! Pure: loading many variables from one spec (README "Loading many variables").
//!
//! A spec is `[PREFIX_=]ssm:/path/*`, `ssm:/path/**`, `ssm:/path/**:label` or
//! `sm:<secret>[:selector]#*`, optionally followed by `?optional`; `KMS_ENV_LOAD` holds several,
//! separated by commas or newlines, and `--load` gives one each. This module owns the spec
//! list's grammar (the sources' own parts are parsed by `source::ssm` and `source::sm`), the rule
//! that turns a parameter or key into a variable name, and the names a load may never set.

use crate::error::{Class, Reason};
use crate::source::sm::{self, SecretVersion};
use crate::source::ssm::{self, PathLoad};

/// The helper variable that lists load specs.
pub const LOAD_VAR: &str = "KMS_ENV_LOAD";

/// Where a load comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadSource {
    /// Every parameter under a path.
    Ssm(PathLoad),
    /// Every key of a JSON secret.
    Sm(SecretVersion),
}

/// One load spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    /// The spec as written (for messages; names a path or a secret, never a value).
    pub text: String,
    /// Put in front of every name.
    pub prefix: String,
    /// `?optional`: loading nothing is fine.
    pub optional: bool,
    /// What to load.
    pub source: LoadSource,
}

fn malformed(detail: impl Into<String>) -> Reason {
    Reason::new(Class::Malformed, detail)
}

/// The specs of a list (commas or newlines between them; blank entries ignored).
pub fn parse_list(list: &str) -> Vec<Result<LoadSpec, Reason>> {
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

/// One spec.
pub fn parse(spec: &str) -> Result<LoadSpec, Reason> {
    let text = spec.trim().to_owned();
    let (body, optional) = match text.strip_suffix("?optional") {
        Some(body) => (body, true),
        None => (text.as_str(), false),
    };
    let (prefix, body) = match body.split_once('=') {
        Some((prefix, rest))
            if !prefix.is_empty()
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && (rest.starts_with(ssm::PREFIX) || rest.starts_with(sm::PREFIX)) =>
        {
            (prefix.to_owned(), rest)
        }
        _ => (String::new(), body),
    };
    let source = if let Some(rest) = body.strip_prefix(ssm::PREFIX) {
        LoadSource::Ssm(ssm::parse_load(rest)?)
    } else if let Some(rest) = body.strip_prefix(sm::PREFIX) {
        LoadSource::Sm(sm::parse_load(rest)?)
    } else {
        return Err(malformed(
            "a load spec is [PREFIX_=]ssm:/path/*, ssm:/path/** or sm:<secret>#*, optionally ?optional",
        ));
    };
    Ok(LoadSpec {
        text,
        prefix,
        optional,
        source,
    })
}

/// The variable a loaded `relative` name (the part below the path, or the JSON key) becomes:
/// upper-cased, every character outside `[A-Za-z0-9_]` turned into `_`, the prefix in front, and
/// `_` in front of that when it starts with a digit. `db/password` → `DB_PASSWORD`.
pub fn variable_name(prefix: &str, relative: &str) -> String {
    let mapped: String = relative
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{prefix}{mapped}");
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{name}")
    } else {
        name
    }
}

/// Names that change how the application, its shell or its runtime starts, or what kms-env and
/// the AWS SDK do: a load may never set them (a prefix that keeps the name off this list is the
/// way to load such keys).
const REFUSED: &[&str] = &[
    "PATH",
    "HOME",
    "SHELL",
    "IFS",
    "ENV",
    "BASH_ENV",
    "CDPATH",
    "PS4",
    "PROMPT_COMMAND",
    "NODE_OPTIONS",
    "NODE_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "CLASSPATH",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONHOME",
    "PYTHONINSPECT",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "GCONV_PATH",
    "GLIBC_TUNABLES",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "TMPDIR",
    "KMS_DATA_KEY",
];

/// Prefixes of names a load may never set.
const REFUSED_PREFIXES: &[&str] = &[
    "LD_",
    "DYLD_",
    "KMS_ENV_",
    "KMS_ENCRYPTED_",
    "AWS_",
    "MALLOC_",
];

/// Whether a load may not set `name`.
pub fn refused(name: &str) -> bool {
    REFUSED.contains(&name) || REFUSED_PREFIXES.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_lists() {
        let specs = parse_list(
            "ssm:/prod/billing/*, SHARED_=ssm:/prod/shared/**\n ssm:/prod/x/**:stable?optional,,sm:prod/cfg:AWSPREVIOUS#*",
        );
        let specs: Vec<LoadSpec> = specs.into_iter().map(Result::unwrap).collect();
        assert_eq!(specs.len(), 4);
        assert_eq!(
            specs[0].source,
            LoadSource::Ssm(PathLoad {
                path: "/prod/billing".into(),
                recursive: false,
                label: None
            })
        );
        assert_eq!(specs[1].prefix, "SHARED_");
        assert!(matches!(&specs[1].source, LoadSource::Ssm(p) if p.recursive));
        assert!(specs[2].optional);
        assert!(
            matches!(&specs[2].source, LoadSource::Ssm(p) if p.label.as_deref() == Some("stable"))
        );
        assert!(matches!(&specs[3].source, LoadSource::Sm(s) if s.id == "prod/cfg"));
        assert_eq!(
            parse("ssm:/*").unwrap().source,
            LoadSource::Ssm(PathLoad {
                path: "/".into(),
                recursive: false,
                label: None
            })
        );
        // A secret name may hold '=': without a variable-name prefix before ssm:/sm:, it is a name.
        assert!(matches!(parse("sm:a=b#*").unwrap().source, LoadSource::Sm(s) if s.id == "a=b"));
    }

    #[test]
    fn malformed_specs() {
        for bad in [
            "ssm:/prod/billing",
            "ssm:prod/*",
            "ssm:/prod//*",
            "sm:prod/cfg",
            "sm:prod/cfg#key",
            "kms:AQI=",
            "X-Y=ssm:/p/*",
            "ssm:/p/**:bad label",
        ] {
            assert_eq!(parse(bad).unwrap_err().class, Class::Malformed, "{bad}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(variable_name("", "db/password"), "DB_PASSWORD");
        assert_eq!(variable_name("SHARED_", "api.key-2"), "SHARED_API_KEY_2");
        assert_eq!(variable_name("", "2fa-secret"), "_2FA_SECRET");
        assert_eq!(variable_name("", "ünï"), "_N_");
        assert!(refused("PATH") && refused("LD_PRELOAD") && refused("AWS_ACCESS_KEY_ID"));
        assert!(refused("KMS_ENV_TIMEOUT") && refused("NODE_OPTIONS"));
        assert!(!refused("APP_PATH") && !refused("DB_PASSWORD"));
    }
}
