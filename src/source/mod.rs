//! The sources of secrets and the one resolver over them.
//!
//! A source (KMS in [`kms`], Parameter Store in [`ssm`], Secrets Manager in [`sm`]) owns
//! everything about itself: its reference grammar, the distinct lookups its references need and
//! how they are batched, its AWS call behind a port (a trait with an SDK adapter and fakes in
//! tests), its error codes, what `check` shows of it and its IAM statement. This module holds the
//! closed enums that tie them together, so the planner and the resolver stay generic:
//!
//! - [`Lookup`]: one distinct thing to fetch (a KMS `Decrypt`, a parameter, a secret version),
//!   interned in [`Lookups`] under a [`LookupId`];
//! - [`Use`]: how one variable turns the answers of its lookups into its plaintext;
//! - [`Outcomes`]: the answers, keyed by lookup id;
//! - [`Grant`]: what a resolved variable needs from IAM.
//!
//! [`resolve`] starts every source's calls at once under one deadline. See ARCHITECTURE.md for
//! the data flow and how to add a source.

pub mod kms;
pub mod sm;
pub mod ssm;

use crate::deadline::before;
use crate::error::{Class, Reason};
use crate::secret::Secret;
use std::cell::OnceCell;
use std::collections::HashMap;
use std::future::Future;
use tokio::time::Instant;

/// The id of one distinct lookup in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(usize);

/// One distinct thing to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lookup {
    /// A KMS `Decrypt`.
    Kms(kms::Decrypt),
    /// A Parameter Store parameter (fetched in `GetParameters` batches).
    Ssm(ssm::Parameter),
    /// Every parameter under a Parameter Store path (`GetParametersByPath`, every page).
    SsmPath(ssm::PathLoad),
    /// A Secrets Manager secret version.
    Sm(sm::SecretVersion),
}

/// The distinct lookups of a plan, each once, in first-seen order.
#[derive(Debug, Default)]
pub struct Lookups {
    list: Vec<Lookup>,
    index: HashMap<Lookup, LookupId>,
}

impl Lookups {
    /// The id of `lookup`, adding it when new.
    pub fn intern(&mut self, lookup: Lookup) -> LookupId {
        if let Some(id) = self.index.get(&lookup) {
            return *id;
        }
        let id = LookupId(self.list.len());
        self.index.insert(lookup.clone(), id);
        self.list.push(lookup);
        id
    }

    /// The lookup with `id`.
    pub fn get(&self, id: LookupId) -> Option<&Lookup> {
        self.list.get(id.0)
    }

    /// Every lookup with its id, in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (LookupId, &Lookup)> {
        self.list.iter().enumerate().map(|(i, l)| (LookupId(i), l))
    }

    /// Whether there is nothing to fetch.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many lookups there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The lookups of one source, with their ids (`pick` selects and unwraps the variant).
    pub fn of<'a, T>(
        &'a self,
        pick: impl Fn(&'a Lookup) -> Option<&'a T>,
    ) -> Vec<(LookupId, &'a T)> {
        self.iter()
            .filter_map(|(id, l)| pick(l).map(|t| (id, t)))
            .collect()
    }

    /// For messages: what will be fetched, per source.
    pub fn summary(&self) -> String {
        let parameters = self.of(ssm::pick);
        format!(
            "{} KMS ciphertexts and {} SSM parameters in {} GetParameters calls, {} SSM paths, {} Secrets Manager secrets",
            self.of(kms::pick).len(),
            parameters.len(),
            ssm::batches(&parameters).len(),
            self.of(ssm::pick_path).len(),
            self.of(sm::pick).len(),
        )
    }
}

/// What one lookup returned.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// The plaintext.
    pub secret: Secret,
    /// The ARN of what answered (the KMS key, the parameter, the secret), when AWS said.
    pub source: Option<String>,
    /// The version that answered, as `check` shows it.
    pub version: Option<String>,
    /// Whether the service returned bytes rather than text (`SecretBinary`).
    pub binary: bool,
    /// The plaintext parsed as JSON, once, by the first variable that picks a key of it.
    pub(crate) json: OnceCell<Result<sm::Json, Reason>>,
    /// For a path load: every parameter under the path.
    pub items: Vec<Item>,
}

/// One of several values a lookup returned (a parameter of a path).
#[derive(Debug, Clone)]
pub struct Item {
    /// Its name (the parameter's full name).
    pub name: String,
    /// The plaintext.
    pub secret: Secret,
    /// Its ARN, when AWS said.
    pub source: Option<String>,
    /// Its version.
    pub version: Option<String>,
}

impl Fetched {
    /// A plaintext with no provenance.
    pub fn plain(secret: Secret) -> Self {
        Fetched {
            secret,
            ..Fetched::default()
        }
    }
}

/// The answers of the lookups, by id.
#[derive(Debug, Default)]
pub struct Outcomes(HashMap<LookupId, Result<Fetched, Reason>>);

impl Outcomes {
    /// Every lookup of `lookups` failed for `reason`.
    pub fn fail_all(lookups: &Lookups, reason: &Reason) -> Outcomes {
        Outcomes(
            lookups
                .iter()
                .map(|(id, _)| (id, Err(reason.clone())))
                .collect(),
        )
    }

    /// Records the answer of `id`.
    pub fn insert(&mut self, id: LookupId, result: Result<Fetched, Reason>) {
        self.0.insert(id, result);
    }

    /// The answer of `id`; a lookup that never answered is reported as not resolved in time.
    pub fn get(&self, id: LookupId) -> Result<&Fetched, Reason> {
        match self.0.get(&id) {
            Some(Ok(f)) => Ok(f),
            Some(Err(r)) => Err(r.clone()),
            None => Err(Reason::new(Class::TimedOut, "not resolved")),
        }
    }
}

impl FromIterator<(LookupId, Result<Fetched, Reason>)> for Outcomes {
    fn from_iter<I: IntoIterator<Item = (LookupId, Result<Fetched, Reason>)>>(iter: I) -> Self {
        Outcomes(iter.into_iter().collect())
    }
}

/// How one variable gets its plaintext from the answers.
#[derive(Debug, Clone)]
pub enum Use {
    /// A KMS value (`kms:`, `kms:v1:`, `secure:`, shush).
    Kms(kms::Use),
    /// A parameter.
    Ssm(ssm::Use),
    /// A secret, or one key of it.
    Sm(sm::Use),
    /// A `tmpl:` value: text and other uses, filtered.
    Template(Vec<Part>),
}

/// One part of a `tmpl:` value.
#[derive(Debug, Clone)]
pub enum Part {
    /// Literal text.
    Text(String),
    /// A reference's plaintext through filters.
    Value {
        /// How it gets its plaintext.
        using: Box<Use>,
        /// Applied in order.
        filters: Vec<crate::template::Filter>,
        /// The reference's kind, for messages.
        kind: String,
    },
}

/// One variable's plaintext and where it came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The plaintext.
    pub secret: Secret,
    /// The ARN of what answered, when known.
    pub source: Option<String>,
    /// The version that answered, when known.
    pub version: Option<String>,
    /// What IAM must allow for it.
    pub grants: Vec<Grant>,
}

impl Use {
    /// The plaintext of the variable, from `outcomes`.
    pub fn finish(&self, outcomes: &Outcomes) -> Result<Resolved, Reason> {
        match self {
            Use::Kms(u) => u.finish(outcomes),
            Use::Ssm(u) => u.finish(outcomes),
            Use::Sm(u) => u.finish(outcomes),
            Use::Template(parts) => {
                // Every piece first, then one allocation: no growing buffer leaves copies of a
                // plaintext behind (each piece is a zeroized `Secret`).
                let mut pieces: Vec<Secret> = Vec::new();
                let mut grants = Vec::new();
                for part in parts {
                    match part {
                        Part::Text(text) => pieces.push(Secret::new(text.as_bytes().to_vec())),
                        Part::Value {
                            using,
                            filters,
                            kind,
                        } => {
                            let named =
                                |r: Reason| Reason::new(r.class, format!("{kind}: {}", r.detail));
                            let resolved = using.finish(outcomes).map_err(named)?;
                            let mut value = resolved.secret;
                            for filter in filters {
                                value = crate::template::apply(*filter, &value).map_err(named)?;
                            }
                            pieces.push(value);
                            grants.extend(resolved.grants);
                        }
                    }
                }
                let mut out = Vec::with_capacity(pieces.iter().map(|p| p.expose().len()).sum());
                for piece in &pieces {
                    out.extend_from_slice(piece.expose());
                }
                Ok(Resolved {
                    secret: Secret::new(out),
                    source: None,
                    version: None,
                    grants,
                })
            }
        }
    }

    /// What was asked for, for `check` rows of failed references.
    pub fn requested(&self, lookups: &Lookups) -> Option<String> {
        match self {
            Use::Kms(_) => None,
            Use::Ssm(u) => u.requested(lookups),
            Use::Sm(u) => u.requested(lookups),
            Use::Template(_) => None,
        }
    }
}

/// What IAM must allow for one resolved variable (`check --iam-policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// `kms:Decrypt` on a key.
    Kms(kms::Grant),
    /// `ssm:GetParameters` on a parameter.
    Ssm(ssm::Grant),
    /// `ssm:GetParametersByPath` on a path.
    SsmPath(ssm::PathGrant),
    /// `secretsmanager:GetSecretValue` on a secret.
    Sm(sm::Grant),
}

/// The IAM statements for `grants`, each source's in turn.
pub fn statements(grants: &[&Grant]) -> Vec<serde_json::Value> {
    let (mut kms_grants, mut ssm_grants, mut sm_grants) = (Vec::new(), Vec::new(), Vec::new());
    let mut path_grants = Vec::new();
    for grant in grants {
        match grant {
            Grant::Kms(g) => kms_grants.push(g),
            Grant::Ssm(g) => ssm_grants.push(g),
            Grant::SsmPath(g) => path_grants.push(g),
            Grant::Sm(g) => sm_grants.push(g),
        }
    }
    let mut out = kms::statements(&kms_grants);
    out.extend(ssm::statements(&ssm_grants));
    out.extend(ssm::path_statements(&path_grants));
    out.extend(sm::statements(&sm_grants));
    out
}

/// The ports the resolver calls, one per source.
pub struct Clients<'a, K, S, M> {
    /// KMS.
    pub kms: &'a K,
    /// Parameter Store.
    pub ssm: &'a S,
    /// Secrets Manager.
    pub sm: &'a M,
}

/// Fetches every lookup, all sources concurrently; nothing runs past `deadline`.
pub async fn resolve<K: kms::Kms, S: ssm::Ssm, M: sm::SecretsManager>(
    lookups: &Lookups,
    clients: &Clients<'_, K, S, M>,
    deadline: Instant,
) -> Outcomes {
    let (k, s, p, m) = futures_util::future::join4(
        kms::resolve(lookups.of(kms::pick), clients.kms, deadline),
        ssm::resolve(lookups.of(ssm::pick), clients.ssm, deadline),
        ssm::resolve_paths(lookups.of(ssm::pick_path), clients.ssm, deadline),
        sm::resolve(lookups.of(sm::pick), clients.sm, deadline),
    )
    .await;
    k.into_iter().chain(s).chain(p).chain(m).collect()
}

/// The most AWS calls in flight at once: a few dozen (every concurrent call holds a
/// connection), and fewer when the open-file limit is low, so that 500 references under
/// `ulimit -n 256` queue under the deadline instead of failing with EMFILE.
pub fn max_in_flight() -> usize {
    const MOST: usize = 64;
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_or(1024, |(soft, _)| soft);
    // Leave room for stdio, the runtime and the resolver; each call needs about two.
    let by_limit = usize::try_from(soft.saturating_sub(32) / 2).unwrap_or(MOST);
    by_limit.clamp(1, MOST)
}

/// The gate every AWS call passes (see [`max_in_flight`]).
fn gate() -> &'static tokio::sync::Semaphore {
    static GATE: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    GATE.get_or_init(|| tokio::sync::Semaphore::new(max_in_flight()))
}

/// The future `call` makes, once a place among the calls in flight is free, or a timeout when
/// `deadline` passes first. `call` makes the future here, so that this future holds it once (an
/// `async fn` given the future itself would hold it twice: its argument and the future it is
/// moved into, about 3 KB a call; BENCHMARKS.md, eleventh session).
pub async fn within<T, F: Future<Output = Result<T, Reason>>>(
    deadline: Instant,
    call: impl FnOnce() -> F,
) -> Result<T, Reason> {
    let timed_out = || {
        Err(Reason::new(
            Class::TimedOut,
            "no answer before the deadline",
        ))
    };
    let Ok(Ok(_permit)) = before(deadline, gate().acquire()).await else {
        return timed_out();
    };
    before(deadline, call())
        .await
        .unwrap_or_else(|_| timed_out())
}

#[cfg(test)]
mod tests {
    use super::kms::fake::FakeKms;
    use super::sm::fake::FakeSm;
    use super::ssm::fake::FakeSsm;
    use super::*;
    use crate::plan::{Options, Plan};
    use std::ffi::OsString;
    use std::time::Duration;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn run(plan: &Plan, kms: &FakeKms, ssm: &FakeSsm, ms: u64) -> Outcomes {
        run_with(plan, kms, ssm, &FakeSm::default(), ms)
    }

    fn run_with(plan: &Plan, kms: &FakeKms, ssm: &FakeSsm, sm: &FakeSm, ms: u64) -> Outcomes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let clients = Clients { kms, ssm, sm };
        rt.block_on(resolve(
            &plan.lookups,
            &clients,
            Instant::now() + Duration::from_millis(ms),
        ))
    }

    /// The answer for the lookup `is` picks out.
    fn answer<'a>(
        plan: &Plan,
        out: &'a Outcomes,
        is: impl Fn(&Lookup) -> bool,
    ) -> Result<&'a Fetched, Reason> {
        let (id, _) = plan.lookups.iter().find(|(_, l)| is(l)).unwrap();
        out.get(id)
    }

    fn parameter(name: &'static str) -> impl Fn(&Lookup) -> bool {
        move |l| matches!(l, Lookup::Ssm(p) if p.request() == name)
    }

    fn blob(b: &'static [u8]) -> impl Fn(&Lookup) -> bool {
        move |l| matches!(l, Lookup::Kms(d) if d.blob == b)
    }

    #[test]
    fn maps_answers_back_by_id_and_missing_names_to_not_found() {
        let plan = Plan::new(
            env(&[
                ("A", "ssm:/a"),
                ("B", "ssm:/b:2"),
                ("C", "ssm:/missing"),
                ("K", "kms:AQI="),
                ("K2", "kms:AQI="),
            ]),
            &Options::default(),
        );
        let kms = FakeKms::default();
        let ssm = FakeSsm::with(&[("/a", "va"), ("/b:2", "vb")]);
        let out = run(&plan, &kms, &ssm, 1000);
        assert_eq!(kms.count("Decrypt"), 1, "one Decrypt per distinct blob");
        assert_eq!(ssm.batches.borrow().len(), 1);
        let secret = |r: Result<&Fetched, Reason>| r.unwrap().secret.expose().to_vec();
        assert_eq!(secret(answer(&plan, &out, parameter("/a"))), b"va");
        assert_eq!(secret(answer(&plan, &out, parameter("/b:2"))), b"vb");
        assert_eq!(
            answer(&plan, &out, parameter("/missing"))
                .unwrap_err()
                .class,
            Class::NotFound
        );
        assert_eq!(secret(answer(&plan, &out, blob(&[1, 2]))), [2, 1]);
    }

    #[test]
    fn twenty_five_names_take_three_calls() {
        let names: Vec<(OsString, OsString)> = (0..25)
            .map(|i| (format!("V{i}").into(), format!("ssm:/p{i}").into()))
            .collect();
        let values: Vec<(String, String)> = (0..25)
            .map(|i| (format!("/p{i}"), format!("v{i}")))
            .collect();
        let plan = Plan::new(names, &Options::default());
        let pairs: Vec<(&str, &str)> = values
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (kms, ssm) = (FakeKms::default(), FakeSsm::with(&pairs));
        let out = run(&plan, &kms, &ssm, 1000);
        let sizes: Vec<usize> = ssm.batches.borrow().iter().map(|b| b.1.len()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        for (id, lookup) in plan.lookups.iter() {
            let Lookup::Ssm(p) = lookup else { panic!() };
            let want = format!("v{}", &p.name[2..]);
            assert_eq!(out.get(id).unwrap().secret.expose(), want.as_bytes());
        }
    }

    #[test]
    fn a_hanging_call_times_out_and_the_others_still_answer() {
        let plan = Plan::new(
            env(&[
                ("HANG", "kms:/w=="),
                ("OK", "kms:AQI="),
                ("BAD", "kms:7g=="),
            ]),
            &Options::default(),
        );
        let (kms, ssm) = (FakeKms::default(), FakeSsm::default());
        let out = run(&plan, &kms, &ssm, 500);
        assert_eq!(
            answer(&plan, &out, blob(&[0xff])).unwrap_err().class,
            Class::TimedOut
        );
        assert!(answer(&plan, &out, blob(&[1, 2])).is_ok());
        assert_eq!(
            answer(&plan, &out, blob(&[0xee])).unwrap_err().class,
            Class::BadCiphertext
        );
    }

    #[test]
    fn one_secret_is_fetched_once_for_every_variable_and_key() {
        let plan = Plan::new(
            env(&[
                ("USER", "sm:prod/db#username"),
                ("PASS", "sm:prod/db#password"),
                ("PORT", "sm:prod/db#/port"),
                ("ALL", "sm:prod/db"),
                ("SAME", "sm:prod/db:AWSCURRENT#password"),
                ("GONE", "sm:prod/db#nope"),
                ("OTHER", "sm:other"),
            ]),
            &Options::default(),
        );
        assert_eq!(plan.lookups.len(), 2);
        let doc = r#"{"username":"app","password":"pw","port":5432}"#;
        let sm = FakeSm::default().with("prod/db", doc);
        let out = run_with(&plan, &FakeKms::default(), &FakeSsm::default(), &sm, 1000);
        assert_eq!(sm.calls.borrow().len(), 2, "{:?}", sm.calls.borrow());
        let rows = plan.report(&out);
        let status = |v: &str| {
            rows.iter()
                .find(|r| r.variable == v)
                .unwrap()
                .status
                .clone()
        };
        assert_eq!(status("GONE").unwrap_err().class, Class::NotFound);
        assert_eq!(status("OTHER").unwrap_err().class, Class::NotFound);
        let failures = plan.apply(out).unwrap_err();
        assert_eq!(failures.len(), 2);
    }

    #[test]
    fn loads_walk_every_page_map_names_and_fail_closed() {
        let values: Vec<(String, String)> = (0..5)
            .map(|i| (format!("/prod/app/k{i}"), format!("v{i}")))
            .chain([
                ("/prod/app/db/password".to_owned(), "pw".to_owned()),
                ("/prod/app/LD_PRELOAD".to_owned(), "evil".to_owned()),
                ("/prod/app/db.password".to_owned(), "other".to_owned()),
            ])
            .collect();
        let pairs: Vec<(&str, &str)> = values
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let ssm = FakeSsm::with(&pairs);
        let env = |load: &str| {
            vec![
                (OsString::from("K0"), OsString::from("explicit")),
                (OsString::from("KMS_ENV_LOAD"), OsString::from(load)),
            ]
        };
        // One level, with a prefix: every page, the explicit variable wins.
        let plan = Plan::new(env("ssm:/prod/app/*"), &Options::default());
        let out = run(&plan, &FakeKms::default(), &ssm, 1000);
        let failures = plan.apply(out).unwrap_err();
        assert!(
            failures
                .iter()
                .any(|f| f.reason.detail.contains("LD_PRELOAD")),
            "{failures:?}"
        );
        let prefixed = Plan::new(env("APP_=ssm:/prod/app/*"), &Options::default());
        ssm.batches.borrow_mut().clear();
        let out = run(&prefixed, &FakeKms::default(), &ssm, 1000);
        let vars = prefixed.apply(out).unwrap();
        let names: Vec<String> = vars
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "K0",
                "APP_DB_PASSWORD",
                "APP_K0",
                "APP_K1",
                "APP_K2",
                "APP_K3",
                "APP_K4",
                "APP_LD_PRELOAD"
            ]
        );
        // 7 parameters one level down, pages of two: four calls.
        assert_eq!(ssm.batches.borrow().len(), 4);
        // Every level: db/password and db.password both map to DB_PASSWORD.
        let deep = Plan::new(env("ssm:/prod/app/**"), &Options::default());
        let out = run(&deep, &FakeKms::default(), &ssm, 1000);
        let failures = deep.apply(out).unwrap_err();
        assert!(
            failures
                .iter()
                .any(|f| f.reason.detail.contains("both map to DB_PASSWORD")),
            "{failures:?}"
        );
        // Nothing under a path: 66 unless optional.
        let empty = Plan::new(env("ssm:/nothing/*"), &Options::default());
        let out = run(&empty, &FakeKms::default(), &ssm, 1000);
        assert_eq!(
            empty.apply(out).unwrap_err()[0].reason.class,
            Class::NotFound
        );
        let optional = Plan::new(env("ssm:/nothing/*?optional"), &Options::default());
        let out = run(&optional, &FakeKms::default(), &ssm, 1000);
        assert_eq!(optional.apply(out).unwrap().len(), 1);
    }
}
