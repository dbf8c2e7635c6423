//! A double of AWS Secrets Manager's GetSecretValue as the SDK speaks it: awsJson1.1
//! (`POST /`, `X-Amz-Target: secretsmanager.GetSecretValue`), errors as `{"__type", "message"}`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};

use crate::http::{Reply, Request};

/// What the double answers; change it while it runs.
#[derive(Default)]
pub struct Script {
    /// Secrets by name: their `SecretString`.
    pub secrets: BTreeMap<String, String>,
    /// Secrets the caller may not read (AccessDeniedException).
    pub denied: Vec<String>,
    /// The `SecretId` of every GetSecretValue, in order.
    pub calls: Vec<Value>,
}

/// A running double; `url` is its endpoint (`AWS_ENDPOINT_URL_SECRETS_MANAGER`).
#[derive(Clone)]
pub struct SecretsManager {
    pub url: String,
    script: Arc<Mutex<Script>>,
}

impl SecretsManager {
    pub fn start(script: Script) -> SecretsManager {
        let (url, script) = crate::http::serve(script, answer);
        SecretsManager { url, script }
    }

    pub fn script(&self) -> MutexGuard<'_, Script> {
        self.script.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn error(code: &str, message: &str) -> Reply {
    Reply::new(400, "application/x-amz-json-1.1", json!({ "__type": code, "message": message }).to_string())
}

fn answer(script: &Mutex<Script>, req: &Request) -> Reply {
    let op = req.header("x-amz-target").and_then(|t| t.strip_prefix("secretsmanager.")).unwrap_or("");
    let input: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let mut s = script.lock().unwrap_or_else(|e| e.into_inner());
    s.calls.push(input.clone());
    if op != "GetSecretValue" {
        return error("UnknownOperationException", &format!("Unknown operation {op}"));
    }
    let id = input["SecretId"].as_str().unwrap_or_default().to_string();
    // By name, or by an ARN ending in `:secret:NAME-SUFFIX`.
    let name =
        id.split(":secret:").nth(1).map_or(id.as_str(), |n| n.rsplit_once('-').map_or(n, |(n, _)| n)).to_string();
    let region = req.signed_region().unwrap_or_default();
    if s.denied.contains(&name) {
        let who = req.signed_access_key().unwrap_or_default();
        return error(
            "AccessDeniedException",
            &format!(
                "User: arn:aws:iam::123456789012:user/{who} is not authorized to perform: secretsmanager:GetSecretValue on resource: {id} because no identity-based policy allows the secretsmanager:GetSecretValue action"
            ),
        );
    }
    match s.secrets.get(&name) {
        Some(v) => Reply::new(
            200,
            "application/x-amz-json-1.1",
            json!({
                "ARN": format!("arn:aws:secretsmanager:{region}:123456789012:secret:{name}-AbCdEf"),
                "Name": name,
                "SecretString": v,
                "VersionId": "EXAMPLE1-90ab-cdef-fedc-ba987SECRET1",
                "VersionStages": ["AWSCURRENT"],
                "CreatedDate": 1.523477145713E9,
            })
            .to_string(),
        ),
        None => error("ResourceNotFoundException", "Secrets Manager can't find the specified secret."),
    }
}
