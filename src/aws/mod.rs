//! What every AWS source shares: loading the SDK configuration ([`Aws`]), SDK clients per
//! region, the start-up retry rules around one call ([`rounds`]; [`call`] for the SDK's calls,
//! [`json`] for the reads of a start, which are made without the SDK's orchestrator), and the
//! mapping of errors to a [`Reason`] ([`classify`]). The service calls themselves live in their
//! source modules (`crate::source::kms`, `ssm`, `sm`); see ARCHITECTURE.md.
//!
//! Configuration comes from `aws-config`'s default chain (environment, profile, web identity,
//! ECS container credentials, IMDS), so `AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL[_KMS|_SSM]`,
//! `AWS_MAX_ATTEMPTS` and `AWS_RETRY_MODE` work as everywhere else. It is loaded only when a
//! reference needs it.
//!
//! Start-up defaults differ from the SDK's where a container fleet needs it (see
//! [`tune_for_startup`]): five attempts per call with a short first backoff and full jitter, and
//! one attempt may not take more than a third of the deadline, so a connection that hangs is
//! retried. A call that is still throttled after its attempts starts over after a jittered
//! pause, until the overall deadline: a fleet that starts at once spreads itself out instead of
//! failing, while an unreachable endpoint still fails within seconds. Every call records what
//! its attempts saw, so a deadline that passes while AWS is throttling is reported as such.

pub mod dns;
pub mod exchange;
pub mod https;
pub mod json;
pub mod keyshare;
pub mod multiplex;
pub mod plain;
pub mod region;
pub mod resume;
pub mod roots;
pub mod tcp;
pub mod tls;

use crate::error::{Class, REGION_HINT, Reason};
use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::meta::credentials::CredentialsProviderChain;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials as _, SharedCredentialsProvider};
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::http::SharedHttpClient;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use futures_util::FutureExt as _;
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Attempts per call when neither `AWS_MAX_ATTEMPTS` nor the profile chose.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// First backoff (full jitter, doubling up to [`MAX_BACKOFF`]).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest single backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Adjusts the SDK configuration for a start-up under `deadline_len`: more attempts (unless
/// configured), a short first backoff, and an attempt timeout of a third of the deadline
/// (between 1 and 10 seconds).
pub fn tune_for_startup(config: SdkConfig, deadline_len: Duration) -> SdkConfig {
    let mut retry = config
        .retry_config()
        .cloned()
        .unwrap_or_else(RetryConfig::standard);
    let attempts_configured = std::env::var_os("AWS_MAX_ATTEMPTS").is_some()
        || retry.max_attempts() != RetryConfig::standard().max_attempts();
    if !attempts_configured {
        retry = retry.with_max_attempts(DEFAULT_MAX_ATTEMPTS);
    }
    retry = retry
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF);
    let attempt = (deadline_len / 3).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let configured = config.timeout_config().cloned();
    let mut timeouts = configured
        .as_ref()
        .map_or_else(TimeoutConfig::builder, TimeoutConfig::to_builder);
    if configured
        .as_ref()
        .and_then(TimeoutConfig::operation_attempt_timeout)
        .is_none()
    {
        timeouts = timeouts.operation_attempt_timeout(attempt);
    }
    config
        .into_builder()
        .retry_config(retry)
        .timeout_config(timeouts.build())
        .build()
}

/// What the attempts of one call saw.
#[derive(Debug, Clone, Default)]
struct AttemptLog {
    count: u32,
    last_error: Option<(Class, String)>,
    /// `host:port` of the last attempt's request, for messages.
    endpoint: Option<String>,
}

/// What the attempts of one call saw, shared with the interceptor that [`call`] hands to the
/// request (`.customize().interceptor(attempts)`).
#[derive(Debug, Clone, Default)]
pub struct Attempts(Arc<Mutex<AttemptLog>>);

impl Attempts {
    /// The reason to give when the deadline passes.
    fn deadline_reason(&self) -> Reason {
        let log = self.0.lock().map(|g| g.clone()).unwrap_or_default();
        match (log.count, log.last_error) {
            (0, _) | (_, None) => Reason::new(Class::TimedOut, "no answer before the deadline"),
            (n, Some((Class::Throttled, last))) => Reason::new(
                Class::Throttled,
                format!(
                    "still throttled when the deadline passed, after {n} attempts; the last: {last}"
                ),
            ),
            (n, Some((_, last))) => Reason::new(
                Class::TimedOut,
                format!("no answer before the deadline after {n} attempts; the last: {last}"),
            ),
        }
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "kms-env-attempts"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let seen = match context.response() {
            Some(r) if r.status().is_success() => None,
            Some(r) => {
                let status = r.status().as_u16();
                let code = error_code(r);
                let class = class_of_code(code.as_deref().unwrap_or(""), status);
                let class = if status == 429 {
                    Class::Throttled
                } else {
                    class
                };
                Some((
                    class,
                    format!("{} (HTTP {status})", code.as_deref().unwrap_or("error")),
                ))
            }
            None => Some((
                Class::Unreachable,
                "no response (connection failed or timed out)".to_owned(),
            )),
        };
        self.record(seen);
        Ok(())
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.set_endpoint(authority(context.request().uri()));
        Ok(())
    }
}

impl Attempts {
    /// Records an attempt and what it saw (`None`: an answer).
    fn record(&self, seen: Option<(Class, String)>) {
        if let Ok(mut log) = self.0.lock() {
            log.count += 1;
            if seen.is_some() {
                log.last_error = seen;
            }
        }
    }

    /// Records where the attempts go (`host:port`).
    fn set_endpoint(&self, endpoint: Option<String>) {
        if let (Some(endpoint), Ok(mut log)) = (endpoint, self.0.lock()) {
            log.endpoint = Some(endpoint);
        }
    }

    /// `host:port` of the last attempt, when one was made.
    fn endpoint(&self) -> Option<String> {
        self.0.lock().ok().and_then(|log| log.endpoint.clone())
    }
}

/// `host:port` of a URL (the port the scheme implies when none is written).
fn authority(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?']).next()?;
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
        && !host.ends_with(']')
    {
        return Some(host.to_owned());
    }
    let port = if scheme == "http" { 80 } else { 443 };
    Some(format!("{host}:{port}"))
}

/// The AWS error code of a response: the `x-amzn-ErrorType` header or the JSON `__type`.
fn error_code(r: &HttpResponse) -> Option<String> {
    let header = r.headers().get("x-amzn-ErrorType");
    error_of(header, r.body().bytes().unwrap_or_default()).0
}

/// The AWS error code and message of an error answer (AWS JSON): the `x-amzn-ErrorType` header
/// or the body's `__type` (`com.amazonaws.kms#NotFoundException`, `…:http://…`), and the body's
/// `message` (or `Message`; empty when there is none).
fn error_of(header: Option<&str>, body: &[u8]) -> (Option<String>, String) {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(k))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let code = header
        .map(str::to_owned)
        .or_else(|| field("__type"))
        .map(|raw| {
            let raw = raw.split(':').next().unwrap_or(&raw);
            raw.rsplit('#').next().unwrap_or(raw).to_owned()
        });
    let message = field("message")
        .or_else(|| field("Message"))
        .unwrap_or_default();
    (code.filter(|c| !c.is_empty()), message)
}

/// A random fraction in `[0, 1)` for jitter.
pub fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Runs one SDK call under `deadline` with [`rounds`]; `send` builds and sends the request with
/// the given interceptor attached; `codes` is the service's own error codes (see [`classify`]).
pub async fn call<T, E, F>(
    deadline: Instant,
    codes: Codes,
    mut send: impl FnMut(Attempts) -> F,
) -> Result<T, Reason>
where
    F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    rounds(deadline, |attempts| {
        let sent = send(attempts.clone());
        async move {
            sent.await
                .map_err(|e| classify_at(e, codes, attempts.endpoint().as_deref()))
        }
    })
    .await
}

/// Runs one call (its attempts: `send`, given the log they record into) under `deadline`,
/// explaining a timeout with what the attempts saw. A call that ends throttled, or with its
/// attempts timing out (a slow, overloaded service), is made again after a jittered pause
/// (growing up to twice [`MAX_BACKOFF`]) for as long as the deadline allows. Other failures
/// (refused connections, 5xx after retries, denials) end it at once.
pub async fn rounds<T, F>(
    deadline: Instant,
    mut send: impl FnMut(Attempts) -> F,
) -> Result<T, Reason>
where
    F: Future<Output = Result<T, Reason>>,
{
    let attempts = Attempts::default();
    let mut round: u32 = 0;
    loop {
        let result = crate::deadline::before(deadline, send(attempts.clone()))
            .await
            .unwrap_or_else(|_| Err(attempts.deadline_reason()));
        match result {
            Err(reason) if matches!(reason.class, Class::Throttled | Class::TimedOut) => {
                let cap = (MAX_BACKOFF * 2).min(INITIAL_BACKOFF * 2u32.saturating_pow(round + 3));
                let pause = cap.mul_f64(jitter());
                if Instant::now() + pause >= deadline {
                    return Err(attempts.deadline_reason());
                }
                tokio::time::sleep(pause).await;
                round += 1;
            }
            other => return other,
        }
    }
}

/// The AWS configuration of one resolution and what the calls made without the SDK share with
/// it (the HTTP client among them).
#[derive(Debug, Clone)]
pub struct Aws {
    /// The SDK configuration.
    pub config: SdkConfig,
    /// The part [`json`]'s clients share.
    pub json: Arc<json::Shared>,
}

/// Loads the shared AWS configuration: `region` overrides the chain's region, `fallback` (an
/// env file's `AWS_REGION`) is used when the chain finds none; tuned for a start-up that must
/// finish within `deadline_len`.
pub async fn load_config(
    region: Option<String>,
    fallback: Option<String>,
    deadline_len: Duration,
) -> Result<Aws, Reason> {
    let transport = tls::transport()?;
    let http = transport.sdk();
    let loaded = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http.clone())
        .region(region::chain(region, fallback, http.clone()))
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .no_credentials()
        .load()
        .await;
    let credentials = credentials(&loaded, http);
    let config = loaded
        .into_builder()
        .credentials_provider(credentials)
        .build();
    let config = tune_for_startup(config, deadline_len);
    let json = json::Shared::new(&config, &transport);
    Ok(Aws { config, json })
}

/// The credentials: `aws-config`'s default chain, made of its own providers in its order
/// (the environment, the profile, web identity, the ECS or EKS container endpoint, EC2
/// instance metadata; README "AWS configuration"), with two links left out where they could
/// never answer, because making them is not free:
///
/// - when the environment's keys load, the chain stops at them, so the environment's provider
///   is the whole chain;
/// - without `AWS_WEB_IDENTITY_TOKEN_FILE` the web identity link only says "not loaded", and it
///   makes an STS client when built, whose partition table costs as much as a service client
///   (about 0.5 M instructions, 15 % of a task-role start; BENCHMARKS.md). Web identity set up in
///   a profile is the profile link's, which stays.
fn credentials(config: &SdkConfig, http: SharedHttpClient) -> SharedCredentialsProvider {
    let environment = EnvironmentVariableCredentialsProvider::new();
    if environment
        .provide_credentials()
        .now_or_never()
        .is_some_and(|loaded| loaded.is_ok())
    {
        return SharedCredentialsProvider::new(environment);
    }
    // What the loader gives its own chain (`aws_config::ConfigLoader::load`); the links below
    // are `DefaultCredentialsChain`'s (aws-config 1.13), in its order: re-check on upgrades.
    let mut conf = ProviderConfig::default()
        .with_http_client(http)
        .with_region(config.region().cloned())
        .with_use_fips(config.use_fips())
        .with_use_dual_stack(config.use_dual_stack())
        .with_behavior_version(config.behavior_version());
    if let Some(retry) = config.retry_config() {
        conf = conf.with_retry_config(retry.clone());
    }
    if let Some(timeouts) = config.timeout_config() {
        conf = conf.with_timeout_config(timeouts.clone());
    }
    let mut chain = CredentialsProviderChain::first_try("Environment", environment).or_else(
        "Profile",
        ProfileFileCredentialsProvider::builder()
            .configure(&conf)
            .build(),
    );
    if std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        chain = chain.or_else(
            "WebIdentityToken",
            WebIdentityTokenCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        );
    }
    let chain = chain
        .or_else(
            "EcsContainer",
            EcsCredentialsProvider::builder().configure(&conf).build(),
        )
        .or_else(
            "Ec2InstanceMetadata",
            MadeWhenAsked::new(move || ImdsCredentialsProvider::builder().configure(&conf).build()),
        );
    SharedCredentialsProvider::new(chain)
}

/// A link of the credentials chain made when the chain first asks it: making the instance
/// metadata link (its IMDS client) was 80 K instructions, 6.5 % of a start on a task role over
/// plain HTTP, whose link answers before it (`callgrind`; BENCHMARKS.md, ninth session).
struct MadeWhenAsked<P, F> {
    make: F,
    made: OnceLock<P>,
}

impl<P, F: Fn() -> P> MadeWhenAsked<P, F> {
    fn new(make: F) -> Self {
        Self {
            make,
            made: OnceLock::new(),
        }
    }
}

impl<P: std::fmt::Debug, F> std::fmt::Debug for MadeWhenAsked<P, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MadeWhenAsked")
            .field("made", &self.made.get())
            .finish_non_exhaustive()
    }
}

impl<P, F> aws_credential_types::provider::ProvideCredentials for MadeWhenAsked<P, F>
where
    P: aws_credential_types::provider::ProvideCredentials,
    F: Fn() -> P + Send + Sync,
{
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.made.get_or_init(&self.make).provide_credentials()
    }

    fn fallback_on_interrupt(&self) -> Option<aws_credential_types::Credentials> {
        self.made.get().and_then(P::fallback_on_interrupt)
    }
}

/// The configuration error for a call without a region.
pub fn no_region() -> Reason {
    Reason::new(Class::Config, region::tried()).with_hint(REGION_HINT)
}

/// One service's clients: one for the configured region, made on first use and kept, and one
/// per other region on demand (references by ARN go to the ARN's region).
///
/// Made on first use because making an SDK client is not free: each service's crate compiles
/// its partition table's regular expressions for its first client (about 0.4 M instructions,
/// BENCHMARKS.md), and a start that reads only `kms:` values should not pay for the SSM and
/// Secrets Manager clients.
pub struct Regional<C> {
    config: SdkConfig,
    default: OnceLock<C>,
    make: fn(&SdkConfig) -> C,
}

impl<C: Clone> Regional<C> {
    /// Clients made by `make` (e.g. `aws_sdk_ssm::Client::new`) from `config`, when first asked for.
    pub fn new(config: &SdkConfig, make: fn(&SdkConfig) -> C) -> Self {
        Regional {
            config: config.clone(),
            default: OnceLock::new(),
            make,
        }
    }

    /// The client for `region` (`None` = the configured one; a configuration error without one).
    pub fn client(&self, region: Option<&str>) -> Result<C, Reason> {
        match region {
            Some(r) if self.config.region().is_none_or(|c| c.as_ref() != r) => {
                let config = self
                    .config
                    .to_builder()
                    .region(Region::new(r.to_owned()))
                    .build();
                Ok((self.make)(&config))
            }
            _ if self.config.region().is_none() => Err(no_region()),
            _ => Ok(self
                .default
                .get_or_init(|| (self.make)(&self.config))
                .clone()),
        }
    }
}

/// A service's own error codes: the class for `code` (with its `message`), or `None` to use the
/// codes every AWS service shares.
pub type Codes = fn(code: &str, message: &str) -> Option<Class>;

/// Maps any SDK error to a reason class with a detail that names the AWS error code. `codes`
/// knows the service's own codes; the shared ones (throttling, denials, validation) are here. An
/// HTTP 403 that is not the service's own error (an IAM, proxy or firewall answer in XML or HTML)
/// is access denied, whatever the service.
pub fn classify<E>(err: SdkError<E, HttpResponse>, codes: Codes) -> Reason
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    classify_at(err, codes, None)
}

/// [`classify`], naming `endpoint` (`host:port`) when the connection failed.
pub fn classify_at<E>(
    err: SdkError<E, HttpResponse>,
    codes: Codes,
    endpoint: Option<&str>,
) -> Reason
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(cred) = find_source::<CredentialsError>(&err) {
        return credentials_reason(cred);
    }
    match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let Some(code) = ctx.err().code() else {
                return unrecognised(status);
            };
            let message = ctx.err().message().unwrap_or_default();
            let detail = if message.is_empty() {
                format!("{code} (HTTP {status})")
            } else {
                format!("{code}: {message}")
            };
            let class = codes(code, message).unwrap_or_else(|| class_of_code(code, status));
            Reason::new(class, detail)
        }
        SdkError::TimeoutError(_) => Reason::new(Class::TimedOut, "the SDK's timeout passed"),
        SdkError::DispatchFailure(d) => dispatch_reason(&err, d.is_timeout(), endpoint),
        SdkError::ResponseError(ctx) if ctx.raw().status().as_u16() == 403 => unrecognised(403),
        SdkError::ResponseError(_)
            if chain(&err).any(|e| e.is::<http_body_util::LengthLimitError>()) =>
        {
            too_large(endpoint)
        }
        SdkError::ResponseError(_) => Reason::new(
            Class::Unreachable,
            format!("unusable response: {}", describe(&err)),
        ),
        _ => Reason::new(Class::Config, describe(&err)),
    }
}

/// A request that got no answer (`err`, a timeout if `timed_out`) to `endpoint` (`host:port`),
/// in words: which host, and the cause (no descriptor left, no such host, refused, …).
fn dispatch_reason(
    err: &(dyn std::error::Error + 'static),
    timed_out: bool,
    endpoint: Option<&str>,
) -> Reason {
    let at = endpoint.map(|e| format!(" {e}")).unwrap_or_default();
    let io = find_source::<std::io::Error>(err);
    if io.and_then(std::io::Error::raw_os_error) == Some(nix::libc::EMFILE) {
        return Reason::new(
            Class::Unreachable,
            format!("cannot connect to{at}: the process has no file descriptor left (EMFILE)"),
        )
        .with_hint("raise the open-file limit (ulimit -n; the ECS task's or pod's nofile ulimit)");
    }
    let cause = io.map_or_else(|| describe(err), ToString::to_string);
    // Ours (`tcp.rs`), or hyper's connector's on the way to an `HTTPS_PROXY`.
    let dns = chain(err).any(|e| e.is::<tcp::LookupFailed>() || e.to_string() == "dns error");
    let detail = if timed_out {
        format!("connecting to{at} timed out")
    } else if dns {
        format!("cannot resolve the endpoint's host{at}: {cause}")
    } else {
        format!("cannot connect to{at}: {cause}")
    };
    Reason::new(Class::Unreachable, detail)
}

/// An answer over [`tls::MAX_RESPONSE_BODY`] from `endpoint`.
fn too_large(endpoint: Option<&str>) -> Reason {
    Reason::new(
        Class::Unreachable,
        format!(
            "the answer{} is larger than {} MiB, which no answer to kms-env's calls is \
             (a proxy or an endpoint that is not AWS?)",
            endpoint.map(|e| format!(" from {e}")).unwrap_or_default(),
            tls::MAX_RESPONSE_BODY >> 20
        ),
    )
}

/// An error and its sources, outermost first.
pub(crate) fn chain<'a>(
    err: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(err), |e| e.source())
}

/// An error and its sources in words, `outer: inner: …`, each said once: `Display` only, never
/// `Debug` (no `DispatchFailure(…{ source: … })` in a message).
pub fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in chain(err) {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Advice for a credentials provider that is configured but unusable.
const CREDENTIALS_HINT: &str = "check the credentials settings: AWS_CONTAINER_CREDENTIALS_FULL_URI \
     or _RELATIVE_URI, AWS_CONTAINER_AUTHORIZATION_TOKEN or _TOKEN_FILE (a token file must not end \
     in a newline), AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, and the AWS profile";

/// An error answer without a service error code.
fn unrecognised(status: u16) -> Reason {
    if status == 403 {
        Reason::new(
            Class::AccessDenied,
            "HTTP 403 without a service error code: denied by an IAM, proxy or firewall \
             answer in front of the service",
        )
    } else {
        Reason::new(Class::ServiceError, format!("unknown (HTTP {status})"))
    }
}

/// The classes of the error codes every AWS service shares.
fn class_of_code(code: &str, status: u16) -> Class {
    match code {
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "ThrottledException"
        | "SlowDown" => Class::Throttled,
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException"
        | "InvalidClientTokenId"
        | "MissingAuthenticationToken"
        | "IncompleteSignature"
        | "SignatureDoesNotMatch" => Class::AccessDenied,
        "ValidationException" if status < 500 => Class::Malformed,
        "" if status == 403 => Class::AccessDenied,
        _ => Class::ServiceError,
    }
}

fn credentials_reason(err: &CredentialsError) -> Reason {
    match err {
        CredentialsError::InvalidConfiguration(_) => {
            Reason::new(Class::Config, describe(err)).with_hint(CREDENTIALS_HINT)
        }
        _ => Reason::new(Class::NoCredentials, describe(err)),
    }
}

fn find_source<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_made_when_asked_is_made_once_and_only_when_asked() {
        use aws_credential_types::Credentials;
        use aws_credential_types::provider::ProvideCredentials;
        let made = std::sync::atomic::AtomicUsize::new(0);
        let link = MadeWhenAsked::new(|| {
            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Credentials::for_tests()
        });
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert!(
            link.fallback_on_interrupt().is_none(),
            "not made to answer that"
        );
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 0);
        for _ in 0..2 {
            let got = link.provide_credentials().now_or_never().unwrap().unwrap();
            assert_eq!(
                got.access_key_id(),
                Credentials::for_tests().access_key_id()
            );
        }
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn shared_error_codes_map_to_classes() {
        assert_eq!(class_of_code("ThrottlingException", 400), Class::Throttled);
        assert_eq!(
            class_of_code("AccessDeniedException", 400),
            Class::AccessDenied
        );
        assert_eq!(class_of_code("ValidationException", 400), Class::Malformed);
        assert_eq!(
            class_of_code("InternalServerError", 500),
            Class::ServiceError
        );
        assert_eq!(class_of_code("", 403), Class::AccessDenied);
        assert_eq!(unrecognised(403).class, Class::AccessDenied);
        assert_eq!(unrecognised(502).class, Class::ServiceError);
    }

    #[test]
    fn endpoints_and_error_chains_in_words() {
        assert_eq!(
            authority("http://127.0.0.1:1/").as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(
            authority("https://kms.eu-west-1.amazonaws.com/").as_deref(),
            Some("kms.eu-west-1.amazonaws.com:443")
        );
        assert_eq!(authority("http://[::1]/x").as_deref(), Some("[::1]:80"));
        assert_eq!(
            authority("http://[::1]:8080").as_deref(),
            Some("[::1]:8080")
        );
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let err = Outer(std::io::Error::other("refused"));
        assert_eq!(describe(&err), "dispatch failure: refused");
    }
}
