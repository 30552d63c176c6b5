//! Pure planning: an environment snapshot becomes de-duplicated work, and results become the
//! child's environment.
//!
//! [`Plan::new`] classifies every variable, keeps the original order, collects each distinct KMS
//! blob once and each distinct SSM reference once, and groups the SSM references into
//! `GetParameters` batches of at most [`SSM_BATCH_MAX`] per region, never two references to the
//! same parameter in one batch (SSM answers by name, so two selectors of one name could not be
//! told apart). [`Plan::apply`] turns the resolver's [`Outcomes`] into the final variables or into
//! the complete list of failures.

use crate::error::{Class, Failure, Reason};
use crate::reference::{Reference, SsmRef, classify};
use crate::secret::Secret;
use std::collections::HashMap;
use std::ffi::OsString;

/// `GetParameters` accepts at most ten names per call.
pub const SSM_BATCH_MAX: usize = 10;

/// One variable of the environment, as planned.
#[derive(Debug)]
struct Entry {
    name: OsString,
    slot: Slot,
}

#[derive(Debug)]
enum Slot {
    /// Passes through untouched.
    Plain(OsString),
    /// Could not be classified; the reason is already in `Plan::failures`.
    Broken,
    /// A reference: its description for messages and its lookup.
    Ref { kind: String, job: Job },
}

#[derive(Debug, Clone, Copy)]
enum Job {
    /// Index into `Plan::kms`.
    Kms(usize),
    /// Index into `Plan::ssm`.
    Ssm(usize),
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

/// What the resolver produced, index for index with [`Plan::kms`] and [`Plan::ssm`].
#[derive(Debug, Default)]
pub struct Outcomes {
    /// One result per distinct KMS blob.
    pub kms: Vec<Result<Secret, Reason>>,
    /// One result per distinct SSM reference.
    pub ssm: Vec<Result<Secret, Reason>>,
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

/// The de-duplicated work for one environment.
#[derive(Debug)]
pub struct Plan {
    entries: Vec<Entry>,
    /// Distinct KMS ciphertext blobs, in first-seen order.
    pub kms: Vec<Vec<u8>>,
    /// Distinct SSM references, in first-seen order.
    pub ssm: Vec<SsmRef>,
    /// The `GetParameters` calls to make.
    pub batches: Vec<Batch>,
    failures: Vec<Failure>,
}

impl Plan {
    /// Classifies every variable of `env` (in order) and plans the lookups.
    pub fn new(env: impl IntoIterator<Item = (OsString, OsString)>) -> Plan {
        let mut plan = Plan {
            entries: Vec::new(),
            kms: Vec::new(),
            ssm: Vec::new(),
            batches: Vec::new(),
            failures: Vec::new(),
        };
        let mut kms_index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut ssm_index: HashMap<SsmRef, usize> = HashMap::new();
        for (name, value) in env {
            let slot = match classify(&value) {
                Ok(None) => Slot::Plain(value),
                Ok(Some(reference)) => {
                    let kind = reference.kind();
                    let job = match reference {
                        Reference::Kms(blob) => {
                            Job::Kms(intern(&mut kms_index, &mut plan.kms, blob))
                        }
                        Reference::Ssm(r) => Job::Ssm(intern(&mut ssm_index, &mut plan.ssm, r)),
                    };
                    Slot::Ref { kind, job }
                }
                Err(reason) => {
                    plan.failures.push(Failure {
                        variable: name.to_string_lossy().into_owned(),
                        kind: kind_of_malformed(&value),
                        reason,
                    });
                    Slot::Broken
                }
            };
            plan.entries.push(Entry { name, slot });
        }
        plan.batches = batches(&plan.ssm);
        plan
    }

    /// Whether there is nothing to look up (no AWS configuration needs loading).
    pub fn is_empty(&self) -> bool {
        self.kms.is_empty() && self.ssm.is_empty()
    }

    /// Number of variables that hold a reference (well-formed or not).
    pub fn reference_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.slot, Slot::Plain(_)))
            .count()
    }

    /// Outcomes in which every lookup failed for `reason`.
    pub fn fail_all(&self, reason: Reason) -> Outcomes {
        Outcomes {
            kms: vec![Err(reason.clone()); self.kms.len()],
            ssm: vec![Err(reason); self.ssm.len()],
        }
    }

    /// Applies the lookups' results: the final variables in the original order, or every
    /// failure (malformed references included). A plaintext with a NUL byte is a failure.
    pub fn apply(self, outcomes: Outcomes) -> Result<Vars, Vec<Failure>> {
        let mut failures = self.failures;
        let mut vars = Vec::with_capacity(self.entries.len());
        for Entry { name, slot } in self.entries {
            let (kind, result) = match slot {
                Slot::Plain(v) => {
                    vars.push((name, Value::Plain(v)));
                    continue;
                }
                Slot::Broken => continue,
                Slot::Ref {
                    kind,
                    job: Job::Kms(i),
                } => (kind, outcomes.kms.get(i)),
                Slot::Ref {
                    kind,
                    job: Job::Ssm(i),
                } => (kind, outcomes.ssm.get(i)),
            };
            let result = match result {
                Some(Ok(secret)) if secret.contains_nul() => Err(Reason::new(
                    Class::BadCiphertext,
                    "the plaintext contains a NUL byte, which an environment variable cannot hold",
                )),
                Some(Ok(secret)) => Ok(secret.clone()),
                Some(Err(reason)) => Err(reason.clone()),
                None => Err(Reason::new(Class::TimedOut, "not resolved")),
            };
            match result {
                Ok(secret) => vars.push((name, Value::Secret(secret))),
                Err(reason) => failures.push(Failure {
                    variable: name.to_string_lossy().into_owned(),
                    kind,
                    reason,
                }),
            }
        }
        if failures.is_empty() {
            Ok(vars)
        } else {
            Err(failures)
        }
    }
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

fn kind_of_malformed(value: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
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
        assert_eq!(sizes(&Plan::new(ssm_env(1))), vec![1]);
        assert_eq!(sizes(&Plan::new(ssm_env(10))), vec![10]);
        assert_eq!(sizes(&Plan::new(ssm_env(11))), vec![10, 1]);
        assert_eq!(sizes(&Plan::new(ssm_env(25))), vec![10, 10, 5]);
    }

    #[test]
    fn every_reference_is_in_exactly_one_batch() {
        let plan = Plan::new(ssm_env(25));
        let mut seen: Vec<usize> = plan.batches.iter().flat_map(|b| b.refs.clone()).collect();
        seen.sort();
        assert_eq!(seen, (0..25).collect::<Vec<_>>());
    }

    #[test]
    fn nothing_to_do_for_plain_env() {
        let plan = Plan::new(env(&[("A", "1"), ("B", "kmsx"), ("C", "")]));
        assert!(plan.is_empty());
        assert_eq!(plan.reference_count(), 0);
        assert!(plan.batches.is_empty());
    }

    #[test]
    fn duplicates_are_fetched_once() {
        let plan = Plan::new(env(&[
            ("A", "kms:AAAA"),
            ("B", "kms:AAAA"),
            ("C", "ssm:/x"),
            ("D", "ssm:///x"),
            ("E", "ssm:/x:2"),
            ("F", "kms:AAAB"),
        ]));
        assert_eq!(plan.kms.len(), 2);
        assert_eq!(plan.ssm.len(), 2);
        // `/x` and `/x:2` name the same parameter: two batches.
        assert_eq!(sizes(&plan), vec![1, 1]);
        assert_eq!(plan.reference_count(), 6);
    }

    #[test]
    fn batches_are_per_region() {
        let plan = Plan::new(env(&[
            ("A", "ssm:/a"),
            ("B", "ssm:arn:aws:ssm:eu-west-1:123456789012:parameter/b"),
            ("C", "ssm:/c"),
        ]));
        assert_eq!(plan.batches.len(), 2);
        assert_eq!(plan.batches[0].region, None);
        assert_eq!(plan.batches[0].refs, vec![0, 2]);
        assert_eq!(plan.batches[1].region.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn apply_keeps_order_and_replaces_only_references() {
        let plan = Plan::new(env(&[
            ("Z", "plain"),
            ("A", "kms:AAAA"),
            ("M", "ssm:/x"),
            ("B", "kms:AAAA"),
        ]));
        let outcomes = Outcomes {
            kms: vec![Ok(Secret::new(b"one".to_vec()))],
            ssm: vec![Ok(Secret::new(b"two".to_vec()))],
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
        let plan = Plan::new(env(&[
            ("BAD", "kms:!!"),
            ("GONE", "ssm:/gone"),
            ("NUL", "kms:AAAA"),
            ("OK", "plain"),
        ]));
        let outcomes = Outcomes {
            kms: vec![Ok(Secret::new(b"a\0b".to_vec()))],
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
}
