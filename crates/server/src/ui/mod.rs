//! The web UI: server-rendered pages (askama) with htmx and a little script, all
//! compiled into the binary. Pages call the same service layer as the API and check the
//! same permissions: a hidden button is never the control.
//!
//! A page is reached with a session (`session.rs`): the cookie resolves to the principal
//! of the token signed in with. Every form that changes something goes through
//! [`WebForm`], which refuses a cross-site request and a missing or wrong form token.

mod ansi;
mod chart;
mod executions;
mod ops;
mod runbooks;
mod session;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use subtle::ConstantTimeEq;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::{Ctx, Perm, Principal};
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/runbooks") }))
        .route("/login", get(session::form).post(session::sign_in))
        .route("/logout", post(session::sign_out))
        .route("/assets/{file}", get(asset))
        .route("/runbooks", get(runbooks::catalog))
        .route("/runbooks/{name}", get(runbooks::page))
        .route("/runbooks/{name}/run", get(runbooks::run_form).post(runbooks::run))
        .route("/runbooks/{name}/lifecycle", post(runbooks::lifecycle))
        .route("/runbooks/{name}/review", post(runbooks::review))
        .route("/executions", get(executions::list))
        .route("/executions/{id}", get(executions::page))
        .route("/executions/{id}/log", get(executions::earlier))
        .route("/executions/{id}/log.txt", get(executions::raw_log))
        .route("/executions/{id}/live", get(executions::live))
        .route("/executions/{id}/decide", post(executions::decide))
        .route("/executions/{id}/confirm", post(executions::confirm))
        .route("/executions/{id}/feedback", post(executions::rate))
        .route("/executions/{id}/cancel", post(executions::cancel))
        .route("/executions/{id}/resume", post(executions::resume))
        .route("/executions/{id}/rollback", post(executions::rollback))
        .route("/executions/{id}/override", post(executions::override_gate))
        .route("/approvals", get(ops::approvals))
        .route("/gates", get(ops::gates))
        .route("/gates/{name}/verdict", get(ops::verdict))
        .route("/analytics", get(ops::analytics))
        .route("/audit", get(ops::audit))
        .route("/schedules", get(ops::schedules))
        // Pages and assets go gzipped to browsers that take it (not the live log's
        // event stream, which must flush each event).
        .layer(tower_http::compression::CompressionLayer::new())
        // Only this site's own script runs, no page frames this one, forms post here.
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
}

/// Scripts and styles from this site only (inline style attributes colour log lines).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// htmx 2 (0BSD, see assets/htmx-LICENSE), the style sheet and the page script, under
/// names that change with their content so browsers may keep them for a year.
const HTMX: &[u8] = include_bytes!("../../assets/htmx-2.0.11.min.js");
const CSS: &str = include_str!("../../assets/app.css");
const JS: &str = include_str!("../../assets/app.js");
const HTMX_PATH: &str = "/assets/htmx-2.0.11.min.js";

/// `/assets/NAME-HASH.EXT`: the name changes whenever the content does.
fn versioned(name: &str, ext: &str, content: &[u8]) -> String {
    use sha2::Digest;
    format!("/assets/{name}-{}.{ext}", &hex::encode(sha2::Sha256::digest(content))[..12])
}

static CSS_PATH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| versioned("app", "css", CSS.as_bytes()));
static JS_PATH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| versioned("app", "js", JS.as_bytes()));

/// The style sheet's path, for pages outside the frame (sign-in, errors).
pub fn css_path() -> &'static str {
    CSS_PATH.as_str()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let path = format!("/assets/{file}");
    let (body, kind): (&'static [u8], &str) = if path == HTMX_PATH {
        (HTMX, "text/javascript; charset=utf-8")
    } else if path == *CSS_PATH {
        (CSS.as_bytes(), "text/css; charset=utf-8")
    } else if path == *JS_PATH {
        (JS.as_bytes(), "text/javascript; charset=utf-8")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
        .into_response()
}

/// A page's failure: its status and message, shown as a page (never JSON, never a
/// stack trace). 5xx details go to the server log.
#[derive(Debug)]
pub struct UiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> UiError {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let title = e.status.canonical_reason().unwrap_or("Error");
        // Each problem the details name (a parameter, a line), as the API lists them.
        let items: String = e
            .details
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .take(50)
                    .filter_map(|d| {
                        let message = d["message"].as_str()?;
                        let place = d["param"].as_str().map(|p| format!("{p}: ")).unwrap_or_default();
                        Some(format!("<li>{}</li>", escape(&crate::limits::bounded(&format!("{place}{message}"), 500))))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let list = if items.is_empty() { String::new() } else { format!("<ul class=error>{items}</ul>") };
        let body = format!(
            "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
             <title>{title} · opsbook</title><link rel=stylesheet href=\"{}\">\
             <main class=narrow><h1>{title}</h1><p class=error role=alert>{}</p>{list}\
             <p><a href=\"/runbooks\">Runbooks</a> · <a href=\"/executions\">Executions</a></p></main>",
            css_path(),
            escape(&crate::limits::bounded(&e.message, 1000))
        );
        let mut r = (e.status, Html(body)).into_response();
        if let Some(s) = e.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

pub type UiResult<T> = Result<T, UiError>;

/// A signed-in person on a page: who (as for the API), and the form token their forms carry.
pub struct Web {
    pub ctx: Ctx,
    pub csrf: String,
    /// The session's key in the store (the cookie's SHA-256).
    pub session: String,
}

impl Web {
    pub fn user(&self) -> &str {
        self.ctx.user()
    }

    pub fn can(&self, p: Perm) -> bool {
        self.ctx.principal.can(p)
    }

    /// 403 (audited, as in the API) unless they may do `p`.
    pub async fn require(&self, st: &AppState, p: Perm, target: &str) -> UiResult<()> {
        Ok(self.ctx.require(st, p, target).await?)
    }

    /// What every page's frame shows: who, their sign-out form, the section.
    pub fn layout(&self, section: &'static str) -> Layout {
        Layout {
            user: self.user().to_string(),
            csrf: self.csrf.clone(),
            section,
            htmx: HTMX_PATH,
            css: CSS_PATH.as_str(),
            js: JS_PATH.as_str(),
        }
    }
}

pub struct Layout {
    pub user: String,
    pub csrf: String,
    pub section: &'static str,
    pub htmx: &'static str,
    pub css: &'static str,
    pub js: &'static str,
}

impl FromRequestParts<AppState> for Web {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
            let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
            let login = format!("/login?next={next}");
            if parts.headers.contains_key("hx-request") {
                // A fragment's request: the whole page goes to sign in, not the fragment.
                let to = HeaderValue::from_str(&login).unwrap_or(HeaderValue::from_static("/login"));
                return (StatusCode::UNAUTHORIZED, [("hx-redirect", to)]).into_response();
            }
            Redirect::to(&login).into_response()
        };
        let Some(cookie) = crate::auth::cookie(&parts.headers, crate::auth::SESSION_COOKIE) else {
            return Err(to_login());
        };
        let principal: Option<Principal> = crate::auth::resolve(&st.store, crate::auth::Credential::Session(cookie))
            .await
            .map_err(|e| UiError(e).into_response())?;
        let Some(principal) = principal else { return Err(to_login()) };
        let csrf = crate::auth::csrf_token(cookie);
        let session = crate::auth::hash(cookie);
        Ok(Web { ctx: Ctx { principal, request_id: crate::state::request_id(&parts.headers) }, csrf, session })
    }
}

/// A form posted from one of our pages: the signed-in person and the fields (in order;
/// [`WebForm::get`] takes the last of a name). Refused with 403 when it comes from
/// another site or without this session's form token.
pub struct WebForm {
    pub web: Web,
    pub fields: Vec<(String, String)>,
}

/// A form is small: its fields, never files.
const MAX_FORM_BYTES: usize = 256 * 1024;

impl FromRequest<AppState> for WebForm {
    type Rejection = Response;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let web = Web::from_request_parts(&mut parts, st).await?;
        let refuse = |message: &str| UiError(ApiError::forbidden(message)).into_response();
        if !crate::auth::same_origin(&parts.headers) {
            return Err(refuse("a form from another site is refused"));
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| UiError(ApiError::bad_request("the form is too large")).into_response())?;
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(&bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let sent = fields.iter().rev().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str()).unwrap_or("");
        if !bool::from(sent.as_bytes().ct_eq(web.csrf.as_bytes())) {
            return Err(refuse("the form's token is missing or stale: reload the page and try again"));
        }
        Ok(WebForm { web, fields })
    }
}

impl WebForm {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A field's value, trimmed; `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<String> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
    }
}

/// Renders a template as a page; a template that fails to render is a 500.
pub fn render(t: impl askama::Template) -> UiResult<Response> {
    let html = t.render().map_err(ApiError::internal)?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Html(html)).into_response())
}

/// 303 to `to` (after a form: the browser GETs it).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A moment, shown in the browser's zone by the page script, in UTC without it, and in
/// UTC on hover.
#[derive(Clone, Copy)]
pub struct Stamp(pub i64);

impl std::fmt::Display for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Ok(t) = jiff::Timestamp::from_millisecond(self.0) else { return f.write_str("?") };
        let utc = t.strftime("%Y-%m-%d %H:%M:%S");
        write!(f, "<time datetime=\"{t}\" title=\"{utc} UTC\">{utc} UTC</time>")
    }
}

/// A duration for people: 850 ms, 12.3 s, 4 min 05 s, 2 h 10 min.
pub fn took(ms: i64) -> String {
    match ms {
        ..0 => String::new(),
        0..1000 => format!("{ms} ms"),
        1000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min {:02} s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{} h {:02} min", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// How long ago, for ages of waits: 45 s, 12 min, 3 h, 2 d.
pub fn age(since_ms: i64, now_ms: i64) -> String {
    let s = (now_ms - since_ms).max(0) / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

/// `text` as a URL path segment or query value.
pub fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_text_and_attributes() {
        assert_eq!(escape(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn durations_and_ages_read_naturally() {
        assert_eq!(took(850), "850 ms");
        assert_eq!(took(12_345), "12.3 s");
        assert_eq!(took(245_000), "4 min 05 s");
        assert_eq!(took(7_800_000), "2 h 10 min");
        assert_eq!(age(0, 45_000), "45 s");
        assert_eq!(age(0, 3 * 86_400_000), "3 d");
    }

    #[test]
    fn stamps_carry_the_instant_and_utc() {
        assert_eq!(
            Stamp(0).to_string(),
            "<time datetime=\"1970-01-01T00:00:00Z\" title=\"1970-01-01 00:00:00 UTC\">1970-01-01 00:00:00 UTC</time>"
        );
    }
}
