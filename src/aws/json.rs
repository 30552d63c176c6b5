//! The AWS JSON 1.1 protocol, which KMS, SSM and Secrets Manager speak, for the reads on a
//! start's critical path (KMS `Decrypt`, SSM `GetParameters` and `GetParametersByPath`, Secrets
//! Manager `GetSecretValue`), made without the SDK's orchestrator: one SigV4-signed `POST` per
//! attempt through the same [`Transport`] (connections, TLS, proxies) as the SDK's calls, the
//! same retry rules (attempts with full-jitter backoff, an attempt timeout, the retryable errors
//! of the SDK's standard mode) and the same classification of answers (the parent module's
//! `class_of_code`, the service's own [`Codes`]). What the orchestrator does per call
//! (configuration layers, interceptors, type-erased boxes) was most of a call's user-space CPU;
//! see BENCHMARKS.md. The endpoint comes from the service crate's own resolver and the
//! credentials from the configuration's provider, fetched once per start.
use super::tls::{MAX_RESPONSE_BODY, Post, PostError, Poster, Transport};
use super::{Attempts, Codes, class_of_code, credentials_reason, describe, error_of, find_source};
use crate::error::{Class, Reason};
use aws_config::SdkConfig;
use aws_credential_types::provider::ProvideCredentials as _;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SigningInstructions, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::http::HttpConnectorSettings;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::Document;
use aws_smithy_types::endpoint::Endpoint;
use aws_smithy_types::retry::ErrorKind;
use aws_types::service_config::ServiceConfigKey;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// One service as this module calls it.
#[derive(Debug)]
pub struct Service {
    /// The service id of `AWS_ENDPOINT_URL_<ID>` and of the profile's `services` section.
    pub id: &'static str,
    /// The SigV4 signing name, unless the endpoint names another.
    pub signing_name: &'static str,
    /// The `X-Amz-Target` prefix of its operations.
    pub target: &'static str,
    /// The service crate's endpoint resolver.
    pub resolve: fn(&Target) -> Result<Endpoint, String>,
}

/// A service crate's endpoint resolver (`aws_sdk_kms`, …) as a [`Service::resolve`]: the SDK's
/// own endpoint rules (partitions, FIPS, dual-stack, an endpoint URL).
macro_rules! resolver {
    ($krate:ident) => {{
        fn resolve(
            target: &$crate::aws::json::Target,
        ) -> Result<::aws_smithy_types::endpoint::Endpoint, String> {
            use futures_util::FutureExt as _;
            use $krate::config::endpoint::{DefaultResolver, Params, ResolveEndpoint as _};
            let params = Params::builder()
                .region(target.region.clone())
                .use_fips(target.use_fips)
                .use_dual_stack(target.use_dual_stack)
                .set_endpoint(target.endpoint.clone())
                .build()
                .map_err(|e| e.to_string())?;
            DefaultResolver::new()
                .resolve_endpoint(&params)
                .now_or_never()
                .ok_or("the endpoint resolver did not answer at once")?
                .map_err(|e| $crate::aws::describe(e.as_ref()))
        }
        resolve
    }};
}
pub(crate) use resolver;

/// What a service's endpoint resolver is given.
#[derive(Debug, Clone)]
pub struct Target {
    /// The region of the calls.
    pub region: String,
    /// `AWS_USE_FIPS_ENDPOINT`.
    pub use_fips: bool,
    /// `AWS_USE_DUALSTACK_ENDPOINT`.
    pub use_dual_stack: bool,
    /// `AWS_ENDPOINT_URL_<ID>`, `AWS_ENDPOINT_URL` or the profile's.
    pub endpoint: Option<String>,
}

/// What every client of one start shares: the connector, the credentials (fetched once, by
/// the first call that needs them) and the retry settings of the SDK configuration.
#[derive(Debug)]
pub struct Shared {
    config: SdkConfig,
    transport: Transport,
    poster: Poster,
    /// The credentials as the signer takes them, made once (each attempt made its own: six
    /// allocations a call; BENCHMARKS.md, thirteenth session).
    credentials: tokio::sync::OnceCell<Result<Identity, Reason>>,
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    attempt_timeout: Option<Duration>,
}

impl Shared {
    /// The shared part for `config` (tuned by [`super::tune_for_startup`]) over `transport`.
    pub fn new(config: &SdkConfig, transport: &Transport) -> Arc<Self> {
        let timeouts = config.timeout_config();
        let mut settings = HttpConnectorSettings::builder();
        settings
            .set_connect_timeout(timeouts.and_then(|t| t.connect_timeout()))
            .set_read_timeout(timeouts.and_then(|t| t.read_timeout()));
        let settings = settings.build();
        let retry = config.retry_config();
        Arc::new(Shared {
            config: config.clone(),
            transport: transport.clone(),
            poster: transport.poster(&settings),
            credentials: tokio::sync::OnceCell::new(),
            max_attempts: retry.map_or(super::DEFAULT_MAX_ATTEMPTS, |r| r.max_attempts().max(1)),
            initial_backoff: retry.map_or(super::INITIAL_BACKOFF, |r| r.initial_backoff()),
            max_backoff: retry.map_or(super::MAX_BACKOFF, |r| r.max_backoff()),
            attempt_timeout: timeouts.and_then(|t| t.operation_attempt_timeout()),
        })
    }

    async fn credentials(&self) -> Result<&Identity, Reason> {
        self.credentials
            .get_or_init(|| async {
                let provider: SharedCredentialsProvider =
                    self.config.credentials_provider().ok_or_else(|| {
                        Reason::new(
                            Class::NoCredentials,
                            "no credentials provider is configured",
                        )
                    })?;
                provider
                    .provide_credentials()
                    .await
                    .map(Identity::from)
                    .map_err(|e| credentials_reason(&e))
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The backoff before attempt `attempt + 1`: full jitter under a cap that doubles from
/// `initial` up to `max`.
fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let cap = initial
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(max);
    cap.mul_f64(super::jitter())
}

/// One service's clients: the configured region's, made on first use, and others on demand.
#[derive(Debug)]
pub struct Clients {
    shared: Arc<Shared>,
    service: &'static Service,
    default: OnceLock<Result<Client, Reason>>,
}

impl Clients {
    /// `service`'s clients over `shared`.
    pub fn new(shared: &Arc<Shared>, service: &'static Service) -> Self {
        Clients {
            shared: shared.clone(),
            service,
            default: OnceLock::new(),
        }
    }

    /// The client for `region` (`None` = the configured one; a configuration error without one).
    pub fn client(&self, region: Option<&str>) -> Result<Client, Reason> {
        let configured = self.shared.config.region().map(AsRef::as_ref);
        match region {
            Some(r) if configured != Some(r) => self.make(r),
            _ => match configured {
                None => Err(super::no_region()),
                Some(r) => self.default.get_or_init(|| self.make(r)).clone(),
            },
        }
    }

    fn make(&self, region: &str) -> Result<Client, Reason> {
        let config = &self.shared.config;
        let key = ServiceConfigKey::builder()
            .service_id(self.service.id)
            .env("AWS_ENDPOINT_URL")
            .profile("endpoint_url")
            .build()
            .map_err(|e| Reason::new(Class::Config, e.to_string()))?;
        let target = Target {
            region: region.to_owned(),
            use_fips: config.use_fips().unwrap_or(false),
            use_dual_stack: config.use_dual_stack().unwrap_or(false),
            endpoint: config
                .service_config()
                .and_then(|c| c.load_config(key))
                .or_else(|| config.endpoint_url().map(str::to_owned)),
        };
        let endpoint = match &target.endpoint {
            // What the services' endpoint rules give for an endpoint URL without FIPS or
            // dual-stack (with either, the rules refuse it: asked below). The resolver would
            // first build its partition table (a JSON document and regular expressions per
            // partition), which an endpoint URL never needs.
            Some(url) if !target.use_fips && !target.use_dual_stack => {
                Ok(Endpoint::builder().url(url.clone()).build())
            }
            _ => (self.service.resolve)(&target),
        }
        .map_err(|e| {
            Reason::new(
                Class::Config,
                format!("no {} endpoint for region {region}: {e}", self.service.id),
            )
        })?;
        let (signing_region, signing_name) = signing_of(&endpoint);
        let uri = endpoint.url().parse::<http::Uri>().map_err(|e| {
            Reason::new(
                Class::Config,
                format!("the {} endpoint is not a URL: {e}", self.service.id),
            )
        })?;
        self.shared.transport.prefetch(endpoint.url());
        Ok(Client {
            shared: self.shared.clone(),
            service: self.service,
            authority: super::authority(endpoint.url()),
            url: endpoint.url().to_owned(),
            origin: super::multiplex::origin_of(&uri),
            uri,
            signing_region: signing_region.unwrap_or_else(|| region.to_owned()),
            signing_name: signing_name.unwrap_or_else(|| self.service.signing_name.to_owned()),
        })
    }
}

/// The SigV4 signing region and name an endpoint's `authSchemes` property gives, if any.
fn signing_of(endpoint: &Endpoint) -> (Option<String>, Option<String>) {
    let Some(Document::Array(schemes)) = endpoint.properties().get("authSchemes") else {
        return (None, None);
    };
    let field = |scheme: &Document, key: &str| match scheme {
        Document::Object(map) => match map.get(key) {
            Some(Document::String(s)) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    };
    schemes
        .iter()
        .find(|s| field(s, "name").as_deref() == Some("sigv4"))
        .map_or((None, None), |s| {
            (field(s, "signingRegion"), field(s, "signingName"))
        })
}

/// One service's client in one region.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
    service: &'static Service,
    /// `host:port` of `url`, for messages.
    authority: Option<String>,
    url: String,
    /// `url` parsed, and its origin ([`super::multiplex::origin_of`]): made once.
    uri: http::Uri,
    origin: String,
    signing_region: String,
    signing_name: String,
}

/// How one attempt failed: the reason, whether the SDK's standard mode retries it, and what
/// the attempt log records.
struct Failed {
    reason: Reason,
    retry: bool,
    seen: (Class, String),
}

/// The answer's body; zeroed when dropped (it may hold a plaintext).
pub type Answer = Zeroizing<Vec<u8>>;

/// `answer` read as `T` (borrowing from it where `T` does); an answer that is not the
/// operation's JSON is a service error that names the operation, never the body.
pub fn parse<'a, T: serde::Deserialize<'a>>(
    answer: &'a Answer,
    service: &Service,
    operation: &str,
) -> Result<T, Reason> {
    serde_json::from_slice(answer).map_err(|_| {
        Reason::new(
            Class::ServiceError,
            format!(
                "{} answered {operation} with a body that is not its JSON",
                service.id
            ),
        )
    })
}

/// A request's JSON body.
pub fn body(request: &impl serde::Serialize) -> Result<Vec<u8>, Reason> {
    serde_json::to_vec(request)
        .map_err(|e| Reason::new(Class::Config, format!("cannot make the request: {e}")))
}

impl Client {
    /// Calls `operation` with `request` as its JSON body under `deadline`, in rounds, and reads
    /// the answer as `T` (the answer's body is zeroed once `T` is made).
    pub async fn read<T: serde::de::DeserializeOwned>(
        &self,
        operation: &str,
        request: &impl serde::Serialize,
        codes: Codes,
        deadline: tokio::time::Instant,
    ) -> Result<T, Reason> {
        let answer = self
            .call_in_rounds(operation, &body(request)?, codes, deadline)
            .await?;
        parse(&answer, self.service, operation)
    }

    /// Calls `operation` with the JSON `body` under `deadline`, in rounds ([`super::rounds`]):
    /// the answer's body, or why there is none.
    pub async fn call_in_rounds(
        &self,
        operation: &str,
        body: &[u8],
        codes: Codes,
        deadline: tokio::time::Instant,
    ) -> Result<Answer, Reason> {
        super::rounds(deadline, |attempts| async move {
            self.call(operation, body, codes, &attempts).await
        })
        .await
    }

    /// Calls `operation` with the JSON `body`; the answer's body, or the reason of the last
    /// attempt. `attempts` records what each attempt saw (see [`super::rounds`]).
    pub async fn call(
        &self,
        operation: &str,
        body: &[u8],
        codes: Codes,
        attempts: &Attempts,
    ) -> Result<Answer, Reason> {
        let identity = self.shared.credentials().await?;
        let endpoint = self.authority.as_deref();
        attempts.set_endpoint(self.authority.clone());
        let max = self.shared.max_attempts;
        let mut attempt = 1;
        loop {
            // The attempt's future is made in the expression that awaits it: bound to a name,
            // it would be held twice (see `source::within`).
            let target = format!("{}.{operation}", self.service.target);
            let signed = self.sign(&target, body, identity)?;
            let mut headers = Vec::with_capacity(HEADERS.len() + 5);
            headers.extend_from_slice(&HEADERS);
            headers.push(("x-amz-target", target.as_str()));
            headers.extend(signed.headers());
            let post = Post {
                uri: &self.uri,
                origin: &self.origin,
                headers: &headers,
                body,
            };
            let outcome = in_attempt_time(
                self.shared.attempt_timeout,
                self.attempt(post, codes, endpoint),
            )
            .await;
            attempts.record(outcome.as_ref().err().map(|f| f.seen.clone()));
            tracing::debug!(
                "{} {operation}, attempt {attempt} of {max} to {}: {}",
                self.service.id,
                endpoint.unwrap_or("?"),
                outcome
                    .as_ref()
                    .map_or_else(|f| f.seen.1.as_str(), |_| "answered")
            );
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(failed) if failed.retry && attempt < max => {
                    tokio::time::sleep(backoff(
                        self.shared.initial_backoff,
                        self.shared.max_backoff,
                        attempt,
                    ))
                    .await;
                    attempt += 1;
                }
                Err(failed) => return Err(failed.reason),
            }
        }
    }

    /// The signature of one attempt of a call to `target` with `body`: the header fields it
    /// adds (`x-amz-date`, `authorization`, and `x-amz-security-token` with temporary
    /// credentials). Signed are `host` (as the request's bytes write it: see
    /// [`super::exchange::wire`]), [`HEADERS`] and `x-amz-target`.
    fn sign(
        &self,
        target: &str,
        body: &[u8],
        identity: &Identity,
    ) -> Result<SigningInstructions, Reason> {
        let unsigned = |e: &dyn std::fmt::Display| {
            Reason::new(Class::Config, format!("cannot sign the request: {e}"))
        };
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.signing_region)
            .name(&self.signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| unsigned(&e))?
            .into();
        let headers = [HEADERS[0], ("x-amz-target", target)];
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| unsigned(&e))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| unsigned(&e))?
            .into_parts();
        Ok(instructions)
    }

    /// Sends one attempt and reads its answer.
    async fn attempt(
        &self,
        post: Post<'_>,
        codes: Codes,
        endpoint: Option<&str>,
    ) -> Result<Answer, Failed> {
        // Boxed: the connection's future is large (the TLS handshake's), and inline it made
        // every call's future as large, copied each time it is moved (BENCHMARKS.md,
        // thirteenth session).
        let reply = match Box::pin(self.shared.poster.post(post)).await {
            Ok(reply) => reply,
            Err(PostError::Dispatch(e)) => return Err(dispatch_failure(&e, endpoint)),
            Err(PostError::Body(e)) => return Err(unusable(e.as_ref(), endpoint)),
        };
        if reply.body.len() > MAX_RESPONSE_BODY {
            let reason = super::too_large(endpoint);
            return Err(Failed {
                seen: (reason.class, reason.detail.clone()),
                reason,
                retry: false,
            });
        }
        if (200..300).contains(&reply.status) {
            return Ok(reply.body);
        }
        Err(service_error(
            reply.status,
            reply.error_type.as_deref(),
            &reply.body,
            codes,
        ))
    }
}

/// The header fields of every call but `x-amz-target` (and what signing adds): the JSON 1.1
/// content type, signed, and what kms-env calls itself (CloudTrail shows it), not signed.
const HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/x-amz-json-1.1"),
    ("user-agent", USER_AGENT),
];

/// `attempt` within the attempt timeout `limit`, when one is set (see
/// [`crate::deadline::within_limit`]).
fn in_attempt_time(
    limit: Option<Duration>,
    attempt: impl Future<Output = Result<Answer, Failed>>,
) -> impl Future<Output = Result<Answer, Failed>> {
    crate::deadline::within_limit(limit, attempt, |limit| {
        Err(Failed {
            reason: Reason::new(
                Class::TimedOut,
                format!(
                    "no answer within the attempt timeout ({} ms)",
                    limit.as_millis()
                ),
            ),
            retry: true,
            seen: no_response(),
        })
    })
}

/// What kms-env calls itself in the `User-Agent` header (CloudTrail shows it).
const USER_AGENT: &str = concat!("kms-env/", env!("CARGO_PKG_VERSION"));

fn no_response() -> (Class, String) {
    (
        Class::Unreachable,
        "no response (connection failed or timed out)".to_owned(),
    )
}

/// A request that got no answer: the reason (as [`super::classify_at`] words it for the SDK's
/// calls) and whether it is retried (timeouts and I/O errors are, as in the SDK's standard mode).
fn dispatch_failure(err: &ConnectorError, endpoint: Option<&str>) -> Failed {
    let retry = err.is_timeout()
        || err.is_io()
        || matches!(
            err.as_other(),
            Some(ErrorKind::TransientError | ErrorKind::ThrottlingError | ErrorKind::ServerError)
        );
    Failed {
        reason: super::dispatch_reason(err, err.is_timeout(), endpoint),
        retry,
        seen: no_response(),
    }
}

/// A body that could not be read: too large, or cut off (retried, as the SDK retries it).
fn unusable(
    err: &(dyn std::error::Error + Send + Sync + 'static),
    endpoint: Option<&str>,
) -> Failed {
    let too_large = find_source::<http_body_util::LengthLimitError>(err).is_some();
    let reason = if too_large {
        super::too_large(endpoint)
    } else {
        Reason::new(
            Class::Unreachable,
            format!("unusable response: {}", describe(err)),
        )
    };
    Failed {
        seen: (reason.class, reason.detail.clone()),
        reason,
        retry: !too_large,
    }
}

/// The error codes the SDK's standard mode retries as throttling or transient (besides HTTP
/// 500, 502, 503 and 504).
const RETRIED_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
];

/// An error answer as a failed attempt, classified as [`super::classify_at`] classifies the
/// SDK's service errors.
fn service_error(status: u16, header: Option<&str>, body: &[u8], codes: Codes) -> Failed {
    let (code, message) = error_of(header, body);
    let retry_status = matches!(status, 500 | 502 | 503 | 504);
    let Some(code) = code else {
        let reason = super::unrecognised(status);
        return Failed {
            seen: (reason.class, format!("error (HTTP {status})")),
            retry: retry_status,
            reason,
        };
    };
    let detail = if message.is_empty() {
        format!("{code} (HTTP {status})")
    } else {
        format!("{code}: {message}")
    };
    let class = codes(&code, &message).unwrap_or_else(|| class_of_code(&code, status));
    let class = if status == 429 {
        Class::Throttled
    } else {
        class
    };
    Failed {
        seen: (class, format!("{code} (HTTP {status})")),
        retry: retry_status || status == 429 || RETRIED_CODES.contains(&code.as_str()),
        reason: Reason::new(class, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str, _: &str) -> Option<Class> {
        None
    }

    fn kms(code: &str, _: &str) -> Option<Class> {
        (code == "InvalidCiphertextException").then_some(Class::BadCiphertext)
    }

    #[test]
    fn error_answers_are_classified_and_retried_as_the_sdk_does() {
        let f = service_error(
            400,
            None,
            br#"{"__type":"com.amazonaws.kms#ThrottlingException","message":"Rate exceeded"}"#,
            none,
        );
        assert_eq!(f.reason.class, Class::Throttled);
        assert_eq!(f.reason.detail, "ThrottlingException: Rate exceeded");
        assert_eq!(f.seen.1, "ThrottlingException (HTTP 400)");
        assert!(f.retry);

        let f = service_error(
            400,
            None,
            br#"{"__type":"InvalidCiphertextException"}"#,
            kms,
        );
        assert_eq!(f.reason.class, Class::BadCiphertext);
        assert_eq!(f.reason.detail, "InvalidCiphertextException (HTTP 400)");
        assert!(!f.retry);

        let f = service_error(
            400,
            Some("AccessDeniedException:http://internal.amazon.com/"),
            br#"{"Message":"not allowed"}"#,
            none,
        );
        assert_eq!(f.reason.class, Class::AccessDenied);
        assert_eq!(f.reason.detail, "AccessDeniedException: not allowed");

        let f = service_error(503, None, b"<html>busy</html>", none);
        assert_eq!(f.reason.class, Class::ServiceError);
        assert!(f.retry);
        let f = service_error(403, None, b"<html>denied</html>", none);
        assert_eq!(f.reason.class, Class::AccessDenied);
        assert!(!f.retry);
        let f = service_error(429, None, br#"{"__type":"Whatever"}"#, none);
        assert_eq!(f.reason.class, Class::Throttled);
        assert!(f.retry);
    }

    #[test]
    fn signing_region_and_name_come_from_the_endpoint_when_it_names_them() {
        let plain = Endpoint::builder()
            .url("https://kms.eu-west-1.amazonaws.com")
            .build();
        assert_eq!(signing_of(&plain), (None, None));
        let scheme = Document::Object(
            [
                ("name", "sigv4"),
                ("signingRegion", "us-gov-west-1"),
                ("signingName", "kms"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Document::String(v.to_owned())))
            .collect(),
        );
        let named = Endpoint::builder()
            .url("https://kms.us-gov-west-1.amazonaws.com")
            .property("authSchemes", Document::Array(vec![scheme]))
            .build();
        assert_eq!(
            signing_of(&named),
            (Some("us-gov-west-1".into()), Some("kms".into()))
        );
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_cap() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(250));
        let mut longest = Duration::ZERO;
        for _ in 0..200 {
            assert!(backoff(initial, max, 1) < Duration::from_millis(100));
            assert!(backoff(initial, max, 2) < Duration::from_millis(200));
            let late = backoff(initial, max, 9);
            assert!(late < max);
            longest = longest.max(late);
        }
        assert!(
            longest > Duration::from_millis(200),
            "the cap grows: {longest:?}"
        );
    }
}
