//! The Secrets Manager source: `sm:<name or ARN>[:<stage or version id>][#<key or /pointer>]`,
//! and after an ARN the ECS `valueFrom` tail `:<json-key>:<version-stage>:<version-id>`.
//!
//! It owns that grammar, the lookup ([`SecretVersion`]: one `GetSecretValue` per distinct
//! secret, version and region, however many variables and keys use it; `AWSCURRENT` is sent
//! explicitly when no version is named), the selection of one JSON key or RFC 6901 pointer from
//! a `SecretString` (parsed once per secret, scrubbed when dropped), the [`SecretsManager`] port
//! with its SDK adapter [`AwsSecretsManager`], the service's error codes, and the
//! `secretsmanager:GetSecretValue` IAM statement. See README "Reference syntax".

use super::ssm::{account_id, lower_dash};
use super::{Fetched, Lookup, LookupId, Lookups, Outcomes, Resolved, within};
use crate::aws::{Aws, json};
use crate::error::{Class, Reason};
use crate::secret::Secret;
use base64::Engine as _;
use futures_util::future::join_all;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use tokio::time::Instant;
use zeroize::Zeroize;

/// Prefix of a Secrets Manager reference.
pub const PREFIX: &str = "sm:";
/// The stage sent when a reference names no version.
pub const CURRENT: &str = "AWSCURRENT";
/// Longest secret name Secrets Manager accepts.
const MAX_NAME_LEN: usize = 512;
/// Longest version stage.
const MAX_STAGE_LEN: usize = 256;
/// Longest version id.
const MAX_VERSION_ID_LEN: usize = 64;

/// Which version of a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// A staging label such as `AWSCURRENT` or `AWSPREVIOUS`.
    Stage(String),
    /// A version id.
    Id(String),
}

/// As a lookup: one secret version to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretVersion {
    /// The `SecretId` sent: a name or an ARN.
    pub id: String,
    /// Whether `id` is an ARN (cross-account secrets must be named by ARN).
    pub by_arn: bool,
    /// The region to call: the ARN's, otherwise the configured one (`None`).
    pub region: Option<String>,
    /// The version asked for.
    pub version: Version,
}

/// What to take from the secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A top-level key of a JSON object.
    Field(String),
    /// An RFC 6901 JSON pointer (starts with `/`).
    Pointer(String),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Field(k) | Key::Pointer(k) => f.write_str(k),
        }
    }
}

/// A Secrets Manager reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The secret version to fetch.
    pub secret: SecretVersion,
    /// Whether the reference named the version (otherwise `AWSCURRENT`).
    pub pinned: bool,
    /// The key to pick, if any.
    pub key: Option<Key>,
}

impl SecretRef {
    /// Short description for messages, e.g. `sm prod/db:AWSPREVIOUS#password`. Never a secret.
    pub fn kind(&self) -> String {
        let mut out = format!("sm {}", self.secret.id);
        if self.pinned {
            out.push(':');
            match &self.secret.version {
                Version::Stage(s) | Version::Id(s) => out.push_str(s),
            }
        }
        if let Some(key) = &self.key {
            out.push('#');
            out.push_str(&key.to_string());
        }
        out
    }
}

fn malformed(detail: &str) -> Reason {
    Reason::new(Class::Malformed, detail)
}

/// Parses what follows `sm:`.
pub fn parse(body: &[u8]) -> Result<SecretRef, Reason> {
    let body =
        std::str::from_utf8(body).map_err(|_| malformed("an sm: reference must be valid UTF-8"))?;
    if body.starts_with("//") {
        return Err(malformed(
            "sm:// is not a form of sm:; write sm:prod/db (a name) or sm:arn:aws:secretsmanager:… (an ARN)",
        ));
    }
    let (locator, key) = match body.split_once('#') {
        Some((locator, key)) => (locator, Some(parse_key(key)?)),
        None => (body, None),
    };
    if locator.is_empty() {
        return Err(malformed("the sm: reference names no secret"));
    }
    if locator.starts_with("arn:") {
        return parse_arn(locator, key);
    }
    let (name, selector) = match locator.split_once(':') {
        Some((name, selector)) => (name, Some(selector)),
        None => (locator, None),
    };
    check_name(name)?;
    let version = selector.map(parse_selector).transpose()?;
    Ok(SecretRef {
        pinned: version.is_some(),
        secret: SecretVersion {
            id: name.to_owned(),
            by_arn: false,
            region: None,
            version: version.unwrap_or_else(|| Version::Stage(CURRENT.to_owned())),
        },
        key,
    })
}

/// `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`, then nothing, one
/// selector, or the ECS tail `:<json-key>:<version-stage>:<version-id>`.
fn parse_arn(locator: &str, key: Option<Key>) -> Result<SecretRef, Reason> {
    const SHAPE: &str =
        "an sm: ARN must look like arn:aws:secretsmanager:<region>:<account>:secret:<name>";
    let parts: Vec<&str> = locator.split(':').collect();
    let [
        _,
        partition,
        service,
        region,
        account,
        resource,
        name,
        tail @ ..,
    ] = &parts[..]
    else {
        return Err(malformed(SHAPE));
    };
    if *service != "secretsmanager"
        || *resource != "secret"
        || !lower_dash(partition)
        || !lower_dash(region)
        || !account_id(account)
    {
        return Err(malformed(SHAPE));
    }
    check_name(name)?;
    let (version, key) = match tail {
        [] => (None, key),
        [selector] => (Some(parse_selector(selector)?), key),
        [json_key, stage, id] => {
            if !json_key.is_empty() && key.is_some() {
                return Err(malformed(
                    "the ECS tail's json-key and '#' cannot both pick a key; use one of them",
                ));
            }
            let version = match (*stage, *id) {
                ("", "") => None,
                (stage, "") => Some(Version::Stage(check_stage(stage)?)),
                ("", id) => Some(Version::Id(check_version_id(id)?)),
                _ => {
                    return Err(malformed(
                        "the ECS tail names both a version stage and a version id; give one",
                    ));
                }
            };
            let key = if json_key.is_empty() {
                key
            } else {
                Some(Key::Field((*json_key).to_owned()))
            };
            (version, key)
        }
        _ => {
            return Err(malformed(
                "after a secret ARN, give one selector (:AWSPREVIOUS or :<version id>) or the \
                 ECS tail :<json-key>:<version-stage>:<version-id>",
            ));
        }
    };
    Ok(SecretRef {
        pinned: version.is_some(),
        secret: SecretVersion {
            id: format!("arn:{partition}:secretsmanager:{region}:{account}:secret:{name}"),
            by_arn: true,
            region: Some((*region).to_owned()),
            version: version.unwrap_or_else(|| Version::Stage(CURRENT.to_owned())),
        },
        key,
    })
}

fn check_name(name: &str) -> Result<(), Reason> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(malformed(
            "the secret name must be 1 to 512 characters long",
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-!".contains(&b))
    {
        return Err(malformed(
            "the secret name may hold only letters, digits and '/', '_', '+', '=', '.', '@', '-', '!'",
        ));
    }
    Ok(())
}

/// A selector shaped like a UUID is a version id, anything else a stage.
fn parse_selector(selector: &str) -> Result<Version, Reason> {
    if is_uuid(selector) {
        return Ok(Version::Id(selector.to_owned()));
    }
    check_stage(selector).map(Version::Stage)
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn check_stage(stage: &str) -> Result<String, Reason> {
    if stage.is_empty()
        || stage.len() > MAX_STAGE_LEN
        || !stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+=@-".contains(&b))
    {
        return Err(malformed(
            "the sm: selector after ':' must be a version stage (letters, digits, '_', '.', '+', '=', '@', '-') or a version id",
        ));
    }
    Ok(stage.to_owned())
}

fn check_version_id(id: &str) -> Result<String, Reason> {
    if id.len() < 32
        || id.len() > MAX_VERSION_ID_LEN
        || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(malformed(
            "the version id must be 32 to 64 letters, digits and '-'",
        ));
    }
    Ok(id.to_owned())
}

/// `password` or an RFC 6901 pointer `/auth/token` (`~0` is `~`, `~1` is `/`).
fn parse_key(key: &str) -> Result<Key, Reason> {
    if key.is_empty() {
        return Err(malformed("the JSON key after '#' is empty"));
    }
    if !key.starts_with('/') {
        return Ok(Key::Field(key.to_owned()));
    }
    let mut chars = key.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(malformed(
                "the JSON pointer after '#' has a '~' that is not ~0 or ~1",
            ));
        }
    }
    Ok(Key::Pointer(key.to_owned()))
}

/// Selects the secret lookups.
pub fn pick(lookup: &Lookup) -> Option<&SecretVersion> {
    match lookup {
        Lookup::Sm(s) => Some(s),
        _ => None,
    }
}

/// How a variable gets its plaintext from Secrets Manager: the secret's value, or one key of it.
#[derive(Debug, Clone)]
pub struct Use {
    id: LookupId,
    key: Option<Key>,
    by_arn: bool,
    stage: Option<String>,
}

/// Plans a reference.
pub fn plan(reference: SecretRef, lookups: &mut Lookups) -> Use {
    let stage = match &reference.secret.version {
        Version::Stage(s) => Some(s.clone()),
        Version::Id(_) => None,
    };
    Use {
        by_arn: reference.secret.by_arn,
        id: lookups.intern(Lookup::Sm(reference.secret)),
        key: reference.key,
        stage,
    }
}

/// A secret's `SecretString` parsed as a JSON object; its strings are scrubbed when dropped and
/// `Debug` never shows it.
#[derive(Clone)]
pub struct Json(Value);

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Json([redacted])")
    }
}

impl Drop for Json {
    fn drop(&mut self) {
        fn scrub(v: &mut Value) {
            match v {
                Value::String(s) => s.zeroize(),
                Value::Array(items) => items.iter_mut().for_each(scrub),
                Value::Object(map) => map.values_mut().for_each(scrub),
                _ => {}
            }
        }
        scrub(&mut self.0);
    }
}

/// The secret's value as a JSON object, for `#`.
fn parse_json(fetched: &Fetched) -> Result<Json, Reason> {
    if fetched.binary {
        return Err(malformed(
            "the secret holds SecretBinary; '#' picks a key from a SecretString holding a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(fetched.secret.expose()).map_err(|_| {
        malformed("the secret's value is not JSON, so '#' cannot pick a key from it")
    })?;
    let json = Json(value);
    if !json.0.is_object() {
        return Err(malformed(
            "the secret's value is JSON but not an object, so '#' cannot pick a key from it",
        ));
    }
    Ok(json)
}

/// One key of a JSON object: a string as is, a number or boolean as its JSON text, an object or
/// array as compact JSON. A missing key or `null` is not found.
fn select(json: &Json, key: &Key) -> Result<Secret, Reason> {
    let found = match key {
        Key::Field(k) => json.0.get(k),
        Key::Pointer(p) => json.0.pointer(p),
    };
    match found {
        None | Some(Value::Null) => Err(Reason::new(
            Class::NotFound,
            format!("the secret has no key {key} (or it is null)"),
        )),
        Some(Value::String(s)) => Ok(Secret::new(s.as_bytes().to_vec())),
        Some(other) => Ok(Secret::from(other.to_string())),
    }
}

/// Every top-level key of the secret's JSON object with its value (as [`select`] gives it), in
/// key order; `null` values are left out. For `sm:…#*` loads.
pub fn entries(fetched: &Fetched) -> Result<Vec<(String, Secret)>, Reason> {
    let json = fetched.json.get_or_init(|| parse_json(fetched));
    let json = json.as_ref().map_err(Clone::clone)?;
    let Value::Object(map) = &json.0 else {
        return Err(malformed("the secret's value is not a JSON object"));
    };
    let mut out = Vec::new();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        out.push((key.clone(), select(json, &Key::Field(key.clone()))?));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Parses what follows `sm:` in a load spec: `<name or ARN>[:selector]#*`.
pub fn parse_load(body: &str) -> Result<SecretVersion, Reason> {
    let Some(locator) = body.strip_suffix("#*") else {
        return Err(malformed(
            "an sm: load is sm:<name or ARN>[:stage or version id]#* (every key of a JSON secret)",
        ));
    };
    let reference = parse(locator.as_bytes())?;
    if reference.key.is_some() {
        return Err(malformed(
            "an sm: load picks every key with #*, no other key",
        ));
    }
    Ok(reference.secret)
}

/// Plans the fetch of a `#*` load: the same lookup as `sm:` references to the secret.
pub fn plan_load(secret: SecretVersion, lookups: &mut Lookups) -> LookupId {
    lookups.intern(Lookup::Sm(secret))
}

/// The grant a `#*` load of `secret` needs, from what answered.
pub fn load_grant(secret: &SecretVersion, fetched: &Fetched) -> Option<Grant> {
    let arn = fetched.source.as_deref()?;
    Some(Grant {
        resource: if secret.by_arn {
            arn.to_owned()
        } else {
            any_suffix(arn)
        },
        stage: match &secret.version {
            Version::Stage(s) => Some(s.clone()),
            Version::Id(_) => None,
        },
    })
}

impl Use {
    /// The plaintext, from the answers.
    pub fn finish(&self, outcomes: &Outcomes) -> Result<Resolved, Reason> {
        let f = outcomes.get(self.id)?;
        let secret = match &self.key {
            None => f.secret.clone(),
            Some(key) => {
                let json = f.json.get_or_init(|| parse_json(f));
                select(json.as_ref().map_err(Clone::clone)?, key)?
            }
        };
        let resource = f.source.as_deref().map(|arn| {
            if self.by_arn {
                arn.to_owned()
            } else {
                any_suffix(arn)
            }
        });
        Ok(Resolved {
            secret,
            source: f.source.clone(),
            version: f.version.clone(),
            grants: resource
                .map(|resource| {
                    super::Grant::Sm(Grant {
                        resource,
                        stage: self.stage.clone(),
                    })
                })
                .into_iter()
                .collect(),
        })
    }

    /// The secret asked for.
    pub fn requested(&self, lookups: &Lookups) -> Option<String> {
        lookups.get(self.id).and_then(pick).map(|s| s.id.clone())
    }
}

/// A secret's ARN with its random six-character suffix as the `-??????` wildcard: a policy for a
/// secret given by name keeps working when the secret is deleted and made again.
fn any_suffix(arn: &str) -> String {
    let base = match arn.len().checked_sub(7) {
        Some(cut) if arn.as_bytes()[cut] == b'-' && arn.is_char_boundary(cut) => &arn[..cut],
        _ => arn,
    };
    format!("{base}-??????")
}

/// One secret version as `GetSecretValue` returned it.
#[derive(Debug)]
pub struct SecretValue {
    /// The secret's ARN.
    pub arn: Option<String>,
    /// The version id.
    pub version_id: Option<String>,
    /// The version's stages.
    pub stages: Vec<String>,
    /// `SecretString` as bytes, or `SecretBinary`.
    pub value: Secret,
    /// Whether it was `SecretBinary`.
    pub binary: bool,
}

/// Reads Secrets Manager.
pub trait SecretsManager {
    /// `GetSecretValue` of `id` at `version` in `region` (`None` = configured).
    fn get_secret_value(
        &self,
        region: Option<&str>,
        id: &str,
        version: &Version,
        deadline: Instant,
    ) -> impl Future<Output = Result<SecretValue, Reason>>;
}

/// Fetches every distinct secret version, all at once.
pub async fn resolve(
    secrets: Vec<(LookupId, &SecretVersion)>,
    sm: &impl SecretsManager,
    deadline: Instant,
) -> Vec<(LookupId, Result<Fetched, Reason>)> {
    join_all(secrets.into_iter().map(|(id, s)| async move {
        let call = || sm.get_secret_value(s.region.as_deref(), &s.id, &s.version, deadline);
        let answer = within(deadline, call).await.map(|v| Fetched {
            source: v.arn,
            version: v.version_id.map(|id| match v.stages.is_empty() {
                true => id,
                false => format!("{id} ({})", v.stages.join(", ")),
            }),
            binary: v.binary,
            ..Fetched::plain(v.value)
        });
        (id, answer)
    }))
    .await
}

/// Secrets Manager's own error codes.
fn codes(code: &str, message: &str) -> Option<Class> {
    match code {
        "ResourceNotFoundException" => Some(Class::NotFound),
        // The role may not use the KMS key that encrypts the secret.
        "DecryptionFailure" => Some(Class::AccessDenied),
        "InvalidRequestException"
            if message.contains("deleted") || message.contains("deletion") =>
        {
            Some(Class::NotFound)
        }
        "InvalidRequestException" | "InvalidParameterException" => Some(Class::Malformed),
        _ => None,
    }
}

/// Secrets Manager without the SDK's orchestrator ([`json`]): its calls are on the start's
/// critical path. ARN references go to the ARN's region.
pub struct AwsSecretsManager {
    clients: json::Clients,
}

/// Secrets Manager as [`json`] calls it.
static SECRETS_MANAGER: json::Service = json::Service {
    id: "Secrets Manager",
    signing_name: "secretsmanager",
    target: "secretsmanager",
    resolve: json::resolver!(aws_sdk_secretsmanager),
};

impl AwsSecretsManager {
    /// A client for `aws`'s region, and the means to make one for other regions.
    pub fn new(aws: &Aws) -> Self {
        AwsSecretsManager {
            clients: json::Clients::new(&aws.json, &SECRETS_MANAGER),
        }
    }
}

/// `GetSecretValue`'s request.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetSecretValue<'a> {
    secret_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_stage: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<&'a str>,
}

/// What kms-env reads of `GetSecretValue`'s answer.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretAnswer {
    #[serde(rename = "ARN")]
    arn: Option<String>,
    version_id: Option<String>,
    #[serde(default)]
    version_stages: Vec<String>,
    secret_string: Option<String>,
    /// Base64.
    secret_binary: Option<String>,
}

impl SecretsManager for AwsSecretsManager {
    async fn get_secret_value(
        &self,
        region: Option<&str>,
        id: &str,
        version: &Version,
        deadline: Instant,
    ) -> Result<SecretValue, Reason> {
        let client = self.clients.client(region)?;
        let request = GetSecretValue {
            secret_id: id,
            version_stage: match version {
                Version::Stage(s) => Some(s),
                Version::Id(_) => None,
            },
            version_id: match version {
                Version::Id(v) => Some(v),
                Version::Stage(_) => None,
            },
        };
        let out: SecretAnswer = client
            .read("GetSecretValue", &request, codes, deadline)
            .await?;
        let (value, binary) = match (out.secret_string, out.secret_binary) {
            (Some(s), _) => (Secret::from(s), false),
            (None, Some(b)) => {
                let b = Secret::from(b);
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(b.expose())
                    .map_err(|_| {
                        Reason::new(
                            Class::ServiceError,
                            "Secrets Manager answered GetSecretValue with a SecretBinary that \
                             is not base64",
                        )
                    })?;
                (Secret::new(decoded), true)
            }
            (None, None) => {
                return Err(Reason::new(
                    Class::NotFound,
                    "the secret version holds no value",
                ));
            }
        };
        Ok(SecretValue {
            arn: out.arn,
            version_id: out.version_id,
            stages: out.version_stages,
            value,
            binary,
        })
    }
}

/// `secretsmanager:GetSecretValue` on a secret, at a stage when one was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The secret's ARN, or for a secret given by name its ARN with the `-??????` wildcard.
    pub resource: String,
    /// The stage sent (`None` for a version id).
    pub stage: Option<String>,
}

/// The `secretsmanager:GetSecretValue` statements: secrets read only at stages get a
/// `secretsmanager:VersionStage` condition (grouped by their stages); secrets also read by
/// version id get none.
pub fn statements(grants: &[&Grant]) -> Vec<Value> {
    // Resource → its stages, `None` once any read of it names a version id.
    let mut stages: BTreeMap<&str, Option<BTreeSet<&str>>> = BTreeMap::new();
    for grant in grants {
        let entry = stages
            .entry(grant.resource.as_str())
            .or_insert_with(|| Some(BTreeSet::new()));
        match (entry.as_mut(), grant.stage.as_deref()) {
            (Some(set), Some(stage)) => {
                set.insert(stage);
            }
            _ => *entry = None,
        }
    }
    let mut groups: BTreeMap<Option<BTreeSet<&str>>, Vec<&str>> = BTreeMap::new();
    for (resource, set) in stages {
        groups.entry(set).or_default().push(resource);
    }
    groups
        .into_iter()
        .enumerate()
        .map(|(i, (set, resources))| {
            let mut statement = json!({
                "Sid": format!("ReadSecrets{}", i + 1),
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": resources,
            });
            if let Some(set) = set {
                let set: Vec<&str> = set.into_iter().collect();
                let value = match set[..] {
                    [one] => json!(one),
                    _ => json!(set),
                };
                statement["Condition"] =
                    json!({ "StringEquals": { "secretsmanager:VersionStage": value } });
            }
            statement
        })
        .collect()
}

#[cfg(test)]
pub mod fake {
    //! A Secrets Manager that knows a fixed set of `(id, version)` values and records every call.

    use super::*;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// The fake.
    #[derive(Default)]
    pub struct FakeSm {
        /// `(id, version)` → (value, binary).
        pub values: HashMap<(String, Version), (Vec<u8>, bool)>,
        /// Every call: region, id and version.
        pub calls: RefCell<Vec<(Option<String>, String, Version)>>,
    }

    impl FakeSm {
        /// Adds the `AWSCURRENT` string value of `id`.
        pub fn with(mut self, id: &str, value: &str) -> Self {
            self.values.insert(
                (id.into(), Version::Stage(CURRENT.into())),
                (value.as_bytes().to_vec(), false),
            );
            self
        }
    }

    impl SecretsManager for FakeSm {
        async fn get_secret_value(
            &self,
            region: Option<&str>,
            id: &str,
            version: &Version,
            _: Instant,
        ) -> Result<SecretValue, Reason> {
            self.calls
                .borrow_mut()
                .push((region.map(Into::into), id.into(), version.clone()));
            let (value, binary) = self
                .values
                .get(&(id.to_owned(), version.clone()))
                .cloned()
                .ok_or_else(|| Reason::new(Class::NotFound, "ResourceNotFoundException"))?;
            Ok(SecretValue {
                arn: Some(format!(
                    "arn:aws:secretsmanager:us-east-1:111122223333:secret:{id}-AbCdEf"
                )),
                version_id: Some("v1".into()),
                stages: vec![CURRENT.into()],
                value: Secret::new(value),
                binary,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(v: &str) -> Result<SecretRef, Reason> {
        parse(v.as_bytes())
    }

    fn stage(s: &str) -> Version {
        Version::Stage(s.into())
    }

    const UUID: &str = "3f2b1c4e-9a8d-4e7f-b6a5-0c1d2e3f4a5b";
    const ARN: &str = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/db-AbCdEf";

    #[test]
    fn names_selectors_and_keys() {
        let r = p("prod/db").unwrap();
        assert_eq!(r.secret.id, "prod/db");
        assert_eq!(r.secret.version, stage(CURRENT));
        assert!(!r.pinned && !r.secret.by_arn && r.key.is_none());
        assert_eq!(r.kind(), "sm prod/db");

        let r = p("prod/db:AWSPREVIOUS#password").unwrap();
        assert_eq!(r.secret.version, stage("AWSPREVIOUS"));
        assert_eq!(r.key, Some(Key::Field("password".into())));
        assert_eq!(r.kind(), "sm prod/db:AWSPREVIOUS#password");

        let r = p(&format!("prod/db:{UUID}")).unwrap();
        assert_eq!(r.secret.version, Version::Id(UUID.into()));

        let r = p("rds!db-1234#/auth/to~1ken").unwrap();
        assert_eq!(r.secret.id, "rds!db-1234");
        assert_eq!(r.key, Some(Key::Pointer("/auth/to~1ken".into())));
        // A key may hold ':' and '#'.
        assert_eq!(p("a#b:c#d").unwrap().key, Some(Key::Field("b:c#d".into())));
        // sm:x and sm:x:AWSCURRENT are one lookup.
        assert_eq!(p("x").unwrap().secret, p("x:AWSCURRENT").unwrap().secret);
    }

    #[test]
    fn arns_and_the_ecs_tail() {
        let r = p(ARN).unwrap();
        assert_eq!(r.secret.id, ARN);
        assert!(r.secret.by_arn);
        assert_eq!(r.secret.region.as_deref(), Some("eu-west-1"));
        assert_eq!(r.secret.version, stage(CURRENT));

        let r = p(&format!("{ARN}:AWSPREVIOUS#k")).unwrap();
        assert_eq!(r.secret.version, stage("AWSPREVIOUS"));
        assert_eq!(r.key, Some(Key::Field("k".into())));

        let r = p(&format!("{ARN}:password:AWSPREVIOUS:")).unwrap();
        assert_eq!(r.secret.id, ARN);
        assert_eq!(r.secret.version, stage("AWSPREVIOUS"));
        assert_eq!(r.key, Some(Key::Field("password".into())));

        let r = p(&format!("{ARN}:password::")).unwrap();
        assert_eq!(r.secret.version, stage(CURRENT));
        assert!(!r.pinned);

        let r = p(&format!("{ARN}:::{UUID}")).unwrap();
        assert_eq!(r.secret.version, Version::Id(UUID.into()));
        assert_eq!(r.key, None);
    }

    #[test]
    fn malformed_references() {
        for v in [
            "",
            "//prod/db",
            "prod/db:",
            "prod/db:a:b",
            "prod db",
            "prod/db#",
            "prod/db#/a~2b",
            "prod/db#/a~",
            "#key",
            "prod/db:st age",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret",
            "arn:aws:secretsmanager:eu-west-1:111122223333:secret:",
            "arn:aws:ssm:eu-west-1:111122223333:secret:x",
            "arn:aws:secretsmanager:eu-west-1:1111:secret:x",
            "arn:aws:secretsmanager::111122223333:secret:x",
            "arn:aws:secretsmanager:eu-west-1:111122223333:parameter:x",
        ] {
            assert_eq!(p(v).unwrap_err().class, Class::Malformed, "{v}");
        }
        // Two fields or more than three after an ARN.
        for tail in [
            ":a:b",
            ":a:b:c:d",
            ":k:AWSCURRENT:EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE",
        ] {
            assert_eq!(
                p(&format!("{ARN}{tail}")).unwrap_err().class,
                Class::Malformed,
                "{tail}"
            );
        }
        // The ECS json-key and '#' together.
        assert_eq!(
            p(&format!("{ARN}:password::#other")).unwrap_err().class,
            Class::Malformed
        );
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert_eq!(p(&long).unwrap_err().class, Class::Malformed);
        assert_eq!(parse(b"a\xff").unwrap_err().class, Class::Malformed);
    }

    fn fetched(value: &[u8], binary: bool) -> Fetched {
        Fetched {
            binary,
            ..Fetched::plain(Secret::new(value.to_vec()))
        }
    }

    fn pick_key(value: &str, key: &str) -> Result<Vec<u8>, Reason> {
        let json = parse_json(&fetched(value.as_bytes(), false))?;
        select(&json, &parse_key(key)?).map(|s| s.expose().to_vec())
    }

    #[test]
    fn selection() {
        let doc = r#"{"s":"p@ss: \"w\"","n":5432,"b":true,"o":{"a":[1,"x"]},"z":null,"a/b":"slash","m~n":"tilde"}"#;
        assert_eq!(pick_key(doc, "s").unwrap(), br#"p@ss: "w""#);
        assert_eq!(pick_key(doc, "n").unwrap(), b"5432");
        assert_eq!(pick_key(doc, "b").unwrap(), b"true");
        assert_eq!(pick_key(doc, "o").unwrap(), br#"{"a":[1,"x"]}"#);
        assert_eq!(pick_key(doc, "/o/a/1").unwrap(), b"x");
        assert_eq!(pick_key(doc, "/a~1b").unwrap(), b"slash");
        assert_eq!(pick_key(doc, "/m~0n").unwrap(), b"tilde");
        for missing in ["z", "nope", "/o/a/7", "/s/x"] {
            let r = pick_key(doc, missing).unwrap_err();
            assert_eq!(r.class, Class::NotFound, "{missing}");
            assert!(r.detail.contains(missing), "{}", r.detail);
            assert!(!r.detail.contains("p@ss"));
        }
        for not_object in ["[1,2]", "\"text\"", "not json {"] {
            assert_eq!(
                pick_key(not_object, "k").unwrap_err().class,
                Class::Malformed
            );
        }
        let binary = parse_json(&fetched(br#"{"k":"v"}"#, true)).unwrap_err();
        assert_eq!(binary.class, Class::Malformed);
        // Debug never shows the document.
        let json = parse_json(&fetched(br#"{"k":"hunter2"}"#, false)).unwrap();
        assert!(!format!("{json:?}").contains("hunter2"));
    }

    #[test]
    fn error_codes_map_to_classes() {
        assert_eq!(
            codes("ResourceNotFoundException", ""),
            Some(Class::NotFound)
        );
        assert_eq!(
            codes("DecryptionFailure", "cannot use the key"),
            Some(Class::AccessDenied)
        );
        assert_eq!(
            codes(
                "InvalidRequestException",
                "You can't perform this operation on the secret because it was marked for deletion."
            ),
            Some(Class::NotFound)
        );
        assert_eq!(
            codes("InvalidRequestException", "bad"),
            Some(Class::Malformed)
        );
        assert_eq!(codes("InternalServiceError", ""), None);
    }

    #[test]
    fn suffix_wildcard() {
        assert_eq!(
            any_suffix("arn:aws:secretsmanager:r:1:secret:prod/db-AbCdEf"),
            "arn:aws:secretsmanager:r:1:secret:prod/db-??????"
        );
    }

    #[test]
    fn statements_condition_on_stages_unless_a_version_id_is_read() {
        let g = |r: &str, s: Option<&str>| Grant {
            resource: r.into(),
            stage: s.map(Into::into),
        };
        let grants = [
            g("arn:a-??????", Some(CURRENT)),
            g("arn:b-??????", Some(CURRENT)),
            g("arn:b-??????", Some("AWSPREVIOUS")),
            g("arn:c", Some(CURRENT)),
            g("arn:c", None),
        ];
        let st = statements(&grants.iter().collect::<Vec<_>>());
        assert_eq!(st.len(), 3, "{st:?}");
        let by_resources = |r: Value| st.iter().find(|s| s["Resource"] == r).unwrap().clone();
        let a = by_resources(json!(["arn:a-??????"]));
        assert_eq!(
            a["Condition"]["StringEquals"]["secretsmanager:VersionStage"],
            json!(CURRENT)
        );
        let b = by_resources(json!(["arn:b-??????"]));
        assert_eq!(
            b["Condition"]["StringEquals"]["secretsmanager:VersionStage"],
            json!([CURRENT, "AWSPREVIOUS"])
        );
        let c = by_resources(json!(["arn:c"]));
        assert!(c.get("Condition").is_none());
        assert!(
            st.iter()
                .all(|s| s["Action"] == "secretsmanager:GetSecretValue")
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn never_panics_and_never_echoes_the_value(body in ".{0,200}") {
                let value = format!("{body}Zq9SECRETv4L");
                if let Err(reason) = parse(value.as_bytes()) {
                    prop_assert!(!reason.detail.contains("Zq9SECRETv4L"));
                }
            }

            #[test]
            fn names_stages_and_keys_parse_back(
                name in "[A-Za-z0-9/_+=.@!-]{1,40}",
                stage in proptest::option::of("[A-Z][A-Za-z0-9_]{0,20}"),
                key in proptest::option::of("[^/#~][^~]{0,20}"),
            ) {
                prop_assume!(!name.starts_with("arn:") && !name.starts_with("//"));
                let reference = format!(
                    "{name}{}{}",
                    stage.as_ref().map(|s| format!(":{s}")).unwrap_or_default(),
                    key.as_ref().map(|k| format!("#{k}")).unwrap_or_default(),
                );
                let r = parse(reference.as_bytes()).unwrap();
                prop_assert_eq!(r.secret.id, name);
                prop_assert_eq!(r.secret.version, Version::Stage(stage.clone().unwrap_or_else(|| CURRENT.into())));
                prop_assert_eq!(r.pinned, stage.is_some());
                prop_assert_eq!(r.key, key.map(Key::Field));
            }
        }
    }
}
