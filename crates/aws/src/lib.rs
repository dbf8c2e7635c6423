//! AWS calls made by steps and gates: each service's wire protocol over one shared HTTP
//! client ([`wire`]), signed with SigV4 (`aws-sigv4`).
//!
//! Credentials and the region come from the standard chain (`aws-config`: environment,
//! profiles, SSO, web identity, container and instance roles), loaded once per process;
//! credentials are kept until shortly before they expire. A step may name its
//! own region and a role to assume; an assumed role's credentials are cached per role,
//! region and session (an execution), so its steps assume the role once. Endpoints follow
//! the SDKs' convention (`AWS_ENDPOINT_URL_LAMBDA`, …, `AWS_ENDPOINT_URL`, a profile's
//! `endpoint_url`), which is how the tests reach local doubles.
#![forbid(unsafe_code)]

mod chain_http;
pub mod lambda;
pub mod secrets;
pub mod sns;
pub mod ssm;
pub mod wire;

use std::collections::HashMap;
use std::sync::Mutex;

use std::sync::Arc;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;

pub use wire::{Credential, Failure, Policy, Service};

// Public async functions return `Boxed` futures, so the signing and HTTP client code they
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
    /// Whether trying again later can help (throttling after the call's own retries, a
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

/// The standard chain's configuration and its credentials, loaded once per process.
struct Base {
    config: SdkConfig,
    credential: Option<Arc<Credential>>,
}

static BASE: tokio::sync::OnceCell<Base> = tokio::sync::OnceCell::const_new();
/// Connections by target, so assumed-role credentials are reused until they expire.
static TARGETS: Mutex<Option<HashMap<Target, Arc<Resolved>>>> = Mutex::new(None);
/// Bound on the cache above (one entry per role, region and session).
const MAX_TARGETS: usize = 256;

async fn base() -> &'static Base {
    BASE.get_or_init(|| async {
        let config = aws_config::defaults(BehaviorVersion::latest()).http_client(chain_http::client()).load().await;
        let credential = config.credentials_provider().map(Credential::new);
        Base { config, credential }
    })
    .await
}

/// The standard chain's credentials (environment, profiles, web identity, container and
/// instance roles), shared by every caller in the process.
pub fn chain_credential<'a>() -> crate::Boxed<'a, Result<Arc<Credential>, Error>> {
    crate::boxed(async move { base().await.credential.clone().ok_or_else(no_credentials) })
}

fn no_credentials() -> Error {
    Error::fatal(format!("{NO_CREDENTIALS}: none is configured"))
}

const NO_CREDENTIALS: &str = "no AWS credentials (environment, profile, SSO, web identity, container or instance role)";

/// Where a target's calls go: its region, the credentials they are signed with, and
/// the endpoint settings of the chain (a profile's `endpoint_url`, FIPS, dual-stack).
pub struct Resolved {
    pub region: String,
    credential: Arc<Credential>,
    endpoint_url: Option<String>,
    fips: bool,
    dual_stack: bool,
    /// Attempts per call: the chain's `AWS_MAX_ATTEMPTS` (or a profile's `max_attempts`), else 3.
    attempts: u32,
}

impl Resolved {
    /// A client of `service` for this target, retrying as the chain says.
    pub fn client(&self, service: &'static Service) -> wire::Client {
        self.client_with(service, Policy { attempts: self.attempts, timeout: None })
    }

    /// A client of `service` for this target with its own retries and time bound.
    pub fn client_with(&self, service: &'static Service, policy: Policy) -> wire::Client {
        let endpoint = wire::endpoint(service, &self.region, self.endpoint_url.as_deref(), self.fips, self.dual_stack);
        wire::Client::new(service, &self.region, endpoint, self.credential.clone(), policy)
    }
}

/// The connection for calls to `target`: its region (or the chain's), and the assumed
/// role's credentials when it names one.
pub fn config<'a>(target: &'a Target) -> crate::Boxed<'a, Result<Arc<Resolved>, Error>> {
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
        let region = match (&target.region, base.config.region()) {
            (Some(r), _) => r.clone(),
            (None, Some(r)) => r.to_string(),
            (None, None) => {
                return Err(Error::fatal(
                "no AWS region: set `region:` on the step, or AWS_REGION (or a profile's region) where opsbook runs"
                    .into(),
            ));
            }
        };
        let credential = match &target.role_arn {
            Some(role) => {
                let provider = aws_config::sts::AssumeRoleProvider::builder(role.clone())
                    .session_name(Target::session_name(&target.session))
                    .region(Region::new(region.clone()))
                    .configure(&base.config)
                    .build()
                    .await;
                Credential::new(SharedCredentialsProvider::new(provider))
            }
            None => base.credential.clone().ok_or_else(no_credentials)?,
        };
        let conf = Arc::new(Resolved {
            region,
            credential,
            endpoint_url: base.config.endpoint_url().map(str::to_string),
            fips: base.config.use_fips().unwrap_or(false),
            dual_stack: base.config.use_dual_stack().unwrap_or(false),
            attempts: base.config.retry_config().map_or(3, |r| r.max_attempts()),
        });
        let mut cache = TARGETS.lock().unwrap_or_else(|e| e.into_inner());
        let map = cache.get_or_insert_with(HashMap::new);
        if map.len() >= MAX_TARGETS {
            map.clear();
        }
        map.insert(key, conf.clone());
        Ok(conf)
    })
}

/// The chain's endpoint settings for a client the caller places itself (the health gate
/// picks its region per route).
pub fn chain_endpoint<'a>(service: &'static Service, region: &'a str) -> crate::Boxed<'a, String> {
    crate::boxed(async move {
        let c = &base().await.config;
        wire::endpoint(
            service,
            region,
            c.endpoint_url(),
            c.use_fips().unwrap_or(false),
            c.use_dual_stack().unwrap_or(false),
        )
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
/// Error codes of throttling (retried with backoff before giving up).
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
pub fn describe(call: &Call<'_>, failure: &Failure) -> Error {
    let Call { service, action, resource, target } = call;
    match failure {
        Failure::Service { code, message, .. } => {
            let msg = message.trim();
            let detail = if msg.is_empty() { code.to_string() } else { format!("{code}: {msg}") };
            let who = target
                .role_arn
                .as_deref()
                .map_or_else(|| "the credentials opsbook runs with".to_string(), |r| format!("role {r}"));
            let code = code.as_str();
            if DENIED.contains(&code) {
                Error::fatal(format!("access denied: allow `{action}` on {resource} for {who} ({detail})"))
            } else if BAD_CREDENTIALS.contains(&code) {
                Error::fatal(format!("{service} refused the credentials of {who} ({detail})"))
            } else if THROTTLED.contains(&code) {
                Error {
                    message: format!("{service} throttled `{action}` and the retries ran out ({detail})"),
                    retryable: true,
                }
            } else {
                Error { message: format!("{service} `{action}` failed ({detail})"), retryable: true }
            }
        }
        Failure::Timeout => Error { message: format!("{service} did not answer in time"), retryable: true },
        Failure::Credentials(cause) => match &target.role_arn {
            Some(role) => Error::fatal(format!(
                "cannot assume role {role}: {cause} (the caller needs `sts:AssumeRole` on it, and the role's trust policy must allow the caller)"
            )),
            // The SSO portal refused the cached sign-in (expired, or signed out).
            None if cause.starts_with("UnauthorizedException") => {
                Error::fatal(format!("{NO_CREDENTIALS}: {cause} (sign in again: `aws sso login`)"))
            }
            None => Error::fatal(format!("{NO_CREDENTIALS}: {cause}")),
        },
        Failure::Unreachable(cause) => Error { message: format!("cannot reach {service}: {cause}"), retryable: true },
    }
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
