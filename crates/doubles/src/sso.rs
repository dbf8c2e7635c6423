//! A double of the AWS IAM Identity Center (SSO) portal's GetRoleCredentials as the SDK
//! speaks it: restJson1, `GET /federation/credentials?account_id=…&role_name=…` with the
//! cached sign-in token in `x-amz-sso_bearer_token` (unsigned), answered with
//! `roleCredentials` (expiration in epoch milliseconds). An unknown token is 401
//! `UnauthorizedException`, a role the token may not use 403 `ForbiddenException`.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;

use crate::http::{Reply, Request, percent_decode};

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    /// Sign-in tokens the portal knows, each with the `(account, role)` pairs it may use.
    pub tokens: Vec<(String, Vec<(String, String)>)>,
    /// Every call seen, in order.
    pub calls: Vec<Call>,
}

/// One GetRoleCredentials the double saw, and the access key it handed out.
#[derive(Debug, Clone)]
pub struct Call {
    pub account_id: String,
    pub role_name: String,
    pub token: Option<String>,
    /// The temporary access key given back (none when refused).
    pub issued: Option<String>,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_SSO`).
#[derive(Clone)]
pub struct Sso {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl Sso {
    pub fn start(script: Script) -> Sso {
        let (url, script) = crate::http::serve(script, answer);
        Sso { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.script().calls.clone()
    }
}

fn error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(status, json!({ "message": message })).header("x-amzn-errortype", kind)
}

fn answer(script: &Mutex<Script>, req: &Request) -> Reply {
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    if req.method != "GET" || path != "/federation/credentials" {
        return error(404, "ResourceNotFoundException", &format!("no such operation: {} {path}", req.method));
    }
    let field = |k: &str| {
        query.split('&').filter_map(|p| p.split_once('=')).find(|(n, _)| *n == k).map(|(_, v)| percent_decode(v))
    };
    let (Some(account_id), Some(role_name)) = (field("account_id"), field("role_name")) else {
        return error(400, "InvalidRequestException", "account_id and role_name are required");
    };
    let token = req.header("x-amz-sso_bearer_token").map(str::to_string);
    let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
    let n = s.calls.len() + 1;
    let grants = s.tokens.iter().find(|(t, _)| Some(t) == token.as_ref()).map(|(_, g)| g.clone());
    let refusal = match &grants {
        None => Some(error(401, "UnauthorizedException", "Session token not found or invalid")),
        Some(g) if !g.contains(&(account_id.clone(), role_name.clone())) => {
            Some(error(403, "ForbiddenException", "No access"))
        }
        Some(_) => None,
    };
    let issued = refusal.is_none().then(|| format!("ASIASSODOUBLE{n:06}"));
    s.calls.push(Call { account_id, role_name, token, issued: issued.clone() });
    if let Some(r) = refusal {
        return r;
    }
    Reply::json(
        200,
        json!({ "roleCredentials": {
            "accessKeyId": issued,
            "secretAccessKey": format!("sso-secret-{n}"),
            "sessionToken": format!("sso-session-{n}"),
            "expiration": 4_102_444_800_000u64,
        }}),
    )
}
