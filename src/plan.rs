//! Pure planning: an environment snapshot becomes de-duplicated work, and results become the
//! child's environment (or, for `check`, a report).
//!
//! [`Plan::new`] classifies every variable, keeps the original order, collects each distinct
//! KMS decryption (blob and encryption context) once and each distinct SSM reference once, and
//! groups the SSM references into `GetParameters` batches of at most [`SSM_BATCH_MAX`] per
//! region, never two references to the same parameter in one batch (SSM answers by name, so two
//! selectors of one name could not be told apart). It also knows the helper variables of other
//! tools: `KMS_DATA_KEY` (the original kms-env's encrypted data key, decrypted once for all its
//! `secure:` values) and shush's `KMS_ENCRYPTED_<NAME>` (sets `<NAME>`). [`Plan::apply`] turns
//! the resolver's [`Outcomes`] into the final variables or into the complete list of failures;
//! [`Plan::report`] into one row per reference.

use crate::envfile::crypto;
use crate::error::{Class, Failure, Reason};
use crate::reference::{KMS_PREFIX, Reference, SsmRef, classify, decode_blob};
use crate::sealed::{Context, Sealed};
use crate::secret::Secret;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

/// `GetParameters` accepts at most ten names per call.
pub const SSM_BATCH_MAX: usize = 10;
/// The original kms-env's encrypted data key.
pub const DATA_KEY_VAR: &str = "KMS_DATA_KEY";
/// shush's convention: `KMS_ENCRYPTED_<NAME>=<base64>` sets `<NAME>`.
pub const SHUSH_PREFIX: &str = "KMS_ENCRYPTED_";

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Keep helper variables (`KMS_DATA_KEY`, `KMS_ENCRYPTED_*`) in the result.
    pub keep_references: bool,
    /// The user's KMS encryption context for `kms:`, `kms:v1:`, mapbox and shush values.
    pub context: Context,
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

#[derive(Debug)]
enum Slot {
    /// Passes through untouched.
    Plain(OsString),
    /// Nothing of its own for the child (`KMS_DATA_KEY`).
    Nothing,
    /// Could not be classified; the reason is already in `Plan::failures`.
    Broken,
    /// A reference: its description for messages and its lookup.
    Ref { kind: String, job: Job },
}

#[derive(Debug, Clone)]
enum Job {
    /// Index into `Plan::kms`.
    Kms(usize),
    /// Index into `Plan::ssm`.
    Ssm(usize),
    /// An original kms-env value: the data key's index into `Plan::kms`, and the hex part.
    Envelope { key: usize, value: String },
    /// A `kms:v1:` value: its KMS decryption, the value, and the variable name it is read as.
    Sealed {
        key: usize,
        sealed: Box<Sealed>,
        name: String,
    },
}

/// One KMS `Decrypt` to make.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KmsJob {
    /// The ciphertext blob.
    pub blob: Vec<u8>,
    /// The encryption context to send (empty for none).
    pub context: Context,
}

/// One `GetParameters` call: a region (`None` = the configured one) and indices into
/// [`Plan::ssm`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Region to call, from an ARN; `None` for the configured region.
    pub region: Option<String>,
    /// Indices into [`Plan::ssm`], at most [`SSM_BATCH_MAX`], distinct parameter names.
    pub refs: Vec<usize>,
}

/// A successful lookup: the plaintext and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The plaintext.
    pub secret: Secret,
    /// The KMS key ARN or the parameter ARN, when AWS said.
    pub source: Option<String>,
    /// The parameter version.
    pub version: Option<i64>,
}

#[cfg(test)]
impl Resolved {
    /// A plaintext with no provenance.
    pub fn plain(secret: Secret) -> Self {
        Resolved {
            secret,
            source: None,
            version: None,
        }
    }
}

/// What the resolver produced, index for index with [`Plan::kms`] and [`Plan::ssm`].
#[derive(Debug, Default)]
pub struct Outcomes {
    /// One result per distinct KMS decryption.
    pub kms: Vec<Result<Resolved, Reason>>,
    /// One result per distinct SSM reference.
    pub ssm: Vec<Result<Resolved, Reason>>,
}

/// A variable of the final environment.
#[derive(Debug)]
pub enum Value {
    /// An untouched value.
    Plain(OsString),
    /// A resolved plaintext.
    Secret(Secret),
}

/// The final environment, in the original order.
pub type Vars = Vec<(OsString, Value)>;

/// One reference as `check` reports it. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The variable as written.
    pub variable: String,
    /// The reference kind.
    pub kind: String,
    /// Key or parameter ARN, when known.
    pub source: Option<String>,
    /// Parameter version, when known.
    pub version: Option<i64>,
    /// The encryption context sent to KMS (for IAM conditions).
    pub context: Context,
    /// `Ok` or why it failed.
    pub status: Result<(), Reason>,
}

/// The de-duplicated work for one environment.
#[derive(Debug)]
pub struct Plan {
    entries: Vec<Entry>,
    keep_references: bool,
    /// Distinct KMS decryptions (data keys included), in first-seen order.
    pub kms: Vec<KmsJob>,
    /// Distinct SSM references, in first-seen order.
    pub ssm: Vec<SsmRef>,
    /// The `GetParameters` calls to make.
    pub batches: Vec<Batch>,
    failures: Vec<Failure>,
}

fn lossy(name: &OsStr) -> String {
    name.to_string_lossy().into_owned()
}

impl Plan {
    /// Classifies every variable of `env` (in order) and plans the lookups.
    pub fn new(env: impl IntoIterator<Item = (OsString, OsString)>, options: &Options) -> Plan {
        let env: Vec<(OsString, OsString)> = env.into_iter().collect();
        let mut plan = Plan {
            entries: Vec::new(),
            keep_references: options.keep_references,
            kms: Vec::new(),
            ssm: Vec::new(),
            batches: Vec::new(),
            failures: Vec::new(),
        };
        let mut kms_index: HashMap<KmsJob, usize> = HashMap::new();
        let mut ssm_index: HashMap<SsmRef, usize> = HashMap::new();
        let mut kms_job = |plan: &mut Plan, blob: Vec<u8>, context: Context| {
            intern(&mut kms_index, &mut plan.kms, KmsJob { blob, context })
        };

        let data_key = env
            .iter()
            .find(|(k, _)| k == DATA_KEY_VAR)
            .map(|(_, v)| v.clone());
        // The data key is decrypted only if some `secure:` value needs it.
        let mut data_key_job: Option<Result<usize, Reason>> = None;
        let shush_targets: HashSet<OsString> =
            env.iter().filter_map(|(k, _)| shush_target(k)).collect();

        for (name, value) in env {
            if name == DATA_KEY_VAR {
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
            let (target, helper, classified) = match shush_target(&name) {
                Some(target) => {
                    let body = value.as_bytes();
                    let body = body.strip_prefix(KMS_PREFIX.as_bytes()).unwrap_or(body);
                    let classified = decode_blob(body).map(|b| Some(Reference::Kms(b)));
                    (target, Some((name, value.clone())), classified)
                }
                None => (name, None, classify(&value, data_key.is_some())),
            };
            let reported = helper.as_ref().map_or(&target, |(n, _)| n).clone();
            let slot = match classified {
                Ok(None) => Slot::Plain(value),
                Ok(Some(reference)) => {
                    let kind = if helper.is_some() {
                        format!("kms, {SHUSH_PREFIX}*")
                    } else {
                        reference.kind()
                    };
                    let job = match reference {
                        Reference::Kms(blob) => {
                            Ok(Job::Kms(kms_job(&mut plan, blob, options.context.clone())))
                        }
                        Reference::Sealed(sealed) => {
                            let name = lossy(&target);
                            let context = sealed.context(&options.context, &name);
                            let key = kms_job(&mut plan, sealed.blob.clone(), context);
                            Ok(Job::Sealed {
                                key,
                                sealed: Box::new(sealed),
                                name,
                            })
                        }
                        Reference::Ssm(r) => Ok(Job::Ssm(intern(&mut ssm_index, &mut plan.ssm, r))),
                        Reference::Envelope(value) => data_key_job
                            .get_or_insert_with(|| {
                                let encoded = data_key.as_deref().unwrap_or_default();
                                decode_blob(encoded.as_bytes())
                                    .map(|blob| kms_job(&mut plan, blob, Context::new()))
                                    .map_err(|r| {
                                        Reason::new(
                                            r.class,
                                            format!("{DATA_KEY_VAR}: {}", r.detail),
                                        )
                                    })
                            })
                            .clone()
                            .map(|key| Job::Envelope { key, value }),
                    };
                    match job {
                        Ok(job) => Slot::Ref { kind, job },
                        Err(reason) => {
                            plan.fail(&reported, kind, reason);
                            Slot::Broken
                        }
                    }
                }
                Err(reason) => {
                    let kind = match &helper {
                        Some(_) => format!("kms, {SHUSH_PREFIX}*"),
                        None => kind_of_malformed(&value),
                    };
                    plan.fail(&reported, kind, reason);
                    Slot::Broken
                }
            };
            plan.entries.push(Entry {
                name: target,
                slot,
                helper,
            });
        }
        plan.batches = batches(&plan.ssm);
        plan
    }

    fn fail(&mut self, variable: &OsStr, kind: String, reason: Reason) {
        self.failures.push(Failure {
            variable: lossy(variable),
            kind,
            reason,
        });
    }

    /// Whether there is nothing to look up (no AWS configuration needs loading).
    pub fn is_empty(&self) -> bool {
        self.kms.is_empty() && self.ssm.is_empty()
    }

    /// Number of variables that hold a reference (well-formed or not).
    pub fn reference_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.slot, Slot::Ref { .. } | Slot::Broken))
            .count()
    }

    /// Outcomes in which every lookup failed for `reason`.
    pub fn fail_all(&self, reason: Reason) -> Outcomes {
        Outcomes {
            kms: vec![Err(reason.clone()); self.kms.len()],
            ssm: vec![Err(reason); self.ssm.len()],
        }
    }

    /// The result of one planned reference.
    fn resolve(&self, job: &Job, outcomes: &Outcomes) -> Result<Resolved, Reason> {
        let missing = || Err(Reason::new(Class::TimedOut, "not resolved"));
        let kms = |i: usize| outcomes.kms.get(i).cloned().unwrap_or_else(missing);
        let resolved = match job {
            Job::Kms(i) => kms(*i).map_err(|r| self.context_hint(*i, r, false)),
            Job::Ssm(i) => outcomes.ssm.get(*i).cloned().unwrap_or_else(missing),
            Job::Envelope { key, value } => kms(*key)
                .map_err(|r| Reason::new(r.class, format!("{DATA_KEY_VAR}: {}", r.detail)))
                .and_then(|dk| {
                    let data_key = crypto::data_key(dk.secret.expose())?;
                    Ok(Resolved {
                        secret: crypto::decrypt(value, &data_key)?,
                        ..dk
                    })
                }),
            Job::Sealed { key, sealed, name } => kms(*key)
                .map_err(|r| self.context_hint(*key, r, sealed.bound))
                .and_then(|r| {
                    Ok(Resolved {
                        secret: sealed.open(r.secret.clone(), name)?,
                        ..r
                    })
                }),
        }?;
        if resolved.secret.contains_nul() {
            return Err(Reason::new(
                Class::BadCiphertext,
                "the plaintext contains a NUL byte, which an environment variable cannot hold",
            ));
        }
        Ok(resolved)
    }

    /// Explains a rejected ciphertext that was sent with an encryption context.
    fn context_hint(&self, job: usize, reason: Reason, bound: bool) -> Reason {
        if reason.class != Class::BadCiphertext {
            return reason;
        }
        let has_context = self.kms.get(job).is_some_and(|j| !j.context.is_empty());
        let hint = if bound {
            "the encryption context did not match: the value is bound to another variable name \
             (copied from another variable?) or needs another --context"
        } else if has_context {
            "the encryption context did not match (check --context / KMS_ENV_CONTEXT), or the ciphertext is bad"
        } else {
            return reason;
        };
        Reason::new(reason.class, format!("{hint}; {}", reason.detail))
    }

    /// Applies the lookups' results: the final variables in the original order, or every
    /// failure (malformed references included). A plaintext with a NUL byte is a failure.
    pub fn apply(self, outcomes: Outcomes) -> Result<Vars, Vec<Failure>> {
        let mut failures = self.failures.clone();
        let mut vars = Vec::with_capacity(self.entries.len());
        for Entry { name, slot, helper } in &self.entries {
            // Failures name the variable the operator wrote.
            let reported = helper.as_ref().map_or(name, |(n, _)| n);
            if let Some((helper_name, original)) = helper
                && self.keep_references
            {
                vars.push((helper_name.clone(), Value::Plain(original.clone())));
            }
            match slot {
                Slot::Plain(v) => vars.push((name.clone(), Value::Plain(v.clone()))),
                Slot::Nothing | Slot::Broken => {}
                Slot::Ref { kind, job } => match self.resolve(job, &outcomes) {
                    Ok(r) => vars.push((name.clone(), Value::Secret(r.secret))),
                    Err(reason) => failures.push(Failure {
                        variable: lossy(reported),
                        kind: kind.clone(),
                        reason,
                    }),
                },
            }
        }
        if failures.is_empty() {
            Ok(vars)
        } else {
            Err(failures)
        }
    }

    /// One row per reference (malformed ones included), in the original order.
    pub fn report(&self, outcomes: &Outcomes) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .failures
            .iter()
            .map(|f| Row {
                variable: f.variable.clone(),
                kind: f.kind.clone(),
                source: None,
                version: None,
                context: Context::new(),
                status: Err(f.reason.clone()),
            })
            .collect();
        for Entry { name, slot, helper } in &self.entries {
            let Slot::Ref { kind, job } = slot else {
                continue;
            };
            let reported = helper.as_ref().map_or(name, |(n, _)| n);
            let result = self.resolve(job, outcomes);
            let context = match job {
                Job::Kms(i) | Job::Envelope { key: i, .. } | Job::Sealed { key: i, .. } => self
                    .kms
                    .get(*i)
                    .map(|j| j.context.clone())
                    .unwrap_or_default(),
                Job::Ssm(_) => Context::new(),
            };
            let (source, version) = match (&result, job) {
                (Ok(r), _) => (r.source.clone(), r.version),
                (Err(_), Job::Ssm(i)) => (self.ssm.get(*i).map(SsmRef::request), None),
                (Err(_), _) => (None, None),
            };
            rows.push(Row {
                variable: lossy(reported),
                kind: kind.clone(),
                source,
                version,
                context,
                status: result.map(|_| ()),
            });
        }
        rows
    }
}

/// `<NAME>` of a variable named `KMS_ENCRYPTED_<NAME>` (non-empty).
fn shush_target(name: &OsStr) -> Option<OsString> {
    name.as_bytes()
        .strip_prefix(SHUSH_PREFIX.as_bytes())
        .filter(|rest| !rest.is_empty())
        .map(|rest| OsStr::from_bytes(rest).to_owned())
}

fn intern<K: std::hash::Hash + Eq + Clone>(
    index: &mut HashMap<K, usize>,
    list: &mut Vec<K>,
    key: K,
) -> usize {
    *index.entry(key.clone()).or_insert_with(|| {
        list.push(key);
        list.len() - 1
    })
}

fn kind_of_malformed(value: &OsStr) -> String {
    let prefix = value
        .as_bytes()
        .split(|&b| b == b':')
        .next()
        .unwrap_or_default();
    String::from_utf8_lossy(prefix).into_owned()
}

/// Groups references by region, then fills batches first-fit: at most [`SSM_BATCH_MAX`] each,
/// no parameter name twice in one batch.
fn batches(refs: &[SsmRef]) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let fits = |b: &Batch| {
            b.region == r.region
                && b.refs.len() < SSM_BATCH_MAX
                && b.refs.iter().all(|&j| refs[j].name != r.name)
        };
        match out.iter_mut().find(|b| fits(b)) {
            Some(batch) => batch.refs.push(i),
            None => out.push(Batch {
                region: r.region.clone(),
                refs: vec![i],
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn ssm_env(n: usize) -> Vec<(OsString, OsString)> {
        (0..n)
            .map(|i| (format!("V{i}").into(), format!("ssm:/p/{i}").into()))
            .collect()
    }

    fn sizes(plan: &Plan) -> Vec<usize> {
        plan.batches.iter().map(|b| b.refs.len()).collect()
    }

    #[test]
    fn batch_sizes_for_1_10_11_25() {
        assert_eq!(sizes(&Plan::new(ssm_env(1), &Options::default())), vec![1]);
        assert_eq!(
            sizes(&Plan::new(ssm_env(10), &Options::default())),
            vec![10]
        );
        assert_eq!(
            sizes(&Plan::new(ssm_env(11), &Options::default())),
            vec![10, 1]
        );
        assert_eq!(
            sizes(&Plan::new(ssm_env(25), &Options::default())),
            vec![10, 10, 5]
        );
    }

    #[test]
    fn every_reference_is_in_exactly_one_batch() {
        let plan = Plan::new(ssm_env(25), &Options::default());
        let mut seen: Vec<usize> = plan.batches.iter().flat_map(|b| b.refs.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_to_do_for_plain_env() {
        let plan = Plan::new(
            env(&[("A", "1"), ("B", "kmsx"), ("C", "")]),
            &Options::default(),
        );
        assert!(plan.is_empty());
        assert_eq!(plan.reference_count(), 0);
        assert!(plan.batches.is_empty());
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
        assert_eq!(plan.kms.len(), 2);
        assert_eq!(plan.ssm.len(), 2);
        // `/x` and `/x:2` name the same parameter: two batches.
        assert_eq!(sizes(&plan), vec![1, 1]);
        assert_eq!(plan.reference_count(), 6);
    }

    #[test]
    fn batches_are_per_region() {
        let plan = Plan::new(
            env(&[
                ("A", "ssm:/a"),
                ("B", "ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/b"),
                ("C", "ssm:/c"),
            ]),
            &Options::default(),
        );
        assert_eq!(plan.batches.len(), 2);
        assert_eq!(plan.batches[0].region, None);
        assert_eq!(plan.batches[0].refs, vec![0, 2]);
        assert_eq!(plan.batches[1].region.as_deref(), Some("eu-west-1"));
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
        let outcomes = Outcomes {
            kms: vec![Ok(Resolved::plain(Secret::new(b"one".to_vec())))],
            ssm: vec![Ok(Resolved::plain(Secret::new(b"two".to_vec())))],
        };
        let vars = plan.apply(outcomes).unwrap();
        let shown: Vec<(String, Vec<u8>)> = vars
            .iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Value::Plain(p) => p.as_encoded_bytes().to_vec(),
                    Value::Secret(s) => s.expose().to_vec(),
                };
                (k.to_string_lossy().into_owned(), bytes)
            })
            .collect();
        assert_eq!(
            shown,
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
        let outcomes = Outcomes {
            kms: vec![Ok(Resolved::plain(Secret::new(b"a\0b".to_vec())))],
            ssm: vec![Err(Reason::new(Class::NotFound, "no such parameter"))],
        };
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

    fn shown(vars: &Vars) -> Vec<(String, Vec<u8>)> {
        vars.iter()
            .map(|(k, v)| {
                let bytes = match v {
                    Value::Plain(p) => p.as_encoded_bytes().to_vec(),
                    Value::Secret(s) => s.expose().to_vec(),
                };
                (k.to_string_lossy().into_owned(), bytes)
            })
            .collect()
    }

    /// KMS_DATA_KEY = AQI= (blob [1, 2]) decrypting to bytes 00..1f.
    fn data_key_outcome() -> Result<Resolved, Reason> {
        Ok(Resolved::plain(Secret::new((0u8..32).collect())))
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
        assert_eq!(plan.kms.len(), 1, "one KMS call for the data key");
        assert_eq!(plan.kms[0].blob, vec![1, 2]);
        let vars = plan
            .apply(Outcomes {
                kms: vec![data_key_outcome()],
                ssm: vec![],
            })
            .unwrap();
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
        let vars = plan
            .apply(Outcomes {
                kms: vec![data_key_outcome()],
                ssm: vec![],
            })
            .unwrap();
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
        let failures = plan
            .apply(Outcomes {
                kms: vec![Err(Reason::new(
                    Class::AccessDenied,
                    "AccessDeniedException",
                ))],
                ssm: vec![],
            })
            .unwrap_err();
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
        assert_eq!(plan.kms.len(), 2);
        let vars = plan
            .apply(Outcomes {
                kms: vec![
                    Ok(Resolved::plain(Secret::new(b"db".to_vec()))),
                    Ok(Resolved::plain(Secret::new(b"tok".to_vec()))),
                ],
                ssm: vec![],
            })
            .unwrap();
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
        assert_eq!(bad[0].reason.class, Class::Malformed);
    }
}
