//! One error type for every endpoint: `{"error": {"code", "message", "details"}}`.
//! 4xx carry a useful message; 5xx a generic one while the detail is logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::limits::bounded;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    /// Seconds to wait before trying again (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u16>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Value::Null, retry_after: None }
    }

    /// 429: the caller should slow down, and may try again after `seconds`.
    pub fn too_many(message: impl Into<String>, seconds: u16) -> ApiError {
        let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message);
        e.retry_after = Some(seconds);
        e
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 about one field of the request body (`details: {field}`).
    pub fn field(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::bad_request(message).with_details(json!({ "field": name }))
    }

    /// 400 when free text (a comment, a reason, a note) is longer than anyone writes:
    /// it is stored and shown on every page about its execution or runbook.
    pub fn check_text(name: &str, text: Option<&str>) -> Result<(), ApiError> {
        const MAX_TEXT: usize = 10_000;
        match text.map(|t| t.chars().count()) {
            Some(n) if n > MAX_TEXT => {
                Err(ApiError::field(name, format!("{name}: {n} characters, at most {MAX_TEXT} are kept")))
            }
            _ => Ok(()),
        }
    }

    /// 400 about one query parameter (`details: {param}`).
    pub fn param(name: &str, message: impl Into<String>) -> ApiError {
        ApiError::bad_request(message).with_details(json!({ "param": name }))
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn unauthenticated() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "a valid API token is required (Authorization: Bearer ...)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(%detail, "internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; see the server log")
    }
}

/// Refusals never echo megabytes of input back: messages are cut at this many characters.
const MAX_MESSAGE: usize = 1000;
/// And their details to this many entries per list or map (every string cut too).
const MAX_DETAILS: usize = 100;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = bounded(&self.message, MAX_MESSAGE);
        let body = opsbook_api::ErrorBody {
            error: opsbook_api::ErrorDetail {
                code: self.code.to_string(),
                message,
                details: (!self.details.is_null())
                    .then(|| crate::limits::bounded_json(&self.details, MAX_MESSAGE, MAX_DETAILS)),
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}

impl From<opsbook_store::Error> for ApiError {
    fn from(e: opsbook_store::Error) -> Self {
        use opsbook_store::Error as E;
        match e {
            E::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            E::Conflict(msg) | E::LostClaim(msg) => ApiError::conflict(msg),
            E::Mismatch(msg) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", msg),
            E::Ambiguous { .. } => ApiError::bad_request(e.to_string()),
            E::Unavailable(why) => {
                tracing::warn!(%why, "database unavailable");
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    format!("database unavailable: {why}"),
                );
                e.retry_after = Some(2);
                e
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<opsbook_engine::Error> for ApiError {
    fn from(e: opsbook_engine::Error) -> Self {
        use opsbook_engine::Error as E;
        match e {
            E::Store(s) => s.into(),
            E::Invalid(msg) => ApiError::conflict(msg),
            E::Params(errors) => params_error(&errors),
            E::Io(msg) => ApiError::internal(msg),
        }
    }
}

pub fn params_error(errors: &[opsbook_core::ParamError]) -> ApiError {
    let details: Vec<Value> = errors.iter().map(|e| json!({ "param": e.param, "message": e.message })).collect();
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameters", format!("{} invalid parameter(s)", errors.len()))
        .with_details(Value::Array(details))
}

/// `Json<T>` whose refusals (no body, wrong content type, bad JSON, a missing or unknown
/// field, a body over the size limit) answer in the same `{"error": …}` shape as every
/// other refusal, naming the field: 400 (413 for a body too large).
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let json = content_type.is_some_and(|ct| {
            let ct = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
            ct == "application/json" || (ct.starts_with("application/") && ct.ends_with("+json"))
        });
        if !json {
            return Err(ApiError::bad_request("request body: expected Content-Type: application/json"));
        }
        let bytes = body_bytes(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("request body: expected a JSON document, got nothing"));
        }
        // Every body is an object: serde would read an array into a struct by position.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::bad_request("request body: expected a JSON object ({...})"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(&mut de).map(ApiJson).map_err(|e| {
            let (field, message) = named(e.path().to_string(), e.inner().to_string());
            let refusal = ApiError::bad_request(format!("request body: {message}"));
            // (A body cut short, or not JSON, is about no field.)
            if field.is_empty() { refusal } else { refusal.with_details(json!({ "field": field })) }
        })
    }
}

/// The request body, refusals in the API's shape (413 past the size limit).
async fn body_bytes<S: Send + Sync>(req: axum::extract::Request, state: &S) -> Result<axum::body::Bytes, ApiError> {
    use axum::extract::FromRequest;
    axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "request body: too large (at most 2 MiB)")
        } else {
            ApiError::bad_request(format!("request body: {}", bounded(&rejection.body_text(), 200)))
        }
    })
}

/// A UTF-8 text body (a runbook's YAML), refusals in the API's shape.
pub struct ApiText(pub String);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiText {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        String::from_utf8(bytes.to_vec()).map(ApiText).map_err(|e| {
            ApiError::bad_request(format!("request body: not UTF-8 (at byte {})", e.utf8_error().valid_up_to()))
        })
    }
}

/// The name a serde error is about (from its path, or from the message for a missing
/// or unknown field, which are reported at the parent) and the message, cut short.
fn named(path: String, inner: String) -> (String, String) {
    let quoted = |prefix: &str| inner.strip_prefix(prefix).and_then(|r| r.split('`').nth(1)).map(str::to_string);
    let from_message =
        quoted("missing field ").or_else(|| quoted("unknown field ")).or_else(|| quoted("duplicate field "));
    // (`?`: serde_path_to_error's path when the document ended or broke before a field.)
    let at_top = path == "." || path == "?" || path.is_empty();
    let field = match (at_top, from_message) {
        (true, Some(f)) => f,
        (false, Some(f)) if path == f || path.ends_with(&format!(".{f}")) => path,
        (false, Some(f)) => format!("{path}.{f}"),
        (_, None) if at_top => String::new(),
        (_, None) => path,
    };
    let message = if field.is_empty() || inner.contains(&format!("`{field}`")) {
        bounded(&inner, 300)
    } else {
        format!("`{field}`: {}", bounded(&inner, 300))
    };
    (field, message)
}

/// `Query<T>` whose refusals name the parameter (`?limit=abc`, a missing `from`) and answer
/// in the API's `{"error": …}` shape with 400, like every other refusal.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// The `limit` of a page: `default` when not given; one above `max` is lowered to it
/// (the page's cursor leads on); one below 1 is refused.
pub fn page_limit(given: Option<i64>, default: i64, max: i64) -> Result<i64, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if n < 1 => {
            Err(ApiError::bad_request(format!("query parameter `limit`: must be at least 1 (got {n})"))
                .with_details(json!({ "param": "limit" })))
        }
        Some(n) => Ok(n.min(max)),
    }
}

/// Reads a query string into `T`, naming the parameter a refusal is about.
pub fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let (param, _) = named(e.path().to_string(), inner.clone());
        let message = match inner.strip_prefix("missing field ") {
            Some(_) => format!("query parameter `{param}` is required"),
            None if inner.starts_with("duplicate field ") => format!("query parameter `{param}` is given twice"),
            None if param.is_empty() => format!("query string: {}", bounded(&inner, 200)),
            None => format!("query parameter `{param}`: {}", bounded(&inner, 200)),
        };
        ApiError::bad_request(message).with_details(json!({ "param": param }))
    })
}

/// Refusals made by axum's own extractors (a path segment that is not UTF-8, a query
/// string that does not read) come as plain text: under `/api/`, they are answered in
/// the API's `{"error": …}` shape too; elsewhere (the web UI) as its error page, as are
/// the API-shaped answers of unknown paths and methods there.
pub async fn plain_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let path = req.uri().path();
    let api = path.starts_with("/api/");
    let probe = path == "/healthz" || path == "/readyz";
    let resp = next.run(req).await;
    let content_type = resp.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let plain = content_type.is_some_and(|ct| ct.starts_with("text/plain"));
    let json = content_type.is_some_and(|ct| ct.starts_with("application/json"));
    // (The UI answers the others itself, some with headers of their own: a sign-in's
    // `HX-Redirect`, a `Retry-After`.)
    let router_made = matches!(resp.status().as_u16(), 400 | 404 | 405 | 413);
    if probe || !router_made || !(plain || (json && !api)) {
        return resp;
    }
    let status = resp.status();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "bad_request",
    };
    let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let message = match json {
        true => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string()),
        false => text.trim().to_string(),
    };
    let e = ApiError::new(status, code, bounded(&message, 300));
    if api { e.into_response() } else { crate::ui::UiError(e).into_response() }
}
