//! Signing in with an API token, and out. The session lives in the store (any API node
//! honours it); the browser holds only a random cookie, HttpOnly and SameSite=Strict.

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opsbook_store::{ServerStore, WebSession, now_ms};
use serde::Deserialize;
use serde_json::json;

use super::{UiError, UiResult, WebForm, css_path, render, see_other};
use crate::auth::{SESSION_COOKIE, hash};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    css: &'static str,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Where to go after signing in: a path of this site only (never `//host` or a URL).
/// Browsers drop tabs and line breaks from a location (`/\t/host` is `//host`), and a
/// line break cannot go in a header: a path with any control character or space is
/// refused too.
fn local_path(next: Option<&str>) -> String {
    let plain = |n: &str| !n.contains('\\') && !n.chars().any(|c| c.is_control() || c.is_whitespace());
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && plain(n) => n.to_string(),
        _ => "/".to_string(),
    }
}

pub async fn form(Query(q): Query<Next>) -> UiResult<Response> {
    render(LoginPage { css: css_path(), next: local_path(q.next.as_deref()), error: None })
}

/// `POST /login` with `token`: a valid token starts a session and goes on to `next`.
pub async fn sign_in(State(st): State<AppState>, req: Request) -> UiResult<Response> {
    let (parts, body) = req.into_parts();
    if !crate::auth::same_origin(&parts.headers) {
        return Err(ApiError::forbidden("a form from another site is refused").into());
    }
    let bytes =
        axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| ApiError::bad_request("the form is too large"))?;
    let field = |name: &str| form_urlencoded::parse(&bytes).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let next = local_path(field("next").as_deref());
    let token = field("token").unwrap_or_default();
    let token = token.trim();
    let principal = crate::auth::authenticate(&st.store, token).await?;
    let Some(principal) = principal else {
        let lapsed = crate::auth::lapsed(&st.store, token).await?;
        let reason = lapsed.as_ref().map_or("sign-in with an invalid, expired or revoked token", |(r, _)| r);
        if let Some(too_many) = crate::auth::failed(&st, &parts, reason).await {
            return Err(UiError(too_many));
        }
        let error = match lapsed {
            Some((_, why)) => format!("{}.", capitalized(&why)),
            None => "That token is not valid: it may be mistyped, expired or revoked.".into(),
        };
        let page = LoginPage { css: css_path(), next, error: Some(error) };
        let mut r = render(page)?;
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return Ok(r);
    };
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(ApiError::internal)?;
    let cookie = hex::encode(secret);
    let now = now_ms();
    let ttl = crate::config::Config::duration(&st.config.session_ttl).as_millis() as i64;
    let session = WebSession {
        hash: hash(&cookie),
        token_id: principal.token_id.clone(),
        created_at: now,
        expires_at: now + ttl,
        ended_at: None,
    };
    st.store.create_session(&session).await?;
    let rid = crate::state::request_id(&parts.headers);
    st.audit(
        &principal.user,
        "session.start",
        &principal.token_id,
        &rid,
        json!({ "expires_at": opsbook_api::time(Some(session.expires_at)) }),
    )
    .await;
    let https = st.config.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
        || parts.headers.get("x-forwarded-proto").is_some_and(|v| v == "https");
    let secure = if https { "; Secure" } else { "" };
    let set = format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", ttl / 1000);
    let mut r = see_other(&next);
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&set).map_err(ApiError::internal)?);
    Ok(r)
}

/// `POST /logout`: ends the session in the store (every node), clears the cookie.
pub async fn sign_out(State(st): State<AppState>, form: WebForm) -> UiResult<Response> {
    let web = &form.web;
    st.store.end_session(&web.session, now_ms()).await?;
    st.audit(web.user(), "session.end", &web.ctx.principal.token_id, &web.ctx.request_id, json!({})).await;
    let mut r = see_other("/login");
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    r.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&clear).map_err(ApiError::internal)?);
    Ok(r.into_response())
}

/// `why` with its first letter upper-case, as a sentence on a page starts.
fn capitalized(why: &str) -> String {
    let mut chars = why.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(super::local_path(Some("/executions/x?y=1")), "/executions/x?y=1");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "evil",
            "/\t/evil.example",
            "/\n/evil",
            "/x\r\nSet-Cookie: a=b",
            "/ /evil",
        ] {
            assert_eq!(super::local_path(Some(bad)), "/", "{bad}");
        }
    }
}
