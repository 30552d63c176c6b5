//! Pure rendering of `check`'s results: the table and the minimal IAM policy (assembled from
//! each source's statements). Neither ever holds a value: only names, kinds, ARNs, versions,
//! encryption contexts and statuses.

use crate::plan::Row;
use crate::source::{self, Grant};
use serde_json::{Value, json};

/// The table: VARIABLE, KIND, SOURCE (key, parameter or secret ARN), VERSION, STATUS.
pub fn table(rows: &[Row]) -> String {
    let header = ["VARIABLE", "KIND", "SOURCE", "VERSION", "STATUS"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.variable.clone(),
                r.kind.clone(),
                r.source.clone().unwrap_or_else(|| "-".into()),
                r.version.clone().unwrap_or_else(|| "-".into()),
                match &r.status {
                    Ok(()) => "ok".into(),
                    Err(reason) => reason.to_string(),
                },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: [&str; 5]| {
        let mut l = String::new();
        for (i, c) in cols.iter().enumerate() {
            if i == 4 {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header);
    for row in &cells {
        line([&row[0], &row[1], &row[2], &row[3], &row[4]]);
    }
    out
}

/// The least-privilege policy for the resolved rows: each source's statements for what its
/// rows need (`kms:Decrypt`, `ssm:GetParameters`, …).
pub fn iam_policy(rows: &[Row]) -> Value {
    let grants: Vec<&Grant> = rows.iter().flat_map(|r| &r.grants).collect();
    json!({ "Version": "2012-10-17", "Statement": source::statements(&grants) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Class, Reason};
    use crate::source::{kms, ssm};

    fn row(var: &str, grant: Option<Grant>, ok: bool) -> Row {
        let grants = grant.into_iter().collect();
        Row {
            variable: var.into(),
            kind: "kms".into(),
            source: Some("arn:k".into()),
            version: None,
            grants,
            status: if ok {
                Ok(())
            } else {
                Err(Reason::new(Class::NotFound, "gone"))
            },
        }
    }

    #[test]
    fn policy_names_exactly_the_granted_resources() {
        let k1 = "arn:aws:kms:us-east-1:123456789012:key/a";
        let p = "arn:aws:ssm:us-east-1:123456789012:parameter/x";
        let kms = |key: &str| {
            Some(Grant::Kms(kms::Grant {
                key: key.into(),
                context: Default::default(),
            }))
        };
        let rows = [
            row("A", kms(k1), true),
            row("B", kms(k1), true),
            row("E", Some(Grant::Ssm(ssm::Grant { arn: p.into() })), true),
            row("F", None, false),
        ];
        let policy = iam_policy(&rows);
        let st = policy["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Action"], "kms:Decrypt");
        assert_eq!(st[0]["Resource"], json!([k1]));
        assert_eq!(st[1]["Action"], "ssm:GetParameters");
        assert_eq!(st[1]["Resource"], json!([p]));
    }

    #[test]
    fn table_aligns_and_shows_status() {
        let t = table(&[row("A", None, true), row("LONGER", None, false)]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("VARIABLE  KIND"));
        assert!(lines[1].ends_with("ok"));
        assert!(lines[2].ends_with("not found: gone"));
    }
}
