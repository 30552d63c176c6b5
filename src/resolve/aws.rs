//! AWS SDK adapters for the [`Kms`] and [`Ssm`] ports, and the mapping of SDK errors to a
//! [`Reason`].
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

use super::{Kms, Parameter, Ssm};
use crate::error::{Class, Reason};
use crate::plan::Resolved;
use crate::sealed::Context;
use crate::secret::Secret;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_kms::config::http::HttpResponse;
use aws_sdk_kms::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_kms::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_smithy_types::retry::RetryConfig;
use aws_smithy_types::timeout::TimeoutConfig;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
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
}

/// Shared with the interceptor of one call.
#[derive(Debug, Clone, Default)]
struct Attempts(Arc<Mutex<AttemptLog>>);

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
        if let Ok(mut log) = self.0.lock() {
            log.count += 1;
            if seen.is_some() {
                log.last_error = seen;
            }
        }
        Ok(())
    }
}

/// The AWS error code of a response: the `x-amzn-ErrorType` header or the JSON `__type`.
fn error_code(r: &HttpResponse) -> Option<String> {
    let raw = r
        .headers()
        .get("x-amzn-ErrorType")
        .map(str::to_owned)
        .or_else(|| {
            let body: serde_json::Value = serde_json::from_slice(r.body().bytes()?).ok()?;
            body.get("__type")?.as_str().map(str::to_owned)
        })?;
    // `com.amazonaws.kms#ThrottlingException` or `ThrottlingException:http://…`
    let raw = raw.split(':').next().unwrap_or(&raw);
    Some(raw.rsplit('#').next().unwrap_or(raw).to_owned())
}

/// A random fraction in `[0, 1)` for jitter.
pub fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// Runs one SDK call under `deadline`, explaining a timeout with what the attempts saw. A call
/// that ends throttled, or with its attempts timing out (a slow, overloaded service), is made
/// again after a jittered pause (growing up to twice [`MAX_BACKOFF`]) for as long as the deadline
/// allows. Other failures (refused connections, 5xx after retries, denials) end it at once.
async fn bounded<T, F: Future<Output = Result<T, Reason>>>(
    deadline: Instant,
    attempts: &Attempts,
    mut call: impl FnMut() -> F,
) -> Result<T, Reason> {
    let mut round: u32 = 0;
    loop {
        let result = tokio::time::timeout_at(deadline, call())
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

/// Loads the shared AWS configuration: `region` overrides the chain's region, `fallback` (an
/// env file's `AWS_REGION`) is used when the chain finds none; tuned for a start-up that must
/// finish within `deadline_len`.
pub async fn load_config(
    region: Option<String>,
    fallback: Option<String>,
    deadline_len: Duration,
) -> Result<SdkConfig, Reason> {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(super::tls::http_client()?)
        .region(super::region::chain(region, fallback));
    Ok(tune_for_startup(loader.load().await, deadline_len))
}

/// What `GenerateDataKey` returns.
pub struct DataKeyResponse {
    /// The encrypted data key.
    pub blob: Vec<u8>,
    /// The plaintext data key.
    pub plaintext: Secret,
    /// The ARN of the KMS key that encrypted it.
    pub key_arn: String,
}

fn no_region() -> Reason {
    Reason::new(Class::Config, super::region::tried())
}

/// KMS through the AWS SDK, in the configured region.
pub struct AwsKms {
    client: Option<aws_sdk_kms::Client>,
}

impl AwsKms {
    /// A KMS client for `config`'s region (calls fail with a configuration error without one).
    pub fn new(config: &SdkConfig) -> Self {
        AwsKms {
            client: config.region().map(|_| aws_sdk_kms::Client::new(config)),
        }
    }

    fn client(&self) -> Result<&aws_sdk_kms::Client, Reason> {
        self.client.as_ref().ok_or_else(no_region)
    }

    /// KMS `Encrypt` of `plaintext` under `key_id` with `context`; returns the ciphertext blob.
    pub async fn encrypt(
        &self,
        key_id: &str,
        plaintext: &Secret,
        context: &Context,
    ) -> Result<Vec<u8>, Reason> {
        let out = self
            .client()?
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext.expose()))
            .set_encryption_context(aws_context(context))
            .send()
            .await
            .map_err(classify)?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| Reason::new(Class::ServiceError, "KMS returned no ciphertext"))
    }
}

impl AwsKms {
    /// KMS `GenerateDataKey` with `AES_256` under `key_id` with `context`.
    pub async fn generate_data_key(
        &self,
        key_id: &str,
        context: &Context,
    ) -> Result<DataKeyResponse, Reason> {
        let out = self
            .client()?
            .generate_data_key()
            .key_id(key_id)
            .set_encryption_context(aws_context(context))
            .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
            .send()
            .await
            .map_err(classify)?;
        let missing = || Reason::new(Class::ServiceError, "KMS returned an incomplete data key");
        Ok(DataKeyResponse {
            blob: out.ciphertext_blob.ok_or_else(missing)?.into_inner(),
            plaintext: Secret::new(out.plaintext.ok_or_else(missing)?.into_inner()),
            key_arn: out.key_id.ok_or_else(missing)?,
        })
    }
}

impl Kms for AwsKms {
    async fn decrypt(
        &self,
        blob: &[u8],
        context: &Context,
        deadline: Instant,
    ) -> Result<Resolved, Reason> {
        let attempts = Attempts::default();
        let client = self.client()?;
        let out = bounded(deadline, &attempts, || {
            let call = client
                .decrypt()
                .ciphertext_blob(Blob::new(blob))
                .set_encryption_context(aws_context(context))
                .customize()
                .interceptor(attempts.clone())
                .send();
            async { call.await.map_err(classify) }
        })
        .await?;
        let secret = out
            .plaintext
            .map(|p| Secret::new(p.into_inner()))
            .ok_or_else(|| Reason::new(Class::ServiceError, "KMS returned no plaintext"))?;
        Ok(Resolved {
            secret,
            source: out.key_id,
            version: None,
        })
    }
}

/// The SDK's form of an encryption context; `None` when empty.
fn aws_context(context: &Context) -> Option<HashMap<String, String>> {
    (!context.is_empty()).then(|| context.clone().into_iter().collect())
}

/// Parameter Store through the AWS SDK; ARN references go to the ARN's region.
pub struct AwsSsm {
    config: SdkConfig,
    default: Option<aws_sdk_ssm::Client>,
}

impl AwsSsm {
    /// An SSM client for `config`'s region, and the means to make one for other regions.
    pub fn new(config: &SdkConfig) -> Self {
        AwsSsm {
            config: config.clone(),
            default: config.region().map(|_| aws_sdk_ssm::Client::new(config)),
        }
    }

    fn client(&self, region: Option<&str>) -> Result<aws_sdk_ssm::Client, Reason> {
        match region {
            None => self.default.clone().ok_or_else(no_region),
            Some(r) if self.config.region().is_some_and(|c| c.as_ref() == r) => {
                self.default.clone().ok_or_else(no_region)
            }
            Some(r) => Ok(aws_sdk_ssm::Client::from_conf(
                aws_sdk_ssm::config::Builder::from(&self.config)
                    .region(Region::new(r.to_owned()))
                    .build(),
            )),
        }
    }
}

impl Ssm for AwsSsm {
    async fn get_parameters(
        &self,
        region: Option<&str>,
        names: &[String],
        deadline: Instant,
    ) -> Result<Vec<Parameter>, Reason> {
        let attempts = Attempts::default();
        let client = self.client(region)?;
        let out = bounded(deadline, &attempts, || {
            let call = client
                .get_parameters()
                .set_names(Some(names.to_vec()))
                .with_decryption(true)
                .customize()
                .interceptor(attempts.clone())
                .send();
            async { call.await.map_err(classify) }
        })
        .await?;
        Ok(out
            .parameters
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| {
                Some(Parameter {
                    name: p.name?,
                    arn: p.arn,
                    version: Some(p.version),
                    value: Secret::from(p.value?),
                })
            })
            .collect())
    }
}

/// Maps any SDK error to a reason class with a detail that names the AWS error code.
pub fn classify<E>(err: SdkError<E, HttpResponse>) -> Reason
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    if let Some(cred) = find_source::<CredentialsError>(&err) {
        return credentials_reason(cred);
    }
    match &err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("unknown");
            let message = ctx.err().message().unwrap_or_default();
            let status = ctx.raw().status().as_u16();
            let detail = if message.is_empty() {
                format!("{code} (HTTP {status})")
            } else {
                format!("{code}: {message}")
            };
            Reason::new(class_of_code(code, status), detail)
        }
        SdkError::TimeoutError(_) => Reason::new(Class::TimedOut, "the SDK's timeout passed"),
        SdkError::DispatchFailure(d) => {
            let detail = if d.is_timeout() {
                "connecting timed out".to_owned()
            } else {
                format!("cannot reach the endpoint: {}", DisplayErrorContext(&err))
            };
            Reason::new(Class::Unreachable, detail)
        }
        SdkError::ResponseError(_) => Reason::new(
            Class::Unreachable,
            format!("unusable response: {}", DisplayErrorContext(&err)),
        ),
        _ => Reason::new(Class::Config, DisplayErrorContext(&err).to_string()),
    }
}

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
        "InvalidCiphertextException"
        | "IncorrectKeyException"
        | "InvalidKeyUsageException"
        | "DisabledException"
        | "KMSInvalidStateException"
        | "InvalidKeyId"
        | "InvalidGrantTokenException" => Class::BadCiphertext,
        "NotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound" => Class::NotFound,
        "ValidationException" if status < 500 => Class::Malformed,
        _ => Class::ServiceError,
    }
}

fn credentials_reason(err: &CredentialsError) -> Reason {
    let class = match err {
        CredentialsError::InvalidConfiguration(_) => Class::Config,
        _ => Class::NoCredentials,
    };
    Reason::new(class, DisplayErrorContext(err).to_string())
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
    fn error_codes_map_to_classes() {
        assert_eq!(class_of_code("ThrottlingException", 400), Class::Throttled);
        assert_eq!(
            class_of_code("AccessDeniedException", 400),
            Class::AccessDenied
        );
        assert_eq!(
            class_of_code("InvalidCiphertextException", 400),
            Class::BadCiphertext
        );
        assert_eq!(class_of_code("NotFoundException", 400), Class::NotFound);
        assert_eq!(class_of_code("ParameterNotFound", 400), Class::NotFound);
        assert_eq!(
            class_of_code("InternalServerError", 500),
            Class::ServiceError
        );
        assert_eq!(
            class_of_code("KMSInternalException", 500),
            Class::ServiceError
        );
    }
}
