//! AWS calls made by steps, on the official SDK crates.
//!
//! One configuration is loaded per process from the standard chain (environment,
//! profiles, SSO, web identity, container and instance roles) with one HTTP client, so
//! every service client shares its connection pool and TLS stack. A step may name its
//! own region and a role to assume; an assumed role's credentials are cached per role,
//! region and session (an execution), so its steps assume the role once. Endpoints follow the SDK's convention (`AWS_ENDPOINT_URL_LAMBDA`, …,
//! `AWS_ENDPOINT_URL`), which is how the tests reach local doubles.
#![forbid(unsafe_code)]

pub mod lambda;
pub mod secrets;
pub mod sns;
pub mod ssm;

use std::collections::HashMap;
use std::sync::Mutex;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

// Public async functions return `Boxed` futures, so the SDK and HTTP client code they
// await is compiled here only.
pub(crate) use opsbook_core::{Boxed, boxed};

/// Where a call goes: its region and role when not the standard chain's, and the session
/// name an assumed role is used under (it shows in CloudTrail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Target {
    pub region: Option<String>,
    pub role_arn: Option<String>,
    pub session: String,
}

impl Target {
    /// A session name AWS accepts (2-64 of `[\w+=,.@-]`) made from `name`.
    pub fn session_name(name: &str) -> String {
        let mut s: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) { c } else { '-' })
            .take(64)
            .collect();
        while s.len() < 2 {
            s.push('-');
        }
        s
    }
}

/// A failed call, said so that someone knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub message: String,
    /// Whether trying again later can help (throttling after the SDK's own retries, a
    /// service error, a network failure), as opposed to access denied or not found.
    pub retryable: bool,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl Error {
    pub(crate) fn fatal(message: String) -> Error {
        Error { message, retryable: false }
    }
}

static BASE: tokio::sync::OnceCell<SdkConfig> = tokio::sync::OnceCell::const_new();
/// Configurations by target, so assumed-role credentials are reused until they expire.
static TARGETS: Mutex<Option<HashMap<Target, SdkConfig>>> = Mutex::new(None);
/// Bound on the cache above (one entry per role, region and session).
const MAX_TARGETS: usize = 256;

/// The one HTTP client (connection pool, TLS stack) of every AWS call in the process.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    static CLIENT: std::sync::OnceLock<aws_smithy_runtime_api::client::http::SharedHttpClient> =
        std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
            aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::AwsLc)).build_https()
        })
        .clone()
}

/// A configuration loader from the standard chain with the shared HTTP client, for
/// callers that set more (the health gate sets its region and timeouts per route).
pub fn loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(http_client())
}

/// The process's configuration from the standard chain, with the one shared HTTP client.
pub async fn base() -> &'static SdkConfig {
    BASE.get_or_init(|| loader().load()).await
}

/// The configuration for calls to `target`: its region (or the chain's), and the
/// assumed role's credentials when it names one.
pub fn config<'a>(target: &'a Target) -> crate::Boxed<'a, Result<SdkConfig, Error>> {
    crate::boxed(async move {
        // The session matters only to an assumed role.
        let key = Target {
            session: if target.role_arn.is_some() { target.session.clone() } else { String::new() },
            ..target.clone()
        };
        if let Some(conf) = TARGETS.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|m| m.get(&key)) {
            return Ok(conf.clone());
        }
        let base = base().await;
        let region = match (&target.region, base.region()) {
            (Some(r), _) => Region::new(r.clone()),
            (None, Some(r)) => r.clone(),
            (None, None) => {
                return Err(Error::fatal(
                "no AWS region: set `region:` on the step, or AWS_REGION (or a profile's region) where opsbook runs"
                    .into(),
            ));
            }
        };
        let mut conf = base.to_builder().region(region.clone());
        if let Some(role) = &target.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                .session_name(Target::session_name(&target.session))
                .region(region)
                .configure(base)
                .build()
                .await;
            conf = conf.credentials_provider(SharedCredentialsProvider::new(provider));
        }
        let conf = conf.build();
        let mut cache = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
        let map = cache.get_or_insert_with(HashMap::new);
        if map.len() >= MAX_TARGETS {
            map.clear();
        }
        map.insert(key, conf.clone());
        Ok(conf)
    })
}

/// Error codes that mean the caller lacks a permission.
const DENIED: [&str; 5] = [
    "AccessDeniedException",
    "AccessDenied",
    "UnauthorizedOperation",
    "AuthorizationErrorException",
    "AuthorizationError",
];
/// Error codes that mean the caller's credentials are not valid where they were sent.
const BAD_CREDENTIALS: [&str; 6] = [
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "ExpiredToken",
];
/// Error codes of throttling (the SDK retried them with backoff before giving up).
const THROTTLED: [&str; 6] = [
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "TooManyUpdates",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
];

/// What one call was, for messages: the service, the IAM action it needs, and the
/// resource it acted on.
pub struct Call<'a> {
    pub service: &'a str,
    pub action: &'a str,
    pub resource: &'a str,
    pub target: &'a Target,
}

/// Says what went wrong with a call, naming what to fix.
pub fn describe<E>(
    call: &Call<'_>,
    e: &aws_smithy_runtime_api::client::result::SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_smithy_runtime_api::client::result::SdkError;
    let Call { service, action, resource, target } = call;
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            let code = err.code().unwrap_or("an unnamed error");
            let msg = err.message().unwrap_or("").trim();
            let detail = if msg.is_empty() { code.to_string() } else { format!("{code}: {msg}") };
            let who = target
                .role_arn
                .as_deref()
                .map_or_else(|| "the credentials opsbook runs with".to_string(), |r| format!("role {r}"));
            if DENIED.contains(&code) {
                Error::fatal(format!("access denied: allow `{action}` on {resource} for {who} ({detail})"))
            } else if BAD_CREDENTIALS.contains(&code) {
                Error::fatal(format!("{service} refused the credentials of {who} ({detail})"))
            } else if THROTTLED.contains(&code) {
                Error {
                    message: format!("{service} throttled `{action}` and the SDK's retries ran out ({detail})"),
                    retryable: true,
                }
            } else {
                Error { message: format!("{service} `{action}` failed ({detail})"), retryable: true }
            }
        }
        SdkError::TimeoutError(_) => Error { message: format!("{service} did not answer in time"), retryable: true },
        SdkError::DispatchFailure(d) => {
            let cause =
                d.as_connector_error().map(|c| root_cause(c)).unwrap_or_else(|| "the request could not be sent".into());
            let creds = d.as_connector_error().is_some_and(|c| credentials_failed(c));
            match (creds, &target.role_arn) {
                (true, Some(role)) => Error::fatal(format!(
                    "cannot assume role {role}: {cause} (the caller needs `sts:AssumeRole` on it, and the role's trust policy must allow the caller)"
                )),
                (true, None) => Error::fatal(format!(
                    "no AWS credentials (environment, profile, SSO, web identity, container or instance role): {cause}"
                )),
                (false, _) => Error { message: format!("cannot reach {service}: {cause}"), retryable: true },
            }
        }
        other => Error {
            message: format!("{service}: {}", aws_smithy_types::error::display::DisplayErrorContext(other)),
            retryable: true,
        },
    }
}

/// Whether the request never left because credentials could not be had (none found, or
/// the role could not be assumed).
pub fn credentials_failed(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(e) = cur {
        if e.is::<CredentialsError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Why a call failed: a service's refusal in the chain (STS's AccessDenied behind a
/// credentials error) as `Code: message` rather than its debug form, else the innermost cause.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(m) = err.downcast_ref::<aws_smithy_types::error::ErrorMetadata>() {
            return format!("{}: {}", m.code().unwrap_or("error"), m.message().unwrap_or(""));
        }
        cur = err.source();
    }
    opsbook_core::diagnostic::root_cause(e)
}
