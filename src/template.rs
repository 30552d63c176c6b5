//! Pure: `tmpl:` values, composed from several references (README "Templates").
//!
//! `tmpl:postgres://{{ sm:prod/db#username }}:{{ sm:prod/db#password | urlencode }}@db:5432/app`
//! is literal text and placeholders; a placeholder is a reference of any kind (whitespace around
//! it ignored) and filters after `|`: `urlencode` (percent-encode everything outside RFC 3986's
//! unreserved characters), `json` (the value as the body of a JSON string, without the quotes),
//! `base64`. `\{{` is a literal `{{`. This module owns that grammar and the filters; each
//! placeholder's reference is planned by its own source, so its lookups are shared with the rest
//! of the environment.

use crate::error::{Class, Reason};
use crate::secret::Secret;
use base64::Engine as _;

/// Prefix of a template.
pub const PREFIX: &str = "tmpl:";

/// What a filter does to a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// Percent-encode everything outside `A-Z a-z 0-9 - . _ ~`.
    Urlencode,
    /// The value as the body of a JSON string, without quotes.
    Json,
    /// Standard base64 with padding.
    Base64,
}

/// One piece of a template, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal text.
    Text(String),
    /// A placeholder: its reference (as written, trimmed) and its filters.
    Placeholder {
        /// The reference, e.g. `sm:prod/db#password`.
        reference: String,
        /// Applied in order.
        filters: Vec<Filter>,
        /// Byte offset of its `{{` in the template, for messages.
        at: usize,
    },
}

fn malformed(at: usize, detail: &str) -> Reason {
    Reason::new(
        Class::Malformed,
        format!("the template at position {at}: {detail}"),
    )
}

/// Parses what follows `tmpl:`. A placeholder must hold a reference (`is_reference` says whether
/// a text is one); messages give positions, never the template's text.
pub fn parse(body: &str, is_reference: impl Fn(&str) -> bool) -> Result<Vec<Piece>, Reason> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = body;
    let mut offset = 0;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("\\{{") {
            text.push_str("{{");
            offset += 3;
            rest = after;
            continue;
        }
        if let Some(after) = rest.strip_prefix("{{") {
            let at = offset;
            let Some(end) = after.find("}}") else {
                return Err(malformed(at, "'{{' is not closed by '}}'"));
            };
            let inner = &after[..end];
            let mut parts = inner.split('|');
            let reference = parts.next().unwrap_or_default().trim();
            if reference.is_empty() {
                return Err(malformed(at, "'{{ }}' holds no reference"));
            }
            if reference.starts_with(PREFIX) {
                return Err(malformed(at, "a template cannot hold another template"));
            }
            if !is_reference(reference) {
                return Err(malformed(
                    at,
                    "'{{ }}' must hold a reference (kms:, ssm:, sm:, secure:); write \\{{ for a literal '{{'",
                ));
            }
            let filters = parts
                .map(|f| match f.trim() {
                    "urlencode" => Ok(Filter::Urlencode),
                    "json" => Ok(Filter::Json),
                    "base64" => Ok(Filter::Base64),
                    _ => Err(malformed(
                        at,
                        "unknown filter (urlencode, json and base64 are known)",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Placeholder {
                reference: reference.to_owned(),
                filters,
                at,
            });
            let used = 2 + end + 2;
            offset += used;
            rest = &rest[used..];
            continue;
        }
        let c = rest.chars().next().unwrap_or_default();
        text.push(c);
        offset += c.len_utf8();
        rest = &rest[c.len_utf8()..];
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

/// RFC 3986's unreserved characters stay; everything else is percent-encoded.
const NOT_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Applies `filter` to a value.
pub fn apply(filter: Filter, value: &Secret) -> Result<Secret, Reason> {
    let bytes = value.expose();
    Ok(match filter {
        Filter::Urlencode => {
            Secret::from(percent_encoding::percent_encode(bytes, NOT_UNRESERVED).to_string())
        }
        Filter::Base64 => Secret::from(base64::engine::general_purpose::STANDARD.encode(bytes)),
        Filter::Json => {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                Reason::new(
                    Class::Malformed,
                    "the json filter needs UTF-8 text, and the value is not",
                )
            })?;
            let quoted = Secret::from(serde_json::Value::from(text).to_string());
            let inner = quoted.expose();
            Secret::new(inner[1..inner.len() - 1].to_vec())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_ref(s: &str) -> bool {
        ["kms:", "ssm:", "sm:", "secure:"]
            .iter()
            .any(|p| s.starts_with(p))
    }

    fn p(body: &str) -> Result<Vec<Piece>, Reason> {
        parse(body, is_ref)
    }

    #[test]
    fn pieces() {
        let pieces =
            p("postgres://{{ sm:db#user }}:{{sm:db#password|urlencode | base64}}@h/\\{{x}}")
                .unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Text("postgres://".into()),
                Piece::Placeholder {
                    reference: "sm:db#user".into(),
                    filters: vec![],
                    at: 11
                },
                Piece::Text(":".into()),
                Piece::Placeholder {
                    reference: "sm:db#password".into(),
                    filters: vec![Filter::Urlencode, Filter::Base64],
                    at: 28
                },
                Piece::Text("@h/{{x}}".into()),
            ]
        );
        assert_eq!(p("").unwrap(), vec![]);
        assert_eq!(p("plain ü").unwrap(), vec![Piece::Text("plain ü".into())]);
    }

    #[test]
    fn malformed_templates_name_the_position_never_the_text() {
        for (bad, at) in [
            ("a{{ sm:x", 1),
            ("{{ }}", 0),
            ("ab{{ password }}", 2),
            ("{{ sm:x | upper }}", 0),
            ("{{ tmpl:{{ sm:x }} }}", 0),
        ] {
            let r = p(bad).unwrap_err();
            assert_eq!(r.class, Class::Malformed, "{bad}");
            assert!(
                r.detail.contains(&format!("position {at}")),
                "{bad}: {}",
                r.detail
            );
            assert!(!r.detail.contains("password"), "{}", r.detail);
        }
    }

    #[test]
    fn filters() {
        let v = Secret::new("p@ss:/?#% wörd".as_bytes().to_vec());
        assert_eq!(
            apply(Filter::Urlencode, &v).unwrap().expose(),
            b"p%40ss%3A%2F%3F%23%25%20w%C3%B6rd"
        );
        assert_eq!(
            apply(Filter::Urlencode, &Secret::new(b"A-z_0.9~".to_vec()))
                .unwrap()
                .expose(),
            b"A-z_0.9~"
        );
        assert_eq!(
            apply(Filter::Json, &Secret::new(b"a\"b\\c\n".to_vec()))
                .unwrap()
                .expose(),
            br#"a\"b\\c\n"#
        );
        assert_eq!(
            apply(Filter::Base64, &Secret::new(vec![0, 1, 2]))
                .unwrap()
                .expose(),
            b"AAEC"
        );
        assert!(apply(Filter::Json, &Secret::new(vec![0xff])).is_err());
    }
}
