//! One error type for every endpoint: `{"error": {"code", "message", "details"}}`.
//! 4xx carry a useful message; 5xx a generic one while the detail is logged.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), details: Value::Null }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = details;
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message, "details": self.details } });
        (self.status, Json(body)).into_response()
    }
}

impl From<opsbook_store::Error> for ApiError {
    fn from(e: opsbook_store::Error) -> Self {
        use opsbook_store::Error as E;
        match e {
            E::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            E::Conflict(msg) => ApiError::conflict(msg),
            E::Mismatch(msg) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", msg),
            E::Ambiguous(_) => ApiError::bad_request(e.to_string()),
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

/// `Json<T>` whose rejections (no body, wrong content type, bad JSON, a missing field)
/// answer in the same `{"error": …}` shape as every other refusal, with 400.
pub struct ApiJson<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(ApiError::bad_request(format!("request body: {}", rejection.body_text()))),
        }
    }
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

/// Reads a query string into `T`, naming the parameter a refusal is about.
pub fn parse_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner().to_string();
        let path = e.path().to_string();
        // A missing field is reported at the top (`.`), with its name in the message.
        let param = if path == "." || path.is_empty() {
            inner.strip_prefix("missing field `").and_then(|r| r.split('`').next()).unwrap_or_default().to_string()
        } else {
            path
        };
        let message = match inner.strip_prefix("missing field ") {
            Some(_) => format!("query parameter `{param}` is required"),
            None if param.is_empty() => format!("query string: {inner}"),
            None => format!("query parameter `{param}`: {}", truncate(&inner, 200)),
        };
        ApiError::bad_request(message).with_details(json!({ "param": param }))
    })
}

/// At most `max` characters of `s` (refusals never echo megabytes back).
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
