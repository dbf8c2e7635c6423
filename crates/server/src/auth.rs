//! API tokens, roles and permissions.
//!
//! A token is `obk_<id>_<secret>`: the id finds the row, the SHA-256 of the whole token
//! is compared in constant time, and only that hash is stored.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use opsbook_store::{ServerStore, Token, now_ms};
use sha2::Digest;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

pub const PREFIX: &str = "obk_";

/// Built-in roles and what they may do. Any other role name is a label that approval
/// steps (`role:NAME`) can refer to.
pub const BUILTIN_ROLES: [&str; 5] = ["viewer", "operator", "approver", "author", "admin"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    /// Read runbooks, executions, logs.
    Read,
    /// Start and cancel executions.
    Run,
    /// Decide on approval steps.
    Approve,
    /// Publish runbooks and change their lifecycle.
    Author,
    /// Tokens and the audit trail.
    Admin,
}

impl Perm {
    /// The built-in roles that grant this permission, for error messages.
    pub fn roles(self) -> &'static str {
        match self {
            Perm::Read => "viewer, operator, approver, author or admin",
            Perm::Run => "operator or admin",
            Perm::Approve => "approver or admin",
            Perm::Author => "author or admin",
            Perm::Admin => "admin",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    pub roles: Vec<String>,
    pub token_id: String,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    pub fn can(&self, p: Perm) -> bool {
        self.roles.iter().any(|r| match r.as_str() {
            "admin" => true,
            "viewer" => p == Perm::Read,
            "operator" => matches!(p, Perm::Read | Perm::Run),
            "approver" => matches!(p, Perm::Read | Perm::Approve),
            "author" => matches!(p, Perm::Read | Perm::Author),
            _ => false,
        })
    }
}

/// A user name as kept: no surrounding spaces, one case.
pub fn user_name(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The user of a new token, as [`user_name`] keeps it, once checked: letters, digits and
/// `- _ . @ +` only, so that no user can pass for one of opsbook's own actors
/// (`schedule:ID`, `local:NAME`) or write a line break into the history and audit trail.
pub fn check_user(name: &str) -> Result<String, String> {
    let user = user_name(name);
    if user.is_empty() {
        return Err("user must not be empty".into());
    }
    let ok = user.chars().count() <= 64 && user.chars().all(|c| c.is_alphanumeric() || "-_.@+".contains(c));
    if !ok {
        return Err(format!("invalid user `{}`: use letters, digits, - _ . @ + (at most 64)", user.escape_debug()));
    }
    Ok(user)
}

/// User names compare as people mean them: case and surrounding spaces aside.
pub fn same_user(a: &str, b: &str) -> bool {
    user_name(a) == user_name(b)
}

/// A token just created: the secret is shown once and never stored.
pub struct NewToken {
    pub secret: String,
    pub record: Token,
    pub hash: String,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random source is available");
    hex::encode(buf)
}

pub fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// A token's roles then labels, each once, in the order given.
pub fn token_roles(roles: Vec<String>, labels: Vec<String>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for r in roles.into_iter().chain(labels) {
        if !all.contains(&r) {
            all.push(r);
        }
    }
    all
}

/// Checks the roles of a new token: `roles` must be built-in (a typo such as `admn` or a
/// made-up `superuser` is refused, naming the valid ones); `labels` are any other names
/// that approval steps (`role:NAME`) and policies use, which grant nothing by themselves.
pub fn check_roles(roles: &[String], labels: &[String]) -> Result<(), (&'static str, String)> {
    if roles.is_empty() && labels.is_empty() {
        return Err(("roles", format!("a token needs at least one role: {}", BUILTIN_ROLES.join(", "))));
    }
    for r in roles {
        if !BUILTIN_ROLES.contains(&r.as_str()) {
            let hint = opsbook_core::diagnostic::did_you_mean(r, &BUILTIN_ROLES)
                .map(|m| format!(" (did you mean `{m}`?)"))
                .unwrap_or_default();
            return Err((
                "roles",
                format!(
                    "unknown role `{r}`{hint}: the roles are {}. A name that approval steps or policies use \
                     (such as release-manager) is a label: give it with --label (\"labels\" in the API)",
                    BUILTIN_ROLES.join(", ")
                ),
            ));
        }
    }
    for l in labels {
        let ok = !l.is_empty() && l.len() <= 64 && l.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(("labels", format!("invalid label `{l}`: use letters, digits, - _ . (at most 64)")));
        }
        // A label grants nothing; one spelled like a role would read as that role.
        if let Some(role) = BUILTIN_ROLES.iter().find(|r| r.eq_ignore_ascii_case(l)) {
            return Err((
                "labels",
                format!(
                    "label `{l}` is the built-in role `{role}`: give it as a role (--role, \"roles\" in the API) \
                     if it is meant, labels grant nothing"
                ),
            ));
        }
    }
    Ok(())
}

/// Creates a token with 256 random bits.
pub fn generate(user: &str, roles: Vec<String>, expires_at: Option<i64>) -> NewToken {
    let id = random_hex(6);
    let secret = format!("{PREFIX}{id}_{}", random_hex(32));
    let hash = hash(&secret);
    NewToken {
        record: Token {
            id,
            user: user.to_string(),
            roles,
            created_at: now_ms(),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        },
        secret,
        hash,
    }
}

/// Resolves a bearer token to a principal; `None` for any kind of invalid token.
pub async fn authenticate<S: ServerStore>(store: &S, bearer: &str) -> Result<Option<Principal>, ApiError> {
    match presented(store, bearer).await? {
        Some(token) => principal_of(store, token).await,
        None => Ok(None),
    }
}

/// The token whose secret `bearer` is, revoked or expired as it may be.
async fn presented<S: ServerStore>(store: &S, bearer: &str) -> Result<Option<Token>, ApiError> {
    let Some(rest) = bearer.strip_prefix(PREFIX) else { return Ok(None) };
    let Some((id, _)) = rest.split_once('_') else { return Ok(None) };
    let Some((token, stored)) = store.token(id).await? else { return Ok(None) };
    let presented = hash(bearer);
    Ok(bool::from(presented.as_bytes().ct_eq(stored.as_bytes())).then_some(token))
}

/// Why a refused token is refused (for the audit, and the answer), told only to whoever
/// presents its secret, who holds the token anyway: revoked, or expired and when. `None`
/// for anything else (an unknown id, a wrong secret), answered as if no token were given.
pub async fn lapsed<S: ServerStore>(store: &S, bearer: &str) -> Result<Option<(&'static str, String)>, ApiError> {
    let Some(token) = presented(store, bearer).await? else { return Ok(None) };
    if token.revoked_at.is_some() {
        return Ok(Some(("token revoked", "this API token was revoked; ask an admin for a new one".into())));
    }
    Ok(token.expires_at.filter(|&t| t <= now_ms()).map(|t| {
        let when = jiff::Timestamp::from_millisecond(t).map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
        let when = when.as_deref().unwrap_or("?");
        ("token expired", format!("this API token expired at {when}; ask an admin for a new one"))
    }))
}

/// The principal of a token found by its id or through a session: none once revoked or
/// expired. Marks it used.
async fn principal_of<S: ServerStore>(store: &S, token: Token) -> Result<Option<Principal>, ApiError> {
    if token.revoked_at.is_some() || token.expires_at.is_some_and(|t| t <= now_ms()) {
        return Ok(None);
    }
    // "Last used" to the minute: one write per token and minute, not per request.
    let now = now_ms();
    if token.last_used_at.is_none_or(|t| now - t >= 60_000) {
        store.token_used(&token.id, now).await?;
    }
    Ok(Some(Principal { user: token.user, roles: token.roles, token_id: token.id }))
}

/// The web UI's session cookie.
pub const SESSION_COOKIE: &str = "opsbook_session";

/// What a request presents to say who it is: an API token, or the web UI's session
/// cookie. Both resolve to the same principal, so roles apply alike.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Session(&'a str),
}

impl<'a> Credential<'a> {
    /// The credential a request carries: `Authorization: Bearer …` (the scheme is
    /// case-insensitive, RFC 9110), else the session cookie.
    pub fn of(parts: &'a Parts) -> Option<Credential<'a>> {
        if let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            let (scheme, token) = header.split_once(' ')?;
            return scheme.eq_ignore_ascii_case("bearer").then(|| Credential::Bearer(token.trim()));
        }
        cookie(&parts.headers, SESSION_COOKIE).map(Credential::Session)
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The principal a credential stands for, if it is valid.
pub async fn resolve<S: ServerStore>(store: &S, credential: Credential<'_>) -> Result<Option<Principal>, ApiError> {
    match credential {
        Credential::Bearer(token) => authenticate(store, token).await,
        Credential::Session(cookie) => {
            let Some(session) = store.session(&hash(cookie)).await? else { return Ok(None) };
            if session.ended_at.is_some() || session.expires_at <= now_ms() {
                return Ok(None);
            }
            let Some((token, _)) = store.token(&session.token_id).await? else { return Ok(None) };
            principal_of(store, token).await
        }
    }
}

/// The form token of a session: derived from its cookie, so a page from another site,
/// which can neither read the cookie nor this page, cannot know it.
pub fn csrf_token(cookie: &str) -> String {
    hash(&format!("csrf:{cookie}"))
}

/// Whether a state-changing request from a browser comes from this site: a
/// `Sec-Fetch-Site` other than same-origin (or none: typed by the user) is refused, and
/// so is an `Origin` whose host is not this request's `Host`.
pub fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return false;
    }
    match (header("origin"), header("host")) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(host))
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

/// Who is calling and which request this is: what every handler starts from. 401
/// without a valid credential (the failure is audited, bounded per address).
pub struct Ctx {
    pub principal: Principal,
    pub request_id: String,
}

impl Ctx {
    /// 403 unless the caller may do `p` (the refusal is audited).
    pub async fn require(&self, state: &AppState, p: Perm, target: &str) -> Result<(), ApiError> {
        if self.principal.can(p) {
            return Ok(());
        }
        state
            .audit(
                &self.principal.user,
                "authz.denied",
                target,
                &self.request_id,
                serde_json::json!({ "needs": format!("{p:?}").to_lowercase(), "roles": self.principal.roles }),
            )
            .await;
        Err(ApiError::forbidden(format!("this needs the {} role", p.roles())))
    }

    /// The caller's user name.
    pub fn user(&self) -> &str {
        &self.principal.user
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let credential = Credential::of(parts);
        if let Some(Credential::Session(cookie)) = credential
            && !parts.method.is_safe()
            && !session_write_allowed(parts, cookie)
        {
            // The API takes a session only for what a page's own script sends: same
            // origin, with the form token in `X-CSRF-Token`.
            return Err(ApiError::forbidden(
                "a request with a session cookie that changes something must come from this site with its form \
                 token (X-CSRF-Token)",
            ));
        }
        let principal = match credential {
            Some(c) => resolve(&state.store, c).await?,
            None => None,
        };
        match principal {
            Some(principal) => Ok(Ctx { principal, request_id: crate::state::request_id(&parts.headers) }),
            None => {
                let lapsed = match credential {
                    Some(Credential::Bearer(bearer)) => lapsed(&state.store, bearer).await?,
                    _ => None,
                };
                let reason = match (&lapsed, credential) {
                    (Some((reason, _)), _) => reason,
                    (None, Some(_)) => "invalid, expired or revoked token",
                    (None, None) => "no token",
                };
                let refused = failed(state, parts, reason).await;
                Err(refused.unwrap_or_else(|| match lapsed {
                    Some((_, why)) => ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthenticated", why),
                    None => ApiError::unauthenticated(),
                }))
            }
        }
    }
}

/// Counts a failed authentication: one audit record per source and minute (the next
/// says how many more there were); past a rate, the 429 to answer instead of 401. A
/// flood costs neither disk nor much time.
pub async fn failed(state: &AppState, parts: &Parts, reason: &str) -> Option<ApiError> {
    let source = crate::listen::peer(parts).map(|p| p.ip());
    let failure = state.auth_failures.record(source, now_ms());
    if failure.audit {
        let mut details = serde_json::json!({ "reason": reason, "method": parts.method.as_str() });
        if let Some(ip) = source {
            details["source"] = ip.to_string().into();
        }
        if failure.suppressed_before > 0 {
            details["more_failures_in_the_previous_minute"] = failure.suppressed_before.into();
        }
        let rid = crate::state::request_id(&parts.headers);
        state.audit("anonymous", "auth.failed", parts.uri.path(), &rid, details).await;
    }
    failure.retry_after.map(|seconds| {
        ApiError::too_many("too many failed authentications from this address; try again later", seconds)
    })
}

fn session_write_allowed(parts: &Parts, cookie: &str) -> bool {
    let sent = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
    same_origin(&parts.headers) && bool::from(sent.as_bytes().ct_eq(csrf_token(cookie).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(roles: &[&str]) -> Principal {
        Principal { user: "u".into(), roles: roles.iter().map(|r| r.to_string()).collect(), token_id: "t".into() }
    }

    #[test]
    fn roles_grant_permissions() {
        use Perm::*;
        let table = [
            ("viewer", [true, false, false, false, false]),
            ("operator", [true, true, false, false, false]),
            ("approver", [true, false, true, false, false]),
            ("author", [true, false, false, true, false]),
            ("admin", [true, true, true, true, true]),
            ("release-manager", [false, false, false, false, false]),
        ];
        for (role, expected) in table {
            let got: Vec<bool> = [Read, Run, Approve, Author, Admin].iter().map(|p| who(&[role]).can(*p)).collect();
            assert_eq!(got, expected, "{role}");
        }
    }

    #[test]
    fn roles_must_be_built_in_and_labels_well_formed() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_roles(&v(&["admin", "viewer"]), &v(&["release-manager"])), Ok(()));
        assert_eq!(check_roles(&[], &v(&["release-manager"])), Ok(()));
        let typo = check_roles(&v(&["admn"]), &[]).unwrap_err().1;
        assert!(
            typo.starts_with(
                "unknown role `admn` (did you mean `admin`?): the roles are viewer, operator, approver, author, admin."
            ),
            "{typo}"
        );
        let made_up = check_roles(&v(&["superuser"]), &[]).unwrap_err().1;
        assert!(made_up.starts_with("unknown role `superuser`: the roles are"), "{made_up}");
        assert!(made_up.contains("--label"), "{made_up}");
        assert!(check_roles(&[], &[]).unwrap_err().1.starts_with("a token needs at least one role"));
        assert!(check_roles(&[], &v(&["a b"])).unwrap_err().1.starts_with("invalid label `a b`"));
        assert_eq!(
            check_roles(&v(&["viewer"]), &v(&["Admin"])).unwrap_err().1,
            "label `Admin` is the built-in role `admin`: give it as a role (--role, \"roles\" in the API) \
             if it is meant, labels grant nothing"
        );
    }

    #[test]
    fn users_cannot_pass_for_opsbooks_own_actors() {
        assert_eq!(check_user("  Ann.Lee@example.com "), Ok("ann.lee@example.com".into()));
        assert_eq!(check_user("zoë"), Ok("zoë".into()));
        assert_eq!(check_user(" ").unwrap_err(), "user must not be empty");
        assert_eq!(
            check_user("schedule:nightly#1").unwrap_err(),
            "invalid user `schedule:nightly#1`: use letters, digits, - _ . @ + (at most 64)"
        );
        assert_eq!(
            check_user("x y\nz").unwrap_err(),
            "invalid user `x y\\nz`: use letters, digits, - _ . @ + (at most 64)"
        );
        assert!(check_user(&"a".repeat(65)).is_err());
    }

    #[test]
    fn tokens_are_256_bit_and_hashed() {
        let t = generate("alice", vec!["viewer".into()], None);
        assert!(t.secret.starts_with("obk_"));
        assert_eq!(t.secret.len(), 4 + 12 + 1 + 64);
        assert_eq!(t.hash, hash(&t.secret));
        assert_ne!(t.hash, t.secret);
    }
}
