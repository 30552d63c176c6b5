//! The Parameter Store source: `ssm:<name>`, `ssm://<name>`, an optional `:<version>` or
//! `:<label>` selector, and `ssm:arn:<partition>:ssm:<region>:<account>:parameter/<name>`.
//!
//! It owns that grammar, the lookup (one per distinct reference), the batching into
//! `GetParameters` calls of at most [`BATCH_MAX`] names per region (never one parameter twice in
//! a batch: SSM answers by name, so two selectors of one name could not be told apart), the
//! [`Ssm`] port with its SDK adapter [`AwsSsm`], SSM's error codes and the `ssm:GetParameters`
//! IAM statement. See README "Reference syntax".

use super::{Fetched, Item, Lookup, LookupId, Lookups, Outcomes, Resolved, within};
use crate::aws::{Aws, json};
use crate::error::{Class, Reason};
use crate::secret::Secret;
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use tokio::time::Instant;

/// Prefix of a Parameter Store reference.
pub const PREFIX: &str = "ssm:";
/// `GetParameters` accepts at most ten names per call.
pub const BATCH_MAX: usize = 10;
/// Longest parameter name SSM accepts (a full ARN may be longer by its prefix).
const MAX_NAME_LEN: usize = 2048;
/// Longest selector (a label is at most 100 characters).
const MAX_SELECTOR_LEN: usize = 100;

/// A parameter reference; as a lookup, one distinct parameter to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Parameter {
    /// The parameter's name as SSM knows it, e.g. `/prod/db` or `prod.db`.
    pub name: String,
    /// The full ARN when the reference was given by ARN.
    pub arn: Option<String>,
    /// The region to call: the ARN's region, otherwise the configured one (`None`).
    pub region: Option<String>,
    /// A version number or label, without the colon.
    pub selector: Option<String>,
}

impl Parameter {
    /// The string sent to SSM: the name or ARN, with `:selector` when pinned.
    pub fn request(&self) -> String {
        let base = self.arn.as_deref().unwrap_or(&self.name);
        match &self.selector {
            Some(sel) => format!("{base}:{sel}"),
            None => base.to_owned(),
        }
    }

    /// Short description for messages, e.g. `ssm /prod/db:3`. Never a secret.
    pub fn kind(&self) -> String {
        format!("ssm {}", self.request())
    }
}

impl fmt::Display for Parameter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.request())
    }
}

fn malformed(detail: &str) -> Reason {
    Reason::new(Class::Malformed, detail)
}

/// Parses what follows `ssm:`.
pub fn parse(body: &[u8]) -> Result<Parameter, Reason> {
    let body = std::str::from_utf8(body)
        .map_err(|_| malformed("an ssm: reference must be valid UTF-8"))?;
    let body = body.strip_prefix("//").unwrap_or(body);
    if body.is_empty() {
        return Err(malformed("the ssm: reference names no parameter"));
    }
    if body.starts_with("arn:") {
        return parse_arn(body);
    }
    let (name, selector) = split_selector(body)?;
    check_name(name)?;
    Ok(Parameter {
        name: name.to_owned(),
        arn: None,
        region: None,
        selector,
    })
}

/// Whether `s` is a non-empty run of lowercase letters, digits and `-` (a partition or region).
pub fn lower_dash(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Whether `s` is a 12-digit account id.
pub fn account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:<partition>:ssm:<region>:<account>:parameter/<name>[:selector]`
fn parse_arn(body: &str) -> Result<Parameter, Reason> {
    const SHAPE: &str =
        "an ssm: ARN must look like arn:aws:ssm:<region>:<account>:parameter/<name>";
    let parts: Vec<&str> = body.splitn(6, ':').collect();
    let [_, partition, service, region, account, resource] = parts[..] else {
        return Err(malformed(SHAPE));
    };
    let Some(path) = resource.strip_prefix("parameter/") else {
        return Err(malformed(SHAPE));
    };
    if service != "ssm" || !lower_dash(partition) || !lower_dash(region) || !account_id(account) {
        return Err(malformed(SHAPE));
    }
    let (path, selector) = split_selector(path)?;
    // The ARN of `/prod/db` is `…:parameter/prod/db`; that of `prod.db` is `…:parameter/prod.db`.
    let name = if path.contains('/') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    check_name(&name)?;
    Ok(Parameter {
        arn: Some(format!(
            "arn:{partition}:ssm:{region}:{account}:parameter/{path}"
        )),
        name,
        region: Some(region.to_owned()),
        selector,
    })
}

fn split_selector(s: &str) -> Result<(&str, Option<String>), Reason> {
    let Some((name, selector)) = s.split_once(':') else {
        return Ok((s, None));
    };
    if selector.is_empty()
        || selector.len() > MAX_SELECTOR_LEN
        || !selector
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
    {
        return Err(malformed(
            "the ssm: selector after ':' must be a version number or a label of letters, digits, '_', '.', '-'",
        ));
    }
    Ok((name, Some(selector.to_owned())))
}

fn check_name(name: &str) -> Result<(), Reason> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(malformed(
            "the parameter name must be 1 to 2048 characters long",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_.-/".contains(&b))
    {
        return Err(malformed(
            "the parameter name may hold only letters, digits, '_', '.', '-' and '/'",
        ));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(malformed(
            "a parameter path must start with '/': write ssm:///prod/db or ssm:/prod/db",
        ));
    }
    if name.contains("//") || (name.len() > 1 && name.ends_with('/')) {
        return Err(malformed("the parameter path has an empty segment"));
    }
    Ok(())
}

/// A load of every parameter under a path (`ssm:/prod/billing/*`, `/**`, `/**:label`): one
/// `GetParametersByPath` walk, every page, in the configured region.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathLoad {
    /// The path, without a trailing `/` (`/` for the root).
    pub path: String,
    /// `/**`: every level below.
    pub recursive: bool,
    /// Only parameters carrying this label.
    pub label: Option<String>,
}

impl PathLoad {
    /// The part of a parameter's name below the path (`db/password`).
    pub fn relative<'a>(&self, name: &'a str) -> &'a str {
        name.strip_prefix(self.path.as_str())
            .unwrap_or(name)
            .trim_start_matches('/')
    }
}

/// Parses what follows `ssm:` in a load spec: `/path/*`, `/path/**`, optionally `:label`.
pub fn parse_load(body: &str) -> Result<PathLoad, Reason> {
    const SHAPE: &str =
        "an ssm: load is ssm:/path/* (one level) or ssm:/path/** (every level), optionally :label";
    let (body, label) = match body.rsplit_once(':') {
        Some((spec, label)) if spec.ends_with('*') => (spec, Some(label)),
        _ => (body, None),
    };
    let (path, recursive) = if let Some(path) = body.strip_suffix("/**") {
        (path, true)
    } else if let Some(path) = body.strip_suffix("/*") {
        (path, false)
    } else {
        return Err(malformed(SHAPE));
    };
    let path = if path.is_empty() { "/" } else { path };
    if !path.starts_with('/') {
        return Err(malformed(SHAPE));
    }
    if path != "/" {
        check_name(path)?;
    }
    let label = match label {
        Some(l) => split_selector(&format!("x:{l}"))?.1,
        None => None,
    };
    Ok(PathLoad {
        path: path.to_owned(),
        recursive,
        label,
    })
}

/// Selects the path loads.
pub fn pick_path(lookup: &Lookup) -> Option<&PathLoad> {
    match lookup {
        Lookup::SsmPath(p) => Some(p),
        _ => None,
    }
}

/// Walks every path load, each page after the other (SSM returns at most 10 a page), all
/// loads at once.
pub async fn resolve_paths(
    loads: Vec<(LookupId, &PathLoad)>,
    ssm: &impl Ssm,
    deadline: Instant,
) -> Vec<(LookupId, Result<Fetched, Reason>)> {
    join_all(loads.into_iter().map(|(id, load)| async move {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        let result = loop {
            let page = within(deadline, || {
                ssm.get_parameters_by_path(load, next.as_deref(), deadline)
            })
            .await;
            match page {
                Err(reason) => break Err(reason),
                Ok((answers, token)) => {
                    items.extend(answers.into_iter().map(|a| Item {
                        name: a.name,
                        secret: a.value,
                        source: a.arn,
                        version: a.version.map(|v| v.to_string()),
                    }));
                    match token {
                        Some(t) if !t.is_empty() => next = Some(t),
                        _ => break Ok(()),
                    }
                }
            }
        };
        (
            id,
            result.map(|()| Fetched {
                items,
                ..Fetched::default()
            }),
        )
    }))
    .await
}

/// `ssm:GetParametersByPath` on a path (`check --iam-policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGrant {
    /// `arn:…:parameter/prod/billing`.
    pub arn: String,
}

impl PathGrant {
    /// The grant for `load`, from the ARN of one parameter it returned.
    pub fn new(load: &PathLoad, item: &Item) -> Option<PathGrant> {
        let arn = item.source.as_deref()?;
        let base = arn.strip_suffix(item.name.trim_start_matches('/'))?;
        let base = base.trim_end_matches('/');
        Some(PathGrant {
            arn: format!("{base}/{}", load.path.trim_matches('/'))
                .trim_end_matches('/')
                .to_owned(),
        })
    }
}

/// The `ssm:GetParametersByPath` statement: each path and everything below it.
pub fn path_statements(grants: &[&PathGrant]) -> Vec<Value> {
    let mut arns: BTreeSet<String> = BTreeSet::new();
    for g in grants {
        arns.insert(g.arn.clone());
        arns.insert(format!("{}/*", g.arn));
    }
    if arns.is_empty() {
        return Vec::new();
    }
    vec![json!({
        "Sid": "ReadParameterPaths",
        "Effect": "Allow",
        "Action": "ssm:GetParametersByPath",
        "Resource": arns.into_iter().collect::<Vec<_>>(),
    })]
}

/// Selects the parameter lookups.
pub fn pick(lookup: &Lookup) -> Option<&Parameter> {
    match lookup {
        Lookup::Ssm(p) => Some(p),
        _ => None,
    }
}

/// How a variable gets its plaintext from Parameter Store: the value of one lookup.
#[derive(Debug, Clone)]
pub struct Use {
    id: LookupId,
}

/// Plans a reference.
pub fn plan(parameter: Parameter, lookups: &mut Lookups) -> Use {
    Use {
        id: lookups.intern(Lookup::Ssm(parameter)),
    }
}

impl Use {
    /// The plaintext, from the answers.
    pub fn finish(&self, outcomes: &Outcomes) -> Result<Resolved, Reason> {
        let f = outcomes.get(self.id)?;
        Ok(Resolved {
            secret: f.secret.clone(),
            source: f.source.clone(),
            version: f.version.clone(),
            grants: f
                .source
                .clone()
                .map(|arn| super::Grant::Ssm(Grant { arn }))
                .into_iter()
                .collect(),
        })
    }

    /// The name or ARN asked for.
    pub fn requested(&self, lookups: &Lookups) -> Option<String> {
        lookups.get(self.id).and_then(pick).map(Parameter::request)
    }
}

/// One `GetParameters` call: a region (`None` = the configured one) and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    /// Region to call, from an ARN; `None` for the configured region.
    pub region: Option<String>,
    /// At most [`BATCH_MAX`] parameters, no name twice.
    pub parameters: Vec<(LookupId, &'a Parameter)>,
}

/// Groups parameters by region, then fills batches first-fit: at most [`BATCH_MAX`] each, no
/// parameter name twice in one batch.
pub fn batches<'a>(parameters: &[(LookupId, &'a Parameter)]) -> Vec<Batch<'a>> {
    let mut out: Vec<Batch<'a>> = Vec::new();
    for &(id, p) in parameters {
        let fits = |b: &Batch| {
            b.region == p.region
                && b.parameters.len() < BATCH_MAX
                && b.parameters.iter().all(|(_, q)| q.name != p.name)
        };
        match out.iter_mut().find(|b| fits(b)) {
            Some(batch) => batch.parameters.push((id, p)),
            None => out.push(Batch {
                region: p.region.clone(),
                parameters: vec![(id, p)],
            }),
        }
    }
    out
}

/// One parameter as `GetParameters` returned it.
#[derive(Debug)]
pub struct Answer {
    /// `Name` as returned (a name, or an ARN for parameters shared from another account).
    pub name: String,
    /// `ARN` as returned, when present.
    pub arn: Option<String>,
    /// `Version` as returned.
    pub version: Option<i64>,
    /// The decrypted value.
    pub value: Secret,
}

/// Reads Parameter Store.
pub trait Ssm {
    /// `GetParameters` with decryption for at most ten names or ARNs (with selectors) in
    /// `region` (`None` = configured). Names SSM does not know are simply absent.
    fn get_parameters(
        &self,
        region: Option<&str>,
        names: &[String],
        deadline: Instant,
    ) -> impl Future<Output = Result<Vec<Answer>, Reason>>;

    /// One page of `GetParametersByPath` with decryption for `load`, from `next` (the previous
    /// page's token); the parameters and the next token.
    fn get_parameters_by_path(
        &self,
        load: &PathLoad,
        next: Option<&str>,
        deadline: Instant,
    ) -> impl Future<Output = Result<(Vec<Answer>, Option<String>), Reason>>;
}

/// Whether answer `a` is the one for `wanted`. A batch never holds one name twice, so the name
/// (or the ARN, for shared parameters) identifies it.
fn answers(wanted: &Parameter, a: &Answer) -> bool {
    a.name == wanted.name
        || wanted
            .arn
            .as_deref()
            .is_some_and(|arn| a.name == arn || a.arn.as_deref() == Some(arn))
}

/// Makes every batch at once and maps the answers back to the lookups.
pub async fn resolve(
    parameters: Vec<(LookupId, &Parameter)>,
    ssm: &impl Ssm,
    deadline: Instant,
) -> Vec<(LookupId, Result<Fetched, Reason>)> {
    let calls = batches(&parameters).into_iter().map(|batch| async move {
        let names: Vec<String> = batch.parameters.iter().map(|(_, p)| p.request()).collect();
        let result = within(deadline, || {
            ssm.get_parameters(batch.region.as_deref(), &names, deadline)
        })
        .await;
        batch
            .parameters
            .iter()
            .map(|&(id, wanted)| {
                let answer = match &result {
                    Err(reason) => Err(reason.clone()),
                    Ok(answers_) => answers_
                        .iter()
                        .find(|a| answers(wanted, a))
                        .map(|a| Fetched {
                            source: a.arn.clone(),
                            version: a.version.map(|v| v.to_string()),
                            ..Fetched::plain(a.value.clone())
                        })
                        .ok_or_else(|| {
                            Reason::new(
                                Class::NotFound,
                                format!("SSM has no parameter {wanted} (InvalidParameters)"),
                            )
                        }),
                };
                (id, answer)
            })
            .collect::<Vec<_>>()
    });
    join_all(calls).await.into_iter().flatten().collect()
}

/// SSM's own error codes.
fn codes(code: &str, _message: &str) -> Option<Class> {
    match code {
        "ParameterNotFound" | "ParameterVersionNotFound" => Some(Class::NotFound),
        _ => None,
    }
}

/// Parameter Store without the SDK's orchestrator ([`json`]): its calls are on the start's
/// critical path. ARN references go to the ARN's region.
pub struct AwsSsm {
    clients: json::Clients,
}

/// SSM as [`json`] calls it.
static SSM: json::Service = json::Service {
    id: "SSM",
    signing_name: "ssm",
    target: "AmazonSSM",
    resolve: json::resolver!(aws_sdk_ssm),
};

impl AwsSsm {
    /// An SSM client for `aws`'s region, and the means to make one for other regions.
    pub fn new(aws: &Aws) -> Self {
        AwsSsm {
            clients: json::Clients::new(&aws.json, &SSM),
        }
    }
}

/// `GetParameters`' request.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParameters<'a> {
    names: &'a [String],
    with_decryption: bool,
}

/// `GetParametersByPath`'s request.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetParametersByPath<'a> {
    path: &'a str,
    recursive: bool,
    with_decryption: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter_filters: Option<[Filter<'a>; 1]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_token: Option<&'a str>,
}

/// A `ParameterStringFilter`.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Filter<'a> {
    key: &'static str,
    option: &'static str,
    values: [&'a str; 1],
}

/// What kms-env reads of both answers.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Parameters {
    #[serde(default)]
    parameters: Vec<Returned>,
    next_token: Option<String>,
}

/// A parameter of an answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Returned {
    name: Option<String>,
    value: Option<String>,
    #[serde(rename = "ARN")]
    arn: Option<String>,
    version: Option<i64>,
}

/// The answers in what SSM returned (parameters without a name or value are left out).
fn answers_of(parameters: Vec<Returned>) -> Vec<Answer> {
    parameters
        .into_iter()
        .filter_map(|p| {
            let value = Secret::from(p.value?);
            Some(Answer {
                name: p.name?,
                arn: p.arn,
                version: p.version,
                value,
            })
        })
        .collect()
}

impl Ssm for AwsSsm {
    async fn get_parameters(
        &self,
        region: Option<&str>,
        names: &[String],
        deadline: Instant,
    ) -> Result<Vec<Answer>, Reason> {
        let client = self.clients.client(region)?;
        let request = GetParameters {
            names,
            with_decryption: true,
        };
        let out: Parameters = client
            .read("GetParameters", &request, codes, deadline)
            .await?;
        Ok(answers_of(out.parameters))
    }

    async fn get_parameters_by_path(
        &self,
        load: &PathLoad,
        next: Option<&str>,
        deadline: Instant,
    ) -> Result<(Vec<Answer>, Option<String>), Reason> {
        let client = self.clients.client(None)?;
        let request = GetParametersByPath {
            path: &load.path,
            recursive: load.recursive,
            with_decryption: true,
            parameter_filters: load.label.as_deref().map(|label| {
                [Filter {
                    key: "Label",
                    option: "Equals",
                    values: [label],
                }]
            }),
            next_token: next,
        };
        let out: Parameters = client
            .read("GetParametersByPath", &request, codes, deadline)
            .await?;
        Ok((answers_of(out.parameters), out.next_token))
    }
}

/// `ssm:GetParameters` on a parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The parameter ARN.
    pub arn: String,
}

/// The `ssm:GetParameters` statement for every parameter.
pub fn statements(grants: &[&Grant]) -> Vec<Value> {
    let arns: BTreeSet<&str> = grants.iter().map(|g| g.arn.as_str()).collect();
    if arns.is_empty() {
        return Vec::new();
    }
    vec![json!({
        "Sid": "ReadParameters",
        "Effect": "Allow",
        "Action": "ssm:GetParameters",
        "Resource": arns.into_iter().collect::<Vec<_>>(),
    })]
}

#[cfg(test)]
pub mod fake {
    //! A Parameter Store that knows a fixed set of `name[:selector]` values and records every
    //! batch it was asked for.

    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// The fake.
    #[derive(Default)]
    pub struct FakeSsm {
        /// `name[:selector]` → value.
        pub values: HashMap<String, String>,
        /// Every call: region and names.
        pub batches: RefCell<Vec<(Option<String>, Vec<String>)>>,
    }

    impl FakeSsm {
        /// A fake that knows `values`.
        pub fn with(values: &[(&str, &str)]) -> Self {
            FakeSsm {
                values: values
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
                ..FakeSsm::default()
            }
        }
    }

    impl Ssm for FakeSsm {
        async fn get_parameters(
            &self,
            region: Option<&str>,
            names: &[String],
            _: Instant,
        ) -> Result<Vec<Answer>, Reason> {
            self.batches
                .borrow_mut()
                .push((region.map(Into::into), names.to_vec()));
            assert!(names.len() <= BATCH_MAX);
            Ok(names
                .iter()
                .filter_map(|n| {
                    self.values.get(n).map(|v| Answer {
                        name: n.split(':').next().unwrap_or_default().to_owned(),
                        arn: None,
                        version: Some(1),
                        value: Secret::new(v.clone().into_bytes()),
                    })
                })
                .collect())
        }

        async fn get_parameters_by_path(
            &self,
            load: &PathLoad,
            next: Option<&str>,
            _: Instant,
        ) -> Result<(Vec<Answer>, Option<String>), Reason> {
            // Pages of two, the token being the index of the next page's first parameter.
            let mut names: Vec<&String> = self
                .values
                .keys()
                .filter(|n| {
                    n.strip_prefix(&format!("{}/", load.path.trim_end_matches('/')))
                        .is_some_and(|rest| load.recursive || !rest.contains('/'))
                })
                .collect();
            names.sort();
            let start: usize = next.map_or(0, |t| t.parse().unwrap_or(0));
            self.batches
                .borrow_mut()
                .push((None, vec![format!("{}@{start}", load.path)]));
            let page = names
                .iter()
                .skip(start)
                .take(2)
                .map(|n| Answer {
                    name: (*n).clone(),
                    arn: Some(format!("arn:aws:ssm:us-east-1:111122223333:parameter{n}")),
                    version: Some(1),
                    value: Secret::new(self.values[*n].clone().into_bytes()),
                })
                .collect();
            let next = (start + 2 < names.len()).then(|| (start + 2).to_string());
            Ok((page, next))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, selector: Option<&str>) -> Parameter {
        Parameter {
            name: name.into(),
            arn: None,
            region: None,
            selector: selector.map(Into::into),
        }
    }

    fn parse_str(v: &str) -> Result<Parameter, Reason> {
        parse(v.as_bytes())
    }

    #[test]
    fn forms() {
        assert_eq!(parse_str("///prod/db").unwrap(), p("/prod/db", None));
        assert_eq!(parse_str("/prod/db").unwrap(), p("/prod/db", None));
        assert_eq!(parse_str("//prod.db").unwrap(), p("prod.db", None));
        assert_eq!(parse_str("prod.db").unwrap(), p("prod.db", None));
        assert_eq!(parse_str("/prod/db:3").unwrap(), p("/prod/db", Some("3")));
        assert_eq!(
            parse_str("///prod/db:current").unwrap(),
            p("/prod/db", Some("current"))
        );
        assert_eq!(parse_str("a_b-c.d").unwrap(), p("a_b-c.d", None));
        let r = parse_str("/prod/db:7").unwrap();
        assert_eq!(r.request(), "/prod/db:7");
        assert_eq!(r.kind(), "ssm /prod/db:7");
    }

    #[test]
    fn arns() {
        let r = parse_str("arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db").unwrap();
        assert_eq!(r.name, "/prod/db");
        assert_eq!(r.region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.selector, None);
        assert_eq!(
            r.request(),
            "arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db"
        );
        let r =
            parse_str("//arn:aws-cn:ssm:cn-north-1:123456789012:parameter/flat.name:prod").unwrap();
        assert_eq!(r.name, "flat.name");
        assert_eq!(r.region.as_deref(), Some("cn-north-1"));
        assert_eq!(r.selector.as_deref(), Some("prod"));
        assert_eq!(
            r.request(),
            "arn:aws-cn:ssm:cn-north-1:123456789012:parameter/flat.name:prod"
        );
    }

    #[test]
    fn malformed_references() {
        for v in [
            "",
            "//",
            "/prod/db:",
            "/prod/db:1:2",
            "/prod db",
            "prod/db",
            "//prod/db",
            "/prod//db",
            "/prod/",
            "/prod/db:lab el",
            "arn:aws:ssm:us-east-1:123456789012:parameter/",
            "arn:aws:ssm:us-east-1:123:parameter/x",
            "arn:aws:kms:us-east-1:123456789012:parameter/x",
            "arn:aws:ssm::123456789012:parameter/x",
            "arn:aws:ssm:us-east-1:123456789012:secret/x",
            "arn:aws:ssm:us-east-1",
        ] {
            assert_eq!(parse_str(v).unwrap_err().class, Class::Malformed, "{v}");
        }
        let long = format!("/{}", "a".repeat(MAX_NAME_LEN));
        assert_eq!(parse_str(&long).unwrap_err().class, Class::Malformed);
        assert_eq!(parse(b"/a\xff").unwrap_err().class, Class::Malformed);
    }

    fn lookups(refs: &[Parameter]) -> Lookups {
        let mut l = Lookups::default();
        for r in refs {
            l.intern(Lookup::Ssm(r.clone()));
        }
        l
    }

    fn sizes(n: usize) -> Vec<usize> {
        let refs: Vec<Parameter> = (0..n).map(|i| p(&format!("/p/{i}"), None)).collect();
        let l = lookups(&refs);
        batches(&l.of(pick))
            .iter()
            .map(|b| b.parameters.len())
            .collect()
    }

    #[test]
    fn batch_sizes_for_1_10_11_25() {
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(10), vec![10]);
        assert_eq!(sizes(11), vec![10, 1]);
        assert_eq!(sizes(25), vec![10, 10, 5]);
    }

    #[test]
    fn two_selectors_of_one_name_go_to_two_batches_and_regions_apart() {
        let l = lookups(&[
            p("/x", None),
            p("/x", Some("2")),
            parse_str("arn:aws:ssm:eu-west-1:123456789012:parameter/b").unwrap(),
            p("/c", None),
        ]);
        let b = batches(&l.of(pick));
        let shape: Vec<(Option<&str>, Vec<&str>)> = b
            .iter()
            .map(|b| {
                (
                    b.region.as_deref(),
                    b.parameters.iter().map(|(_, p)| p.name.as_str()).collect(),
                )
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (None, vec!["/x", "/c"]),
                (None, vec!["/x"]),
                (Some("eu-west-1"), vec!["b"]),
            ]
        );
    }

    #[test]
    fn error_codes_map_to_classes() {
        assert_eq!(codes("ParameterNotFound", ""), Some(Class::NotFound));
        assert_eq!(codes("InternalServerError", ""), None);
    }
}
