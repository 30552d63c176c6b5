//! Pure planning: an environment snapshot becomes de-duplicated lookups, and their answers
//! become the child's environment (or, for `check`, a report).
//!
//! [`Plan::new`] classifies every variable, keeps the original order and lets each reference's
//! source plan it: the distinct lookups go into one [`Lookups`] table (each once, under a
//! [`LookupId`]), the variable keeps a [`Use`] that says how to get its plaintext from the
//! answers. The planner knows the helper variables of other tools: `KMS_DATA_KEY` (the original
//! kms-env's encrypted data key, decrypted once for all its `secure:` values) and shush's
//! `KMS_ENCRYPTED_<NAME>` (sets `<NAME>`). [`Plan::apply`] turns the resolver's [`Outcomes`]
//! into the final variables or into the complete list of failures; [`Plan::report`] into one
//! row per reference. See ARCHITECTURE.md.

use crate::error::{Class, Failure, Reason, printable};
use crate::load::{self, LOAD_VAR, LoadSource, LoadSpec};
use crate::reference::{Reference, classify};
use crate::secret::Secret;
use crate::source::kms::{self, DATA_KEY_VAR, DataKey, SHUSH_KIND};
use crate::source::ssm::PathGrant;
use crate::source::{Grant, Lookup, LookupId, Lookups, Outcomes, Part, Resolved, Use, sm, ssm};
use crate::template::Piece;
use crate::value::{Context, FILE_SUFFIX, Value, Vars};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep helper variables (`KMS_DATA_KEY`, `KMS_ENCRYPTED_*`) in the result.
    pub keep_references: bool,
    /// The user's KMS encryption context for `kms:`, `kms:v1:`, mapbox and shush values.
    pub context: Context,
    /// Load specs from `--load` (besides the environment's `KMS_ENV_LOAD`).
    pub loads: Vec<String>,
}

/// A load, as planned.
#[derive(Debug)]
struct PlannedLoad {
    /// Where it was written (`--load` or `KMS_ENV_LOAD`), for failures.
    origin: &'static str,
    spec: LoadSpec,
    id: LookupId,
}

/// One variable a load sets, with where it came from.
#[derive(Debug)]
struct Loaded {
    name: String,
    secret: Secret,
    /// The parameter's name or `secret#key`, for messages.
    from: String,
    /// The parameter's or the secret's ARN.
    source: Option<String>,
    version: Option<String>,
    grant: Option<Grant>,
    /// The spec's text.
    kind: String,
}

/// The final variables, and what `-v` says about how they were made.
#[derive(Debug)]
pub struct Applied {
    /// The final environment.
    pub vars: Vars,
    /// Lines for the `info` log (never values).
    pub notes: Vec<String>,
}

/// One variable of the environment, as planned.
#[derive(Debug)]
struct Entry {
    /// The name the child sees (`<NAME>` for `KMS_ENCRYPTED_<NAME>`).
    name: OsString,
    slot: Slot,
    /// A helper variable as it was (`KMS_DATA_KEY`, `KMS_ENCRYPTED_*`): the child gets it, ahead
    /// of the entry itself, only with `--keep-references`.
    helper: Option<(OsString, OsString)>,
}

impl Entry {
    /// The variable the operator wrote (the helper's name for shush).
    fn reported(&self) -> &OsStr {
        self.helper.as_ref().map_or(&self.name, |(n, _)| n)
    }
}

#[derive(Debug)]
enum Slot {
    /// Passes through untouched.
    Plain(OsString),
    /// Nothing of its own for the child (`KMS_DATA_KEY`).
    Nothing,
    /// Could not be classified or planned; the reason is already in `Plan::failures`.
    Broken,
    /// A reference: its description for messages, how it gets its plaintext, and whether it
    /// goes to a file (`*_FILE`).
    Ref {
        kind: String,
        using: Use,
        file: bool,
    },
}

/// One reference as `check` reports it. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The variable as written.
    pub variable: String,
    /// The reference kind.
    pub kind: String,
    /// What answered (key, parameter or secret ARN), or what was asked for when it failed.
    pub source: Option<String>,
    /// The version that answered, when known.
    pub version: Option<String>,
    /// What IAM must allow for it, when it resolved.
    pub grants: Vec<Grant>,
    /// `Ok` or why it failed.
    pub status: Result<(), Reason>,
}

/// The de-duplicated work for one environment.
#[derive(Debug)]
pub struct Plan {
    entries: Vec<Entry>,
    keep_references: bool,
    /// Every distinct lookup.
    pub lookups: Lookups,
    failures: Vec<Failure>,
    loads: Vec<PlannedLoad>,
}

/// A name as messages and tables show it: lossy UTF-8, control characters escaped.
fn lossy(name: &OsStr) -> String {
    printable(&name.to_string_lossy())
}

impl Plan {
    /// Classifies every variable of `env` (in order) and plans the lookups.
    pub fn new(env: impl IntoIterator<Item = (OsString, OsString)>, options: &Options) -> Plan {
        let env: Vec<(OsString, OsString)> = env.into_iter().collect();
        let mut plan = Plan {
            entries: Vec::new(),
            keep_references: options.keep_references,
            lookups: Lookups::default(),
            failures: Vec::new(),
            loads: Vec::new(),
        };
        let from_env = env
            .iter()
            .find(|(k, _)| k == LOAD_VAR)
            .map(|(_, v)| v.to_string_lossy().into_owned());
        let specs = options
            .loads
            .iter()
            .map(|s| ("--load", load::parse(s)))
            .chain(
                from_env
                    .iter()
                    .flat_map(|list| load::parse_list(list))
                    .map(|s| (LOAD_VAR, s)),
            );
        for (origin, spec) in specs.collect::<Vec<_>>() {
            match spec {
                Ok(spec) => {
                    let id = match &spec.source {
                        LoadSource::Ssm(path) => plan.lookups.intern(Lookup::SsmPath(path.clone())),
                        LoadSource::Sm(secret) => sm::plan_load(secret.clone(), &mut plan.lookups),
                    };
                    plan.loads.push(PlannedLoad { origin, spec, id });
                }
                Err(reason) => {
                    plan.fail(origin.to_owned(), "load".to_owned(), reason);
                }
            }
        }
        // The data key is decrypted only if some `secure:` value needs it.
        let mut data_key = DataKey::new(
            env.iter()
                .find(|(k, _)| k == DATA_KEY_VAR)
                .map(|(_, v)| v.clone()),
        );
        let shush_targets: HashSet<OsString> = env
            .iter()
            .filter_map(|(k, _)| kms::shush_target(k))
            .collect();

        for (name, value) in env {
            if name == DATA_KEY_VAR || name == LOAD_VAR {
                plan.entries.push(Entry {
                    name: name.clone(),
                    slot: Slot::Nothing,
                    helper: Some((name, value)),
                });
                continue;
            }
            if shush_targets.contains(&name) {
                continue; // KMS_ENCRYPTED_<NAME> decides <NAME>
            }
            let (target, helper, classified) = match kms::shush_target(&name) {
                Some(target) => {
                    let classified = kms::parse_shush(&value).map(|r| Some(Reference::Kms(r)));
                    (target, Some((name, value.clone())), classified)
                }
                None => (name, None, classify(&value, data_key.present())),
            };
            let shush = helper.is_some();
            let reported = lossy(helper.as_ref().map_or(&target, |(n, _)| n));
            let slot = match classified {
                Ok(None) => Slot::Plain(value),
                Ok(Some(reference)) => {
                    let kind = kind_of(shush, Some(&reference), &value);
                    let using = plan_reference(
                        reference,
                        // The name a bound value is read as: as written, not escaped.
                        &target.to_string_lossy(),
                        &options.context,
                        &mut data_key,
                        &mut plan.lookups,
                    );
                    let file = target.as_bytes().ends_with(FILE_SUFFIX.as_bytes())
                        && target.len() > FILE_SUFFIX.len();
                    let kind = if file { format!("file, {kind}") } else { kind };
                    match using {
                        Ok(using) => Slot::Ref { kind, using, file },
                        Err(reason) => plan.fail(reported, kind, reason),
                    }
                }
                Err(reason) => {
                    let kind = kind_of(shush, None, &value);
                    plan.fail(reported, kind, reason)
                }
            };
            plan.entries.push(Entry {
                name: target,
                slot,
                helper,
            });
        }
        plan
    }

    /// Records a variable that cannot be planned.
    fn fail(&mut self, variable: String, kind: String, reason: Reason) -> Slot {
        self.failures.push(Failure {
            variable,
            kind,
            reason,
        });
        Slot::Broken
    }

    /// Whether there is nothing to look up (no AWS configuration needs loading).
    pub fn is_empty(&self) -> bool {
        self.lookups.is_empty()
    }

    /// Number of variables that hold a reference (well-formed or not).
    pub fn reference_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Ref { .. } | Slot::Broken))
            .count()
    }

    /// The result of one planned reference; a plaintext with a NUL byte is a failure, unless it
    /// goes to a `file`.
    fn resolve(using: &Use, outcomes: &Outcomes, file: bool) -> Result<Resolved, Reason> {
        let resolved = using.finish(outcomes)?;
        if !file && resolved.secret.contains_nul() {
            return Err(Reason::new(
                Class::BadCiphertext,
                "the plaintext contains a NUL byte, which an environment variable cannot hold",
            ));
        }
        Ok(resolved)
    }

    /// Applies the lookups' results: the final variables in the original order, or every
    /// failure (malformed references included).
    pub fn apply(self, outcomes: Outcomes) -> Result<Vars, Vec<Failure>> {
        self.apply_noted(outcomes).map(|a| a.vars)
    }

    /// The names the environment gives the application (loads never replace them).
    fn present(&self) -> std::collections::HashSet<&OsStr> {
        self.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Plain(_) | Slot::Ref { .. }))
            .map(|e| e.name.as_os_str())
            .collect()
    }

    /// Every variable the loads set, or why a load failed, and what to log. A name the
    /// environment already has is skipped (the task definition is more specific); a name a load
    /// may not set, and two loaded values for one name, are failures.
    fn loaded(&self, outcomes: &Outcomes) -> (Vec<Loaded>, Vec<Failure>, Vec<String>) {
        let present = self.present();
        let (mut out, mut failures, mut notes) = (Vec::<Loaded>::new(), Vec::new(), Vec::new());
        for load in &self.loads {
            let fail = |reason: Reason| Failure {
                variable: load.origin.to_owned(),
                kind: load.spec.text.clone(),
                reason,
            };
            let items = match load_items(load, outcomes) {
                Ok(items) => items,
                Err(reason) => {
                    failures.push(fail(reason));
                    continue;
                }
            };
            if items.is_empty() && !load.spec.optional {
                failures.push(fail(Reason::new(
                    Class::NotFound,
                    "it loads nothing (a typo in the path or secret?); add ?optional to allow that",
                )));
                continue;
            }
            let mut count = 0;
            for item in items {
                let name = &item.name;
                if load::refused(name) {
                    failures.push(fail(Reason::new(
                        Class::Malformed,
                        format!(
                            "{} would set {}, which changes how the application or kms-env \
                             starts; give the spec a prefix (APP_=…) or rename it",
                            item.from,
                            printable(name)
                        ),
                    )));
                } else if present.contains(OsStr::new(name)) {
                    notes.push(format!(
                        "{} is set in the environment; the value loaded from {} is not used",
                        printable(name),
                        item.from
                    ));
                } else if let Some(other) = out.iter().find(|o| o.name == *name) {
                    failures.push(fail(Reason::new(
                        Class::Malformed,
                        format!(
                            "{} and {} both map to {}; give one spec a prefix",
                            other.from,
                            item.from,
                            printable(name)
                        ),
                    )));
                } else {
                    count += 1;
                    out.push(item);
                }
            }
            notes.push(format!(
                "{} {}: {count} variables",
                load.origin, load.spec.text
            ));
        }
        (out, failures, notes)
    }

    /// Applies the lookups' results, with the notes for the log.
    pub fn apply_noted(self, outcomes: Outcomes) -> Result<Applied, Vec<Failure>> {
        let (loaded, load_failures, notes) = self.loaded(&outcomes);
        let mut failures = self.failures.clone();
        failures.extend(load_failures);
        let mut vars = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            if let Some((helper_name, original)) = &entry.helper
                && self.keep_references
            {
                vars.push((helper_name.clone(), Value::Plain(original.clone())));
            }
            match &entry.slot {
                Slot::Plain(v) => vars.push((entry.name.clone(), Value::Plain(v.clone()))),
                Slot::Nothing | Slot::Broken => {}
                Slot::Ref { kind, using, file } => match Self::resolve(using, &outcomes, *file) {
                    Ok(r) if *file => vars.push((entry.name.clone(), Value::File(r.secret))),
                    Ok(r) => vars.push((entry.name.clone(), Value::Secret(r.secret))),
                    Err(reason) => failures.push(Failure {
                        // Failures name the variable the operator wrote.
                        variable: lossy(entry.reported()),
                        kind: kind.clone(),
                        reason,
                    }),
                },
            }
        }
        vars.extend(
            loaded
                .into_iter()
                .map(|l| (OsString::from(l.name), Value::Secret(l.secret))),
        );
        if failures.is_empty() {
            Ok(Applied { vars, notes })
        } else {
            Err(failures)
        }
    }

    /// One row per reference (malformed ones first), then in the original order.
    pub fn report(&self, outcomes: &Outcomes) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .failures
            .iter()
            .map(|f| Row {
                variable: f.variable.clone(),
                kind: f.kind.clone(),
                source: None,
                version: None,
                grants: Vec::new(),
                status: Err(f.reason.clone()),
            })
            .collect();
        for entry in &self.entries {
            let Slot::Ref { kind, using, file } = &entry.slot else {
                continue;
            };
            let (source, version, grants, status) = match Self::resolve(using, outcomes, *file) {
                Ok(r) => (r.source, r.version, r.grants, Ok(())),
                Err(reason) => (
                    using.requested(&self.lookups),
                    None,
                    Vec::new(),
                    Err(reason),
                ),
            };
            rows.push(Row {
                variable: lossy(entry.reported()),
                kind: kind.clone(),
                source,
                version,
                grants,
                status,
            });
        }
        let (loaded, failures, _) = self.loaded(outcomes);
        rows.extend(failures.into_iter().map(|f| Row {
            variable: f.variable,
            kind: f.kind,
            source: None,
            version: None,
            grants: Vec::new(),
            status: Err(f.reason),
        }));
        rows.extend(loaded.into_iter().map(|l| Row {
            variable: printable(&l.name),
            kind: l.kind,
            source: l.source,
            version: l.version,
            grants: l.grant.into_iter().collect(),
            status: Ok(()),
        }));
        rows
    }
}

/// Lets the reference's source plan it; a template's placeholders are planned the same way, so
/// their lookups are shared with the rest of the environment.
fn plan_reference(
    reference: Reference,
    name: &str,
    context: &Context,
    data_key: &mut DataKey,
    lookups: &mut Lookups,
) -> Result<Use, Reason> {
    Ok(match reference {
        Reference::Kms(r) => Use::Kms(kms::plan(r, name, context, data_key, lookups)?),
        Reference::Ssm(r) => Use::Ssm(ssm::plan(r, lookups)),
        Reference::Sm(r) => Use::Sm(sm::plan(r, lookups)),
        Reference::Template(pieces) => {
            let mut parts = Vec::new();
            for piece in pieces {
                parts.push(match piece {
                    Piece::Text(text) => Part::Text(text),
                    Piece::Placeholder {
                        reference,
                        filters,
                        at,
                    } => {
                        let inner = classify(OsStr::new(&reference), data_key.present())
                            .and_then(|r| {
                                r.ok_or_else(|| Reason::new(Class::Malformed, "not a reference"))
                            })
                            .map_err(|r| {
                                Reason::new(
                                    r.class,
                                    format!("the template at position {at}: {}", r.detail),
                                )
                            })?;
                        let kind = inner.kind();
                        let using = plan_reference(inner, name, context, data_key, lookups)?;
                        Part::Value {
                            using: Box::new(using),
                            filters,
                            kind,
                        }
                    }
                });
            }
            Use::Template(parts)
        }
    })
}

/// The variables one load sets, named, with their provenance.
fn load_items(load: &PlannedLoad, outcomes: &Outcomes) -> Result<Vec<Loaded>, Reason> {
    let f = outcomes.get(load.id)?;
    let spec = &load.spec;
    let mut items: Vec<Loaded> = match &spec.source {
        LoadSource::Ssm(path) => f
            .items
            .iter()
            .map(|item| Loaded {
                name: load::variable_name(&spec.prefix, path.relative(&item.name)),
                secret: item.secret.clone(),
                from: item.name.clone(),
                source: item.source.clone(),
                version: item.version.clone(),
                grant: PathGrant::new(path, item).map(Grant::SsmPath),
                kind: spec.text.clone(),
            })
            .collect(),
        LoadSource::Sm(secret) => sm::entries(f)?
            .into_iter()
            .map(|(key, value)| Loaded {
                name: load::variable_name(&spec.prefix, &key),
                secret: value,
                from: format!("{}#{key}", secret.id),
                source: f.source.as_ref().map(|arn| format!("{arn}#{key}")),
                version: f.version.clone(),
                grant: sm::load_grant(secret, f).map(Grant::Sm),
                kind: spec.text.clone(),
            })
            .collect(),
    };
    for item in &items {
        if item.secret.contains_nul() {
            return Err(Reason::new(
                Class::BadCiphertext,
                format!(
                    "{}: the plaintext contains a NUL byte, which an environment variable cannot hold",
                    item.from
                ),
            ));
        }
    }
    items.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(items)
}

/// The kind shown for a variable: shush's, the reference's, or the prefix of a malformed one.
fn kind_of(shush: bool, reference: Option<&Reference>, value: &OsStr) -> String {
    if shush {
        return SHUSH_KIND.to_owned();
    }
    if let Some(r) = reference {
        return r.kind();
    }
    let prefix = value
        .as_bytes()
        .split(|&b| b == b':')
        .next()
        .unwrap_or_default();
    String::from_utf8_lossy(prefix).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use crate::source::{Fetched, Lookup, LookupId};

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn shown(vars: &Vars) -> Vec<(String, Vec<u8>)> {
        vars.iter()
            .map(|(k, v)| (k.to_string_lossy().into_owned(), v.bytes().to_vec()))
            .collect()
    }

    fn ok(bytes: &[u8]) -> Result<Fetched, Reason> {
        Ok(Fetched::plain(Secret::new(bytes.to_vec())))
    }

    /// The id of the lookup that `is` picks out.
    fn id_of(plan: &Plan, is: impl Fn(&Lookup) -> bool) -> LookupId {
        plan.lookups.iter().find(|(_, l)| is(l)).unwrap().0
    }

    fn kms_blob(blob: &'static [u8]) -> impl Fn(&Lookup) -> bool {
        move |l| matches!(l, Lookup::Kms(d) if d.blob == blob)
    }

    fn ssm_name(name: &'static str) -> impl Fn(&Lookup) -> bool {
        move |l| matches!(l, Lookup::Ssm(p) if p.name == name)
    }

    #[test]
    fn nothing_to_do_for_plain_env() {
        let plan = Plan::new(
            env(&[("A", "1"), ("B", "kmsx"), ("C", "")]),
            &Options::default(),
        );
        assert!(plan.is_empty());
        assert_eq!(plan.reference_count(), 0);
    }

    #[test]
    fn duplicates_are_fetched_once() {
        let plan = Plan::new(
            env(&[
                ("A", "kms:AAAA"),
                ("B", "kms:AAAA"),
                ("C", "ssm:/x"),
                ("D", "ssm:///x"),
                ("E", "ssm:/x:2"),
                ("F", "kms:AAAB"),
            ]),
            &Options::default(),
        );
        assert_eq!(plan.lookups.of(kms::pick).len(), 2);
        assert_eq!(plan.lookups.of(ssm::pick).len(), 2);
        // `/x` and `/x:2` name the same parameter: two batches.
        assert_eq!(ssm::batches(&plan.lookups.of(ssm::pick)).len(), 2);
        assert_eq!(plan.reference_count(), 6);
    }

    #[test]
    fn apply_keeps_order_and_replaces_only_references() {
        let plan = Plan::new(
            env(&[
                ("Z", "plain"),
                ("A", "kms:AAAA"),
                ("M", "ssm:/x"),
                ("B", "kms:AAAA"),
            ]),
            &Options::default(),
        );
        // Answers are matched by id, whatever order they come in.
        let outcomes: Outcomes = [
            (id_of(&plan, ssm_name("/x")), ok(b"two")),
            (id_of(&plan, kms_blob(&[0, 0, 0])), ok(b"one")),
        ]
        .into_iter()
        .collect();
        let vars = plan.apply(outcomes).unwrap();
        assert_eq!(
            shown(&vars),
            vec![
                ("Z".into(), b"plain".to_vec()),
                ("A".into(), b"one".to_vec()),
                ("M".into(), b"two".to_vec()),
                ("B".into(), b"one".to_vec()),
            ]
        );
    }

    #[test]
    fn apply_reports_every_failure_with_malformed_ones() {
        let plan = Plan::new(
            env(&[
                ("BAD", "kms:!!"),
                ("GONE", "ssm:/gone"),
                ("NUL", "kms:AAAA"),
                ("OK", "plain"),
            ]),
            &Options::default(),
        );
        let outcomes: Outcomes = [
            (id_of(&plan, kms_blob(&[0, 0, 0])), ok(b"a\0b")),
            (
                id_of(&plan, ssm_name("/gone")),
                Err(Reason::new(Class::NotFound, "no such parameter")),
            ),
        ]
        .into_iter()
        .collect();
        let failures = plan.apply(outcomes).unwrap_err();
        let mut got: Vec<(String, String, Class)> = failures
            .into_iter()
            .map(|f| (f.variable, f.kind, f.reason.class))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("BAD".into(), "kms".into(), Class::Malformed),
                ("GONE".into(), "ssm /gone".into(), Class::NotFound),
                ("NUL".into(), "kms".into(), Class::BadCiphertext),
            ]
        );
    }

    #[test]
    fn a_missing_answer_is_a_failure_not_a_value() {
        let plan = Plan::new(env(&[("A", "ssm:/a")]), &Options::default());
        let failures = plan.apply(Outcomes::default()).unwrap_err();
        assert_eq!(failures[0].reason.class, Class::TimedOut);
    }

    /// KMS_DATA_KEY = AQI= (blob [1, 2]) decrypting to bytes 00..1f.
    fn data_key_outcome(plan: &Plan) -> Outcomes {
        let key: Vec<u8> = (0u8..32).collect();
        [(id_of(plan, kms_blob(&[1, 2])), ok(&key))]
            .into_iter()
            .collect()
    }

    #[test]
    fn envelope_values_share_one_data_key_call_and_the_helper_is_dropped() {
        let plan = Plan::new(
            env(&[
                (
                    "A",
                    "secure:000102030405060708090a0b0c0d0e0f$2a2e7724288c1ee49413721f26bbac",
                ),
                ("KMS_DATA_KEY", "AQI="),
                ("B", "secure:19fcf087b45dcaf7f9f7fe34bd8378"),
                ("C", "plain"),
            ]),
            &Options::default(),
        );
        assert_eq!(plan.lookups.len(), 1, "one KMS call for the data key");
        let outcomes = data_key_outcome(&plan);
        let vars = plan.apply(outcomes).unwrap();
        let want: &[u8] = b"p@ss word='\"$x\n";
        assert_eq!(
            shown(&vars),
            vec![
                ("A".into(), want.to_vec()),
                ("B".into(), want.to_vec()),
                ("C".into(), b"plain".to_vec()),
            ]
        );
    }

    #[test]
    fn keep_references_keeps_the_encrypted_helpers_never_the_plaintext_key() {
        let plan = Plan::new(
            env(&[
                ("KMS_DATA_KEY", "AQI="),
                ("A", "secure:19fcf087b45dcaf7f9f7fe34bd8378"),
            ]),
            &Options {
                keep_references: true,
                ..Options::default()
            },
        );
        let outcomes = data_key_outcome(&plan);
        let vars = plan.apply(outcomes).unwrap();
        assert_eq!(shown(&vars)[0], ("KMS_DATA_KEY".into(), b"AQI=".to_vec()));
        assert_eq!(vars.len(), 2);
    }

    #[test]
    fn without_secure_values_the_data_key_is_not_decrypted() {
        let plan = Plan::new(
            env(&[("KMS_DATA_KEY", "AQI="), ("A", "x")]),
            &Options::default(),
        );
        assert!(plan.is_empty());
        let vars = plan.apply(Outcomes::default()).unwrap();
        assert_eq!(shown(&vars), vec![("A".into(), b"x".to_vec())]);
    }

    #[test]
    fn a_failed_data_key_fails_every_secure_value() {
        let plan = Plan::new(
            env(&[
                ("KMS_DATA_KEY", "AQI="),
                ("A", "secure:00"),
                ("B", "secure:11"),
            ]),
            &Options::default(),
        );
        let outcomes = Outcomes::fail_all(
            &plan.lookups,
            &Reason::new(Class::AccessDenied, "AccessDeniedException"),
        );
        let failures = plan.apply(outcomes).unwrap_err();
        assert_eq!(failures.len(), 2);
        assert!(
            failures
                .iter()
                .all(|f| f.reason.class == Class::AccessDenied
                    && f.reason.detail.starts_with("KMS_DATA_KEY:"))
        );
    }

    #[test]
    fn a_malformed_data_key_is_reported_on_each_secure_value() {
        let plan = Plan::new(
            env(&[("KMS_DATA_KEY", "!!"), ("A", "secure:00")]),
            &Options::default(),
        );
        assert!(plan.is_empty());
        let failures = plan.apply(Outcomes::default()).unwrap_err();
        assert_eq!(failures[0].variable, "A");
        assert_eq!(failures[0].reason.class, Class::Malformed);
    }

    #[test]
    fn shush_sets_the_target_name_in_place_and_wins() {
        let plan = Plan::new(
            env(&[
                ("DB", "placeholder"),
                ("KMS_ENCRYPTED_DB", "AQI="),
                ("KMS_ENCRYPTED_TOKEN", "kms:AQM="),
                ("X", "1"),
            ]),
            &Options::default(),
        );
        assert_eq!(plan.lookups.len(), 2);
        let outcomes: Outcomes = [
            (id_of(&plan, kms_blob(&[1, 2])), ok(b"db")),
            (id_of(&plan, kms_blob(&[1, 3])), ok(b"tok")),
        ]
        .into_iter()
        .collect();
        let vars = plan.apply(outcomes).unwrap();
        assert_eq!(
            shown(&vars),
            vec![
                ("DB".into(), b"db".to_vec()),
                ("TOKEN".into(), b"tok".to_vec()),
                ("X".into(), b"1".to_vec()),
            ]
        );
        let bad = Plan::new(env(&[("KMS_ENCRYPTED_DB", "%%")]), &Options::default())
            .apply(Outcomes::default())
            .unwrap_err();
        assert_eq!(bad[0].variable, "KMS_ENCRYPTED_DB");
        assert_eq!(bad[0].kind, SHUSH_KIND);
        assert_eq!(bad[0].reason.class, Class::Malformed);
    }

    #[test]
    fn report_rows_carry_grants_and_what_was_asked_for() {
        let plan = Plan::new(
            env(&[("K", "kms:AQI="), ("P", "ssm:/gone:3")]),
            &Options::default(),
        );
        let outcomes: Outcomes = [
            (
                id_of(&plan, kms_blob(&[1, 2])),
                Ok(Fetched {
                    source: Some("arn:aws:kms:r:1:key/k".into()),
                    ..Fetched::plain(Secret::new(b"x".to_vec()))
                }),
            ),
            (
                id_of(&plan, ssm_name("/gone")),
                Err(Reason::new(Class::NotFound, "gone")),
            ),
        ]
        .into_iter()
        .collect();
        let rows = plan.report(&outcomes);
        assert_eq!(rows[0].source.as_deref(), Some("arn:aws:kms:r:1:key/k"));
        assert!(matches!(&rows[0].grants[..], [Grant::Kms(g)] if g.key == "arn:aws:kms:r:1:key/k"));
        assert_eq!(rows[1].source.as_deref(), Some("/gone:3"));
        assert!(rows[1].grants.is_empty());
        assert!(rows[1].status.is_err());
    }
}
