//! The services' wire protocols over the one shared HTTP client: requests signed with
//! SigV4 (`aws-sigv4`), sent with the SDKs' standard retries, and their errors read as
//! each protocol writes them.
//!
//! Three protocols cover every call opsbook makes:
//! - **awsJson1_1** (SSM, Secrets Manager, AWS Health, CodePipeline): `POST /` with
//!   `X-Amz-Target: Prefix.Operation` and a JSON body; errors carry `__type`.
//! - **restJson1** (Lambda): the operation in the method and path; errors carry
//!   `X-Amzn-ErrorType`.
//! - **awsQuery** (SNS): a form body with `Action` and `Version`; XML answers.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use serde_json::Value;

/// A service as the wire sees it.
#[derive(Debug)]
pub struct Service {
    /// Its name in messages.
    pub name: &'static str,
    /// The SigV4 signing name, also its endpoint prefix (`ssm.us-east-1.amazonaws.com`).
    pub signing: &'static str,
    /// The endpoint override variable's suffix (`AWS_ENDPOINT_URL_SSM`).
    pub env: &'static str,
    /// awsJson1_1's `X-Amz-Target` prefix.
    pub json_target: &'static str,
}

pub const SSM: Service = Service { name: "SSM", signing: "ssm", env: "SSM", json_target: "AmazonSSM" };
pub const SECRETS_MANAGER: Service = Service {
    name: "Secrets Manager",
    signing: "secretsmanager",
    env: "SECRETS_MANAGER",
    json_target: "secretsmanager",
};
pub const LAMBDA: Service = Service { name: "Lambda", signing: "lambda", env: "LAMBDA", json_target: "" };
pub const SNS: Service = Service { name: "SNS", signing: "sns", env: "SNS", json_target: "" };
pub const HEALTH: Service =
    Service { name: "AWS Health", signing: "health", env: "HEALTH", json_target: "AWSHealth_20160804" };
pub const CODEPIPELINE: Service = Service {
    name: "CodePipeline",
    signing: "codepipeline",
    env: "CODEPIPELINE",
    json_target: "CodePipeline_20150709",
};

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The service answered with an error.
    Service { status: u16, code: String, message: String },
    /// No answer within the call's time.
    Timeout,
    /// The request could not be sent, or its answer not read.
    Unreachable(String),
    /// No credentials to sign with (none found, or a role that could not be assumed).
    Credentials(String),
}

impl Failure {
    /// The service's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Failure::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the SDKs' standard retry mode tries again: throttling, transient errors,
    /// server errors, timeouts and network failures.
    fn retryable(&self) -> bool {
        match self {
            Failure::Service { status, code, .. } => {
                *status >= 500 || super::THROTTLED.contains(&code.as_str()) || TRANSIENT.contains(&code.as_str())
            }
            Failure::Timeout | Failure::Unreachable(_) => true,
            Failure::Credentials(_) => false,
        }
    }
}

/// Error codes the standard retry mode treats as transient.
const TRANSIENT: [&str; 6] = [
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
];

/// Credentials from a provider, kept until five minutes before they expire, so the
/// provider (an instance role, an assumed role) is asked once per lifetime, not per call.
pub struct Credential {
    provider: SharedCredentialsProvider,
    cached: tokio::sync::Mutex<Option<Credentials>>,
}

impl Credential {
    pub fn new(provider: SharedCredentialsProvider) -> Arc<Credential> {
        Arc::new(Credential { provider, cached: tokio::sync::Mutex::new(None) })
    }

    /// Fixed keys (tests, and callers that were handed keys).
    pub fn fixed(access_key: &str, secret_key: &str) -> Arc<Credential> {
        Credential::new(SharedCredentialsProvider::new(Credentials::new(access_key, secret_key, None, None, "fixed")))
    }

    async fn get(&self) -> Result<Credentials, Failure> {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| c.expiry().is_none_or(|t| t > SystemTime::now() + Duration::from_secs(300));
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self.provider.provide_credentials().await.map_err(|e| Failure::Credentials(super::root_cause(&e)))?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

/// How a call is made: retries, and the time it may take in all.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Attempts in all (1: no retry). The SDKs' standard mode makes 3.
    pub attempts: u32,
    /// The whole call's bound, retries included; `None`: no bound beyond the connect timeout.
    pub timeout: Option<Duration>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy { attempts: 3, timeout: None }
    }
}

/// A service in one region, with the credentials to sign for it.
pub struct Client {
    service: &'static Service,
    region: String,
    endpoint: String,
    credential: Arc<Credential>,
    policy: Policy,
}

/// An answer: status, headers and body.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The endpoint of `service` in `region`: `AWS_ENDPOINT_URL_<SERVICE>`, then
/// `AWS_ENDPOINT_URL` or a profile's `endpoint_url` (`configured`), then AWS's own.
pub fn endpoint(service: &Service, region: &str, configured: Option<&str>, fips: bool, dual_stack: bool) -> String {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let ignore = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if !ignore
        && let Some(url) = env(&format!("AWS_ENDPOINT_URL_{}", service.env))
            .or_else(|| configured.map(str::to_string))
            .or_else(|| env("AWS_ENDPOINT_URL"))
    {
        return url.trim_end_matches('/').to_string();
    }
    let prefix = if fips { format!("{}-fips", service.signing) } else { service.signing.to_string() };
    format!("https://{prefix}.{region}.{}", dns_suffix(region, dual_stack))
}

/// The DNS suffix of a region's partition (AWS's partition data), dual-stack or not.
fn dns_suffix(region: &str, dual_stack: bool) -> &'static str {
    const PARTITIONS: [(&str, &str, &str); 6] = [
        ("cn-", "amazonaws.com.cn", "api.amazonwebservices.com.cn"),
        ("us-isob-", "sc2s.sgov.gov", "api.aws.scloud"),
        ("us-isof-", "csp.hci.ic.gov", "api.aws.hci.ic.gov"),
        ("us-iso-", "c2s.ic.gov", "api.aws.ic.gov"),
        ("eu-isoe-", "cloud.adc-e.uk", "api.cloud-aws.adc-e.uk"),
        ("eusc-", "amazonaws.eu", "api.amazonwebservices.eu"),
    ];
    let (plain, dual) = PARTITIONS
        .iter()
        .find(|(prefix, _, _)| region.starts_with(prefix))
        .map_or(("amazonaws.com", "api.aws"), |(_, plain, dual)| (*plain, *dual));
    if dual_stack { dual } else { plain }
}

/// A builder for every HTTP client opsbook makes (AWS calls, gate sources, webhooks,
/// `http` steps, the CLI's API client), naming opsbook and its version as user agent.
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder().user_agent(concat!("opsbook/", env!("CARGO_PKG_VERSION")))
}

/// The one HTTP client of every AWS call in the process.
pub(crate) fn http() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| client_builder().connect_timeout(Duration::from_millis(3100)).build().unwrap_or_default())
}

/// Characters a form value or path label keeps as they are (RFC 3986 unreserved).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Client {
    pub fn new(
        service: &'static Service,
        region: &str,
        endpoint: String,
        credential: Arc<Credential>,
        policy: Policy,
    ) -> Client {
        Client { service, region: region.to_string(), endpoint, credential, policy }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// An awsJson1_1 call: `input` to `operation`, its output document.
    pub async fn json(&self, operation: &str, input: &Value) -> Result<Value, Failure> {
        let target = format!("{}.{operation}", self.service.json_target);
        let headers = [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", target.as_str())];
        let reply = self.send("POST", "/", &headers, input.to_string().into_bytes()).await?;
        json_document(&reply)
    }

    /// A restJson1 call: `path` (with its query, labels encoded) and `body`, the raw reply.
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, Failure> {
        self.send(method, path, headers, body).await
    }

    /// An awsQuery call: `Action`, `Version` and `params`; the XML answer.
    pub async fn query(&self, action: &str, version: &str, params: &[(String, String)]) -> Result<String, Failure> {
        let mut form = format!("Action={}&Version={}", percent_encode(action), percent_encode(version));
        for (k, v) in params {
            form.push_str(&format!("&{}={}", percent_encode(k), percent_encode(v)));
        }
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        let reply = self.send("POST", "/", &headers, form.into_bytes()).await?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    /// Sends with retries within the policy's time; a failure answer is an error. Boxed
    /// here, in a plain function, so the signing and HTTP code is compiled in this crate
    /// once, not again in every crate that awaits `json`, `rest` or `query`.
    fn send<'a>(
        &'a self,
        method: &'a str,
        path: &'a str,
        headers: &'a [(&'a str, &'a str)],
        body: Vec<u8>,
    ) -> crate::Boxed<'a, Result<Reply, Failure>> {
        crate::boxed(self.send_now(method, path, headers, body))
    }

    async fn send_now(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, Failure> {
        let attempts = async {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.once(method, path, headers, &body).await {
                    Err(f) if f.retryable() && attempt < self.policy.attempts.max(1) => {
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    other => return other,
                }
            }
        };
        match self.policy.timeout {
            Some(t) => tokio::time::timeout(t, attempts).await.unwrap_or(Err(Failure::Timeout)),
            None => attempts.await,
        }
    }

    async fn once(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Reply, Failure> {
        use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
        let url = format!("{}{path}", self.endpoint);
        let identity = self.credential.get().await?.into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| Failure::Credentials(e.to_string()))?
            .into();
        let signable = SignableRequest::new(method, &url, headers.iter().copied(), SignableBody::Bytes(body))
            .map_err(|e| Failure::Unreachable(format!("cannot sign a request to {url}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| Failure::Unreachable(format!("cannot sign a request to {url}: {e}")))?
            .into_parts();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let mut req = http().request(method, &url).body(body.to_vec());
        for (k, v) in headers.iter().copied().chain(instructions.headers()) {
            req = req.header(k, v);
        }
        let resp = req.send().await.map_err(|e| unreachable(&e))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| unreachable(&e))?.to_vec();
        let reply = Reply { status, headers, body };
        if (200..300).contains(&status) { Ok(reply) } else { Err(service_error(&reply)) }
    }
}

fn unreachable(e: &reqwest::Error) -> Failure {
    if e.is_timeout() { Failure::Timeout } else { Failure::Unreachable(opsbook_core::diagnostic::root_cause(e)) }
}

/// The standard mode's backoff before retry `attempt` (1-based): a random share of
/// 2^(attempt-1) seconds, at most 20 s.
fn backoff(attempt: u32) -> Duration {
    let mut b = [0u8; 4];
    let jitter =
        if getrandom::fill(&mut b).is_ok() { f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX) } else { 0.5 };
    let cap = 2f64.powi(i32::try_from(attempt.saturating_sub(1)).unwrap_or(5)).min(20.0);
    Duration::from_secs_f64(jitter * cap)
}

/// A JSON answer's document (`{}` when empty).
fn json_document(reply: &Reply) -> Result<Value, Failure> {
    if reply.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_slice(&reply.body).map_err(|e| Failure::Unreachable(format!("the answer is not JSON: {e}")))
}

/// An error answer's code and message, as the protocol wrote them: the
/// `X-Amzn-ErrorType` header or `__type`/`code` (JSON), or `<Code>` (XML).
fn service_error(reply: &Reply) -> Failure {
    let text = String::from_utf8_lossy(&reply.body);
    let doc: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    let field = |keys: &[&str]| keys.iter().find_map(|k| doc.get(*k).and_then(Value::as_str)).map(str::to_string);
    let code = reply
        .header("x-amzn-errortype")
        .map(str::to_string)
        .or_else(|| field(&["__type", "code", "Code"]))
        .or_else(|| xml_element(&text, "Code"))
        .map(|c| clean_code(&c))
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| format!("HTTP {}", reply.status));
    let message = field(&["message", "Message", "errorMessage"]).or_else(|| xml_element(&text, "Message"));
    Failure::Service { status: reply.status, code, message: message.unwrap_or_default() }
}

/// `aws.protocoltests#Code:http://internal...` is `Code`.
fn clean_code(raw: &str) -> String {
    let code = raw.split(':').next().unwrap_or(raw);
    code.rsplit('#').next().unwrap_or(code).trim().to_string()
}

/// The text of the first `<name>` element of an XML document, unescaped.
pub fn xml_element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{name}>"))?;
    Some(xml_unescape(&xml[start..end]))
}

fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let c = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match c {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, header: Option<&str>, body: &str) -> Reply {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(h) = header {
            headers.insert("x-amzn-errortype", h.parse().unwrap());
        }
        Reply { status, headers, body: body.as_bytes().to_vec() }
    }

    #[test]
    fn reads_errors_as_each_protocol_writes_them() {
        let f = service_error(&reply(400, None, r#"{"__type":"com.amazonaws.ssm#InvalidDocument","message":"no"}"#));
        assert_eq!(f, Failure::Service { status: 400, code: "InvalidDocument".into(), message: "no".into() });
        let f = service_error(&reply(
            404,
            Some("ResourceNotFoundException:http://internal.amazon.com/coral/com.amazonaws.lambda/"),
            r#"{"Message":"Function not found"}"#,
        ));
        assert_eq!(
            f,
            Failure::Service {
                status: 404,
                code: "ResourceNotFoundException".into(),
                message: "Function not found".into()
            }
        );
        let xml = "<ErrorResponse><Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic &lt;x&gt; &amp; y</Message></Error></ErrorResponse>";
        assert_eq!(
            service_error(&reply(404, None, xml)),
            Failure::Service { status: 404, code: "NotFound".into(), message: "Topic <x> & y".into() }
        );
        assert_eq!(service_error(&reply(502, None, "<html>")).code(), Some("HTTP 502"));
        assert!(service_error(&reply(503, None, "")).retryable());
        assert!(!service_error(&reply(400, None, r#"{"__type":"AccessDeniedException"}"#)).retryable());
        assert!(service_error(&reply(400, None, r#"{"__type":"ThrottlingException"}"#)).retryable());
    }

    #[test]
    fn endpoints_follow_the_sdk_convention() {
        assert_eq!(endpoint(&SSM, "eu-west-1", None, false, false), "https://ssm.eu-west-1.amazonaws.com");
        assert_eq!(endpoint(&LAMBDA, "cn-north-1", None, false, false), "https://lambda.cn-north-1.amazonaws.com.cn");
        assert_eq!(endpoint(&SSM, "us-east-1", None, true, false), "https://ssm-fips.us-east-1.amazonaws.com");
        assert_eq!(endpoint(&SSM, "us-gov-west-1", None, false, false), "https://ssm.us-gov-west-1.amazonaws.com");
        assert_eq!(endpoint(&SSM, "us-isob-east-1", None, false, false), "https://ssm.us-isob-east-1.sc2s.sgov.gov");
        assert_eq!(endpoint(&SSM, "us-iso-east-1", None, false, false), "https://ssm.us-iso-east-1.c2s.ic.gov");
        assert_eq!(endpoint(&SNS, "us-east-1", None, false, true), "https://sns.us-east-1.api.aws");
        assert_eq!(endpoint(&SNS, "us-east-1", Some("http://127.0.0.1:9/"), false, false), "http://127.0.0.1:9");
        assert_eq!(percent_encode("arn:aws:lambda:x a/b~"), "arn%3Aaws%3Alambda%3Ax%20a%2Fb~");
        assert_eq!(xml_unescape("a&#65;&#x42;&bogus"), "aAB&bogus");
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        for attempt in 1..10 {
            let cap = 2f64.powi(attempt as i32 - 1).min(20.0);
            assert!(backoff(attempt).as_secs_f64() <= cap, "attempt {attempt}");
        }
    }
}
