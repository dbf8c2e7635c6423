//! Secret parameters read from AWS when an execution starts: a Secrets Manager secret
//! (whole, or one key of its JSON) or a Parameter Store parameter (decrypted).

use serde_json::json;

use crate::wire::{SECRETS_MANAGER, SSM};
use crate::{Call, Error, Target};

/// A Secrets Manager secret's text (`SecretString`); `key` picks one field of its JSON.
pub fn secrets_manager<'a>(
    target: &'a Target,
    id: &'a str,
    key: Option<&'a str>,
) -> crate::Boxed<'a, Result<String, Error>> {
    crate::boxed(async move {
        let client = crate::config(target).await?.client(&SECRETS_MANAGER);
        let resource = format!("secret `{id}`");
        let out = client.json("GetSecretValue", &json!({ "SecretId": id })).await.map_err(|e| match e.code() {
            Some("ResourceNotFoundException") => Error::fatal(format!("Secrets Manager has no secret `{id}`")),
            _ => crate::describe(
                &Call {
                    service: "Secrets Manager",
                    action: "secretsmanager:GetSecretValue",
                    resource: &resource,
                    target,
                },
                &e,
            ),
        })?;
        let Some(text) = out["SecretString"].as_str() else {
            return Err(Error::fatal(format!("secret `{id}` is binary; opsbook reads text secrets (SecretString)")));
        };
        let Some(key) = key else { return Ok(text.to_string()) };
        let doc: serde_json::Value = serde_json::from_str(text)
            .map_err(|_| Error::fatal(format!("secret `{id}` is not JSON, so it has no key `{key}`")))?;
        match doc.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Null) | None => Err(Error::fatal(format!("secret `{id}` has no key `{key}`"))),
            Some(other) => Ok(other.to_string()),
        }
    })
}

/// A Parameter Store parameter's value, decrypted (`WithDecryption`).
pub fn ssm_parameter<'a>(target: &'a Target, name: &'a str) -> crate::Boxed<'a, Result<String, Error>> {
    crate::boxed(async move {
        let client = crate::config(target).await?.client(&SSM);
        let resource = format!("parameter `{name}`");
        let input = json!({ "Name": name, "WithDecryption": true });
        let out = client.json("GetParameter", &input).await.map_err(|e| match e.code() {
            Some("ParameterNotFound") => Error::fatal(format!("Parameter Store has no parameter `{name}`")),
            _ => crate::describe(&Call { service: "SSM", action: "ssm:GetParameter", resource: &resource, target }, &e),
        })?;
        out["Parameter"]["Value"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::fatal(format!("parameter `{name}` has no value")))
    })
}
