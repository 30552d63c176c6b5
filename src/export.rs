//! Pure rendering of resolved variables for `kms-env export`: POSIX shell, Docker env-file and
//! JSON. Each format either represents a value exactly or refuses it with an error that names
//! the variable (never the value).

use crate::cli::ExportFormat;
use crate::error::{Class, Reason, printable};
use crate::secret::Secret;
use crate::value::{Value, Vars};
use std::os::unix::ffi::OsStrExt;

/// Renders `vars`. A resolved value that the format cannot hold is an error; a plain value
/// (only printed with `--all`) that it cannot hold is skipped and its name returned.
pub fn render(vars: &Vars, format: ExportFormat) -> Result<(Secret, Vec<String>), Reason> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    if format == ExportFormat::Json {
        out.push(b'{');
    }
    let mut first = true;
    for (name, value) in vars {
        let (bytes, resolved) = match value {
            Value::Plain(v) => (v.as_bytes(), false),
            Value::Secret(s) => (s.expose(), true),
            Value::File(_) => {
                return Err(Reason::new(
                    Class::Malformed,
                    format!(
                        "{}: the plaintext of a *_FILE variable goes to a file, which export cannot \
                         deliver; run the application through `kms-env exec`",
                        printable(&name.to_string_lossy())
                    ),
                ));
            }
        };
        let name_bytes = name.as_bytes();
        let problem = match format {
            ExportFormat::Shell => shell(&mut out, name_bytes, bytes),
            ExportFormat::Dotenv => dotenv(&mut out, name_bytes, bytes),
            ExportFormat::Json => json(&mut out, name_bytes, bytes, first),
        };
        match problem {
            Ok(()) => first = false,
            Err(why) if resolved => {
                return Err(Reason::new(
                    Class::Malformed,
                    format!("{}: {why}", printable(&name.to_string_lossy())),
                ));
            }
            Err(_) => skipped.push(printable(&name.to_string_lossy())),
        }
    }
    if format == ExportFormat::Json {
        out.extend_from_slice(if first { b"}\n" } else { b"\n}\n" });
    }
    Ok((Secret::new(out), skipped))
}

fn shell(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    let ident = name
        .first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if !ident {
        return Err("the name is not a shell variable name");
    }
    out.extend_from_slice(b"export ");
    out.extend_from_slice(name);
    out.extend_from_slice(b"='");
    for &b in value {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.extend_from_slice(b"'\n");
    Ok(())
}

/// Docker's env-file: `NAME=VALUE`, the value literal to the end of the line, UTF-8 only.
fn dotenv(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Result<(), &'static str> {
    if name.is_empty()
        || name[0] == b'#'
        || name.iter().any(|b| b.is_ascii_whitespace() || *b == b'=')
        || std::str::from_utf8(name).is_err()
    {
        return Err("the name cannot be written to a Docker env file");
    }
    if value.iter().any(|b| *b == b'\n' || *b == b'\r') {
        return Err(
            "a Docker env file cannot hold a value with a line break; use --format json or shell",
        );
    }
    if std::str::from_utf8(value).is_err() {
        return Err("a Docker env file holds UTF-8 only and the value is not UTF-8");
    }
    out.extend_from_slice(name);
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
    Ok(())
}

fn json(out: &mut Vec<u8>, name: &[u8], value: &[u8], first: bool) -> Result<(), &'static str> {
    let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
        return Err("JSON holds UTF-8 only and the variable is not UTF-8");
    };
    out.extend_from_slice(if first { b"\n  " } else { b",\n  " });
    out.extend_from_slice(serde_json::to_string(name).unwrap_or_default().as_bytes());
    out.extend_from_slice(b": ");
    let quoted = zeroize::Zeroizing::new(serde_json::to_string(value).unwrap_or_default());
    out.extend_from_slice(quoted.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn vars(pairs: &[(&str, &[u8])]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), Value::Secret(Secret::new(v.to_vec()))))
            .collect()
    }

    fn text(v: &Vars, f: ExportFormat) -> String {
        String::from_utf8(render(v, f).unwrap().0.expose().to_vec()).unwrap()
    }

    #[test]
    fn shell_single_quotes() {
        let v = vars(&[("A", b"it's \"$x\"\n`y`")]);
        assert_eq!(
            text(&v, ExportFormat::Shell),
            "export A='it'\\''s \"$x\"\n`y`'\n"
        );
    }

    #[test]
    fn shell_refuses_bad_names() {
        let e = render(&vars(&[("A-B", b"v")]), ExportFormat::Shell).unwrap_err();
        assert!(e.detail.starts_with("A-B:"));
        let mut plain = vars(&[("OK", b"v")]);
        plain.push(("1X".into(), Value::Plain("p".into())));
        let (_, skipped) = render(&plain, ExportFormat::Shell).unwrap();
        assert_eq!(skipped, vec!["1X"]);
    }

    #[test]
    fn dotenv_refuses_line_breaks_and_non_utf8() {
        assert_eq!(
            text(&vars(&[("A", b"x = 'y'")]), ExportFormat::Dotenv),
            "A=x = 'y'\n"
        );
        for bad in [&b"a\nb"[..], b"a\rb", b"\xff"] {
            let e = render(&vars(&[("SECRET_NAME", bad)]), ExportFormat::Dotenv).unwrap_err();
            assert_eq!(e.class, Class::Malformed);
            assert!(e.detail.starts_with("SECRET_NAME:"));
        }
    }

    #[test]
    fn json_is_exact_and_ordered() {
        let v = vars(&[("Z", b"a\"b\\c\n\x01"), ("A", "ü".as_bytes())]);
        let t = text(&v, ExportFormat::Json);
        assert_eq!(
            t,
            "{\n  \"Z\": \"a\\\"b\\\\c\\n\\u0001\",\n  \"A\": \"ü\"\n}\n"
        );
        let parsed: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(parsed["Z"], "a\"b\\c\n\u{1}");
        assert_eq!(text(&Vec::new(), ExportFormat::Json), "{}\n");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Quote, then parse back with an independent POSIX word parser: identical text.
            #[test]
            fn shell_quoting_round_trips(value in "[^\\x00]{0,80}") {
                let v = vars(&[("NAME", value.as_bytes())]);
                let (out, _) = render(&v, ExportFormat::Shell).unwrap();
                let line = std::str::from_utf8(out.expose()).unwrap();
                let words = shell_words::split(line.strip_suffix('\n').unwrap()).unwrap();
                prop_assert_eq!(words, vec!["export".to_owned(), format!("NAME={value}")]);
            }

            #[test]
            fn json_round_trips(value in "[^\\x00]{0,80}") {
                let v = vars(&[("NAME", value.as_bytes())]);
                let (out, _) = render(&v, ExportFormat::Json).unwrap();
                let parsed: serde_json::Value = serde_json::from_slice(out.expose()).unwrap();
                prop_assert_eq!(parsed["NAME"].as_str().unwrap(), value.as_str());
            }
        }
    }
}
