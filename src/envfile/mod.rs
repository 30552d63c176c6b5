//! The original kms-env's env files (README "`init`, `add`, `show`"), pure: parsing, editing and rendering.
//!
//! A file is `KEY=VALUE` lines; `KMS_DATA_KEY` and `AWS_REGION` come first. Versions up to 0.2.0
//! wrote `KEY = VALUE`, so whitespace around the key and the value is trimmed on reading, as the
//! original did. Blank lines and `#` comments are kept where they are (the original had none,
//! but people add them). Everything is written back as `KEY=VALUE`, one per line, in the same
//! order. The value cipher lives in [`crypto`].

pub mod crypto;

pub use crate::dotenv::ParseError;
use crate::source::kms::DATA_KEY_VAR;

/// The variable holding the data key's region.
pub const REGION_VAR: &str = "AWS_REGION";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Pair { key: String, value: String },
    Other(String),
}

/// A parsed env file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnvFile {
    lines: Vec<Line>,
}

/// Whether `key` is a name the original accepted: `[A-Za-z0-9_]+`.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl EnvFile {
    /// Parses the text of a file.
    pub fn parse(text: &str) -> Result<EnvFile, ParseError> {
        let mut lines = Vec::new();
        let mut raw: Vec<&str> = text.split('\n').collect();
        if raw.last() == Some(&"") {
            raw.pop();
        }
        for (i, line) in raw.into_iter().enumerate() {
            // CRLF files; a blank line of carriage returns is just blank.
            let line = line.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Other(line.to_owned()));
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ParseError {
                    line: i + 1,
                    detail: "expected KEY=VALUE",
                });
            };
            let key = key.trim();
            if !valid_key(key) {
                return Err(ParseError {
                    line: i + 1,
                    detail: "the name must be letters, digits and '_'",
                });
            }
            lines.push(Line::Pair {
                key: key.to_owned(),
                value: value.trim().to_owned(),
            });
        }
        Ok(EnvFile { lines })
    }

    /// The file as text: `KEY=VALUE` lines, each ending in a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Pair { key, value } => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(value);
                }
                Line::Other(text) => out.push_str(text),
            }
            out.push('\n');
        }
        out
    }

    /// The `KEY=VALUE` pairs in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Pair { key, value } => Some((key.as_str(), value.as_str())),
            Line::Other(_) => None,
        })
    }

    /// The first key that is given more than once, if any.
    pub fn duplicate_key(&self) -> Option<&str> {
        let mut seen = std::collections::HashSet::new();
        self.pairs().map(|(k, _)| k).find(|k| !seen.insert(*k))
    }

    /// The value of the first `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Replaces the value of every `key` in place, or appends `key=value`.
    pub fn set(&mut self, key: &str, value: String) {
        let mut found = false;
        for line in &mut self.lines {
            if let Line::Pair { key: k, value: v } = line
                && k == key
            {
                v.clone_from(&value);
                found = true;
            }
        }
        if !found {
            self.lines.push(Line::Pair {
                key: key.to_owned(),
                value,
            });
        }
    }

    /// Replaces every value for which `f` returns `Some`.
    pub fn map_values<E>(
        &mut self,
        mut f: impl FnMut(&str, &str) -> Result<Option<String>, E>,
    ) -> Result<(), E> {
        for line in &mut self.lines {
            if let Line::Pair { key, value } = line
                && let Some(new) = f(key, value)?
            {
                *value = new;
            }
        }
        Ok(())
    }

    /// Removes every `key=…` line.
    pub fn remove(&mut self, key: &str) {
        self.lines
            .retain(|l| !matches!(l, Line::Pair { key: k, .. } if k == key));
    }

    /// Puts `KMS_DATA_KEY` and `AWS_REGION` first, removing any earlier ones.
    pub fn set_header(&mut self, data_key: String, region: String) {
        self.lines.retain(
            |l| !matches!(l, Line::Pair { key, .. } if key == DATA_KEY_VAR || key == REGION_VAR),
        );
        self.lines.splice(
            0..0,
            [
                Line::Pair {
                    key: DATA_KEY_VAR.to_owned(),
                    value: data_key,
                },
                Line::Pair {
                    key: REGION_VAR.to_owned(),
                    value: region,
                },
            ],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_spellings_and_keeps_other_lines() {
        let text = "KMS_DATA_KEY=AQID\nAWS_REGION = us-east-1\n\n# db\nDB = secure:00$11 \r\nEMPTY=\nEQ=a=b\n";
        let f = EnvFile::parse(text).unwrap();
        assert_eq!(f.get("AWS_REGION"), Some("us-east-1"));
        assert_eq!(f.get("DB"), Some("secure:00$11"));
        assert_eq!(f.get("EMPTY"), Some(""));
        assert_eq!(f.get("EQ"), Some("a=b"));
        assert_eq!(
            f.render(),
            "KMS_DATA_KEY=AQID\nAWS_REGION=us-east-1\n\n# db\nDB=secure:00$11\nEMPTY=\nEQ=a=b\n"
        );
    }

    #[test]
    fn carriage_returns_render_stably() {
        // Found by the `envfile` fuzz target.
        let f = EnvFile::parse("\r\r").unwrap();
        assert_eq!(EnvFile::parse(&f.render()).unwrap(), f);
        assert_eq!(EnvFile::parse("A=1\r\r\n").unwrap().get("A"), Some("1"));
    }

    #[test]
    fn reads_the_original_output_without_final_newline() {
        let f = EnvFile::parse("KMS_DATA_KEY=x\nAWS_REGION=r\nA=secure:ab").unwrap();
        assert_eq!(f.pairs().count(), 3);
    }

    #[test]
    fn malformed_lines_name_their_number_not_their_content() {
        let e = EnvFile::parse("A=1\n\nthis is a secret line\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(!e.to_string().contains("secret"));
        assert_eq!(EnvFile::parse("A-B=1").unwrap_err().line, 1);
        assert_eq!(EnvFile::parse("=1").unwrap_err().line, 1);
    }

    #[test]
    fn set_replaces_in_place_or_appends_and_header_goes_first() {
        let mut f = EnvFile::parse("A=1\nAWS_REGION=old\nB=2\nKMS_DATA_KEY=old\n").unwrap();
        f.set("A", "10".into());
        f.set("C", "3".into());
        f.set_header("NEWKEY".into(), "eu-west-1".into());
        assert_eq!(
            f.render(),
            "KMS_DATA_KEY=NEWKEY\nAWS_REGION=eu-west-1\nA=10\nB=2\nC=3\n"
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics(text in "\\PC{0,400}") {
                let _ = EnvFile::parse(&text);
            }

            #[test]
            fn render_then_parse_is_the_same_file(text in "([A-Za-z0-9_ ]{0,8}(=[^\n]{0,30})?\n){0,12}") {
                if let Ok(file) = EnvFile::parse(&text) {
                    prop_assert_eq!(EnvFile::parse(&file.render()).unwrap(), file);
                }
            }

            #[test]
            fn written_pairs_read_back(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,10}", "[^\n\r]{0,40}"), 0..10)) {
                let mut file = EnvFile::default();
                for (k, v) in &pairs {
                    file.set(k, v.trim().to_owned());
                }
                let back = EnvFile::parse(&file.render()).unwrap();
                prop_assert_eq!(back, file);
            }
        }
    }
}
