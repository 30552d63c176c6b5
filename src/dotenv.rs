//! Pure dotenv parsing and writing for `encrypt --env-file` and `check --env-file`.
//!
//! What dotenv users expect: blank lines and `#` comments, an optional `export ` prefix,
//! `KEY=value`, `KEY = value`, unquoted values trimmed and cut at ` #`, `'single'` quotes taken
//! literally, `"double"` quotes with the escapes `\n \r \t \" \\ \$`, and quoted values that span
//! lines. There is deliberately **no** `$VAR` expansion: a `$` in a secret stays a `$`. Errors
//! give the line number, never the line.

use std::fmt;

/// One `KEY=value` of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// The key.
    pub key: String,
    /// The value, unquoted and unescaped.
    pub value: String,
    /// Whether the value was in quotes (which `docker --env-file` and ECS `environmentFiles`
    /// would pass on literally).
    pub quoted: bool,
}

/// What is wrong with a file (dotenv or the original kms-env's), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong (never the line's content: it may be a secret).
    pub detail: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.detail)
    }
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.chars.next();
        if c == Some('\n') {
            self.line += 1;
        }
        c
    }
    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.next();
        }
    }
    fn rest_of_line(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            s.push(c);
            self.next();
        }
        s
    }
    fn error(&self, detail: &'static str) -> ParseError {
        ParseError {
            line: self.line,
            detail,
        }
    }
}

/// Whether `key` is a usable variable name: a letter or `_`, then letters, digits, `_`, `.`, `-`.
pub fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Parses a dotenv file into its pairs, in order.
pub fn parse(text: &str) -> Result<Vec<Pair>, ParseError> {
    let mut cur = Cursor {
        chars: text.chars().peekable(),
        line: 1,
    };
    let mut pairs = Vec::new();
    loop {
        // Blank space between entries, and comment lines.
        while matches!(cur.peek(), Some(' ' | '\t' | '\r' | '\n')) {
            cur.next();
        }
        match cur.peek() {
            None => return Ok(pairs),
            Some('#') => {
                cur.rest_of_line();
                continue;
            }
            Some(_) => {}
        }
        let mut key = String::new();
        while let Some(c) = cur.peek() {
            if c == '=' || c == ' ' || c == '\t' || c == '\n' {
                break;
            }
            key.push(c);
            cur.next();
        }
        if key == "export" && matches!(cur.peek(), Some(' ' | '\t')) {
            cur.skip_blanks();
            key.clear();
            while let Some(c) = cur.peek() {
                if c == '=' || c == ' ' || c == '\t' || c == '\n' {
                    break;
                }
                key.push(c);
                cur.next();
            }
        }
        if !valid_key(&key) {
            return Err(cur.error("expected KEY=value with a valid KEY"));
        }
        cur.skip_blanks();
        if cur.next() != Some('=') {
            return Err(cur.error("expected '=' after the key"));
        }
        cur.skip_blanks();
        let quoted = matches!(cur.peek(), Some('\'' | '"'));
        let value = match cur.peek() {
            Some('\'') => {
                cur.next();
                let mut v = String::new();
                loop {
                    match cur.next() {
                        Some('\'') => break,
                        Some(c) => v.push(c),
                        None => return Err(cur.error("unterminated single quote")),
                    }
                }
                end_of_quoted(&mut cur)?;
                v
            }
            Some('"') => {
                cur.next();
                let mut v = String::new();
                loop {
                    match cur.next() {
                        Some('"') => break,
                        Some('\\') => match cur.next() {
                            Some('n') => v.push('\n'),
                            Some('r') => v.push('\r'),
                            Some('t') => v.push('\t'),
                            Some(c @ ('"' | '\\' | '$')) => v.push(c),
                            Some(c) => {
                                v.push('\\');
                                v.push(c);
                            }
                            None => return Err(cur.error("unterminated double quote")),
                        },
                        Some(c) => v.push(c),
                        None => return Err(cur.error("unterminated double quote")),
                    }
                }
                end_of_quoted(&mut cur)?;
                v
            }
            _ => {
                let line = cur.rest_of_line();
                let line = line.strip_suffix('\r').unwrap_or(&line);
                let cut = line
                    .char_indices()
                    .find(|&(i, c)| c == '#' && i > 0 && line[..i].ends_with([' ', '\t']))
                    .map_or(line.len(), |(i, _)| i);
                line[..cut].trim_end().to_owned()
            }
        };
        pairs.push(Pair { key, value, quoted });
    }
}

fn end_of_quoted(cur: &mut Cursor<'_>) -> Result<(), ParseError> {
    cur.skip_blanks();
    match cur.peek() {
        None | Some('\n' | '\r') => Ok(()),
        Some('#') => {
            cur.rest_of_line();
            Ok(())
        }
        Some(_) => Err(cur.error("unexpected text after the closing quote")),
    }
}

/// Writes one `KEY=value` line that [`parse`] reads back exactly: bare when safe, otherwise
/// double-quoted with escapes.
pub fn write_pair(out: &mut String, key: &str, value: &str) {
    out.push_str(key);
    out.push('=');
    let bare = !value.is_empty()
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || "_-.,:/+=@%^~[]{}()!?*&<>;|".contains(c)
                || (!c.is_ascii() && !c.is_whitespace())
        })
        && !value.starts_with(['\'', '"']);
    if bare {
        out.push_str(value);
    } else {
        out.push('"');
        for c in value.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '"' | '\\' | '$' => {
                    out.push('\\');
                    out.push(c);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn the_forms_dotenv_users_write() {
        let text = r#"
# a comment
export A=plain value   # trailing comment
B = spaced
C='single $x "q" # not a comment'
D="double \"q\" \n \$HOME \\ \q"
E=
F=a#b
G="multi
line"  # comment
H=url=https://x/y?a=b
"#;
        assert_eq!(
            kv(text),
            vec![
                p("A", "plain value"),
                p("B", "spaced"),
                p("C", "single $x \"q\" # not a comment"),
                p("D", "double \"q\" \n $HOME \\ \\q"),
                p("E", ""),
                p("F", "a#b"),
                p("G", "multi\nline"),
                p("H", "url=https://x/y?a=b"),
            ]
        );
    }

    #[test]
    fn crlf_files() {
        assert_eq!(kv("A=1\r\nB='2'\r\n"), vec![p("A", "1"), p("B", "2")]);
    }

    #[test]
    fn errors_name_the_line_only() {
        let e = parse("A=1\nB='unterminated secret\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(!e.to_string().contains("secret"));
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().line, 2);
        assert_eq!(parse("1A=1").unwrap_err().line, 1);
        assert_eq!(parse("A='x' y").unwrap_err().line, 1);
    }

    #[test]
    fn written_pairs_read_back_exactly() {
        for value in [
            "",
            "simple",
            "with space",
            "quote ' and \" and $HOME and `x` and \\",
            "line\nbreak\r\n\ttab",
            "# not a comment",
            "trailing space ",
            "'starts with quote",
            "ünï 🔑",
            "\u{2000}",
            "x\u{a0}",
            "kms:AQICAHh+/==",
        ] {
            let mut out = String::new();
            write_pair(&mut out, "K", value);
            assert_eq!(kv(&out), vec![p("K", value)], "{out}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics(text in "\\PC{0,400}") {
                let _ = parse(&text);
            }

            #[test]
            fn written_pairs_read_back(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_.-]{0,10}", "\\PC{0,40}"), 0..8)) {
                let mut out = String::new();
                for (k, v) in &pairs {
                    write_pair(&mut out, k, v);
                }
                let back: Vec<(String, String)> = parse(&out).unwrap().into_iter().map(|p| (p.key, p.value)).collect();
                prop_assert_eq!(back, pairs);
            }
        }
    }
}
