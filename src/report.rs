//! Pure rendering of `check`'s results: the table and the minimal IAM policy. Neither ever holds
//! a value: only names, kinds, ARNs, versions, encryption contexts and statuses.

use crate::plan::Row;
use crate::sealed::{Context, NAME_CONTEXT_KEY};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The table: VARIABLE, KIND, SOURCE (key or parameter ARN), VERSION, STATUS.
pub fn table(rows: &[Row]) -> String {
    let header = ["VARIABLE", "KIND", "SOURCE", "VERSION", "STATUS"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.variable.clone(),
                r.kind.clone(),
                r.source.clone().unwrap_or_else(|| "-".into()),
                r.version.map_or_else(|| "-".into(), |v| v.to_string()),
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

/// The least-privilege policy for the resolved rows: `kms:Decrypt` on each key ARN (with
/// `kms:EncryptionContext:*` conditions where a context was sent) and `ssm:GetParameters` on
/// each parameter ARN.
pub fn iam_policy(rows: &[Row]) -> Value {
    // KMS statements grouped by the user's context; bound names become a list condition.
    let mut kms: BTreeMap<Context, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    let mut ssm: BTreeSet<String> = BTreeSet::new();
    for row in rows.iter().filter(|r| r.status.is_ok()) {
        let Some(source) = &row.source else { continue };
        if source.starts_with("arn:") && source.contains(":kms:") {
            let mut context = row.context.clone();
            let name = context.remove(NAME_CONTEXT_KEY);
            let (keys, names) = kms.entry(context).or_default();
            keys.insert(source.clone());
            names.extend(name);
        } else if source.contains(":ssm:") {
            ssm.insert(source.clone());
        }
    }
    let mut statements = Vec::new();
    for (i, (context, (keys, names))) in kms.into_iter().enumerate() {
        let mut statement = json!({
            "Sid": format!("DecryptKmsValues{}", i + 1),
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": keys.into_iter().collect::<Vec<_>>(),
        });
        let mut equals = serde_json::Map::new();
        for (k, v) in context {
            equals.insert(format!("kms:EncryptionContext:{k}"), Value::String(v));
        }
        if !names.is_empty() {
            equals.insert(
                format!("kms:EncryptionContext:{NAME_CONTEXT_KEY}"),
                Value::from(names.into_iter().collect::<Vec<_>>()),
            );
        }
        if !equals.is_empty() {
            statement["Condition"] = json!({ "StringEquals": equals });
        }
        statements.push(statement);
    }
    if !ssm.is_empty() {
        statements.push(json!({
            "Sid": "ReadParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameters",
            "Resource": ssm.into_iter().collect::<Vec<_>>(),
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Class, Reason};

    fn row(var: &str, source: &str, context: &[(&str, &str)], ok: bool) -> Row {
        Row {
            variable: var.into(),
            kind: "kms".into(),
            source: Some(source.into()),
            version: None,
            context: context
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            status: if ok {
                Ok(())
            } else {
                Err(Reason::new(Class::NotFound, "gone"))
            },
        }
    }

    #[test]
    fn policy_names_exactly_the_resources() {
        let k1 = "arn:aws:kms:us-east-1:123456789012:key/a";
        let k2 = "arn:aws:kms:us-east-1:123456789012:key/b";
        let p = "arn:aws:ssm:us-east-1:123456789012:parameter/x";
        let rows = [
            row("A", k1, &[], true),
            row("B", k1, &[], true),
            row("C", k2, &[("kms-env:name", "C"), ("app", "web")], true),
            row("D", k2, &[("kms-env:name", "D"), ("app", "web")], true),
            row("E", p, &[], true),
            row(
                "F",
                "arn:aws:ssm:us-east-1:123456789012:parameter/gone",
                &[],
                false,
            ),
        ];
        let policy = iam_policy(&rows);
        let st = policy["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 3);
        assert_eq!(st[0]["Resource"], json!([k1]));
        assert!(st[0].get("Condition").is_none());
        assert_eq!(st[1]["Resource"], json!([k2]));
        assert_eq!(
            st[1]["Condition"]["StringEquals"]["kms:EncryptionContext:kms-env:name"],
            json!(["C", "D"])
        );
        assert_eq!(
            st[1]["Condition"]["StringEquals"]["kms:EncryptionContext:app"],
            json!("web")
        );
        assert_eq!(st[2]["Resource"], json!([p]));
    }

    #[test]
    fn table_aligns_and_shows_status() {
        let t = table(&[
            row("A", "arn:k", &[], true),
            row("LONGER", "arn:k2", &[], false),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("VARIABLE  KIND"));
        assert!(lines[1].ends_with("ok"));
        assert!(lines[2].ends_with("not found: gone"));
    }
}
