//! Triggers: events that start a runbook on the server (`POST /api/v1/triggers/{name}`).
//! A trigger says how callers prove who they are, where the event's id is (a repeated
//! id starts nothing new), and which parameters come from where in the event.

use std::collections::BTreeMap;

use crate::Input;
use crate::jsonpath::JsonPath;

/// A checked trigger.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub name: String,
    pub auth: Auth,
    pub event_id: JsonPath,
    pub params: BTreeMap<String, Source>,
}

/// How a caller proves it may fire the trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer TOKEN` whose SHA-256 is this (lowercase hex).
    Token { sha256: String },
    /// An HMAC-SHA256 of the body with the key in this environment variable.
    Hmac { env: String },
}

/// Where a parameter's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Path(JsonPath),
    Literal(serde_json::Value),
}

impl Trigger {
    /// The parameter inputs an event gives (a path that finds nothing gives none, so a
    /// required parameter is reported missing by name).
    pub fn inputs(&self, event: &serde_json::Value) -> BTreeMap<String, Input> {
        self.params
            .iter()
            .filter_map(|(name, source)| {
                let value = match source {
                    Source::Path(p) => p.find(event)?.clone(),
                    Source::Literal(v) => v.clone(),
                };
                (!value.is_null()).then(|| (name.clone(), Input::Value(value)))
            })
            .collect()
    }

    /// The event's id, as text, if it has one.
    pub fn event_id(&self, event: &serde_json::Value) -> Option<String> {
        // An id that is not text (a number, an object) is its JSON: the same event gives
        // the same id, so a repeated delivery is still told apart from a new event.
        match self.event_id.find(event)? {
            serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
            serde_json::Value::String(_) | serde_json::Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// Checks a raw trigger against the runbook's parameters; every problem, each naming its field.
pub fn check(raw: &crate::document::RawTrigger, params: &[crate::Param]) -> Result<Trigger, Vec<String>> {
    let name = &raw.name.value;
    let mut errs = Vec::new();
    let slug = !name.is_empty()
        && name.len() <= 63
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !slug {
        errs.push(format!("triggers: invalid name `{name}`: use lowercase letters, digits and dashes"));
    }
    let auth = match (&raw.token_sha256, &raw.hmac_secret_env) {
        (Some(h), None) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => {
            Some(Auth::Token { sha256: h.clone() })
        }
        (Some(_), None) => {
            errs.push(format!(
                "trigger `{name}`: token_sha256 must be 64 lowercase hex digits (the SHA-256 of the token, not the token)"
            ));
            None
        }
        (None, Some(env)) if crate::step::run::is_env_name(env) && env.starts_with("OPSBOOK_") => {
            Some(Auth::Hmac { env: env.clone() })
        }
        (None, Some(env)) => {
            errs.push(format!(
                "trigger `{name}`: hmac_secret_env `{env}` must be a variable named OPSBOOK_… (a runbook cannot pick any of the server's variables as its key)"
            ));
            None
        }
        (Some(_), Some(_)) => {
            errs.push(format!("trigger `{name}`: set token_sha256 or hmac_secret_env, not both"));
            None
        }
        (None, None) => {
            errs.push(format!(
                "trigger `{name}`: set token_sha256 or hmac_secret_env: a trigger must check its callers"
            ));
            None
        }
    };
    let event_id = match JsonPath::parse(raw.event_id.as_ref().map_or("$.id", |e| e.value.as_str())) {
        Ok(p) => Some(p),
        Err(e) => {
            errs.push(format!("trigger `{name}`: event_id: {e}"));
            None
        }
    };
    let mut mapped = BTreeMap::new();
    for (param, value) in &raw.params {
        match params.iter().find(|p| &p.name == param) {
            None => {
                let known: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
                let hint = crate::diagnostic::did_you_mean(param, &known)
                    .map(|m| format!(" (did you mean `{m}`?)"))
                    .unwrap_or_default();
                errs.push(format!("trigger `{name}`: params.{param}: no such parameter{hint}"));
                continue;
            }
            Some(p) if p.is_secret() => {
                errs.push(format!(
                    "trigger `{name}`: params.{param} is a secret: events do not carry secrets (give it a `from:`)"
                ));
                continue;
            }
            Some(_) => {}
        }
        let source = match value {
            serde_json::Value::String(s) if s.starts_with('$') => match JsonPath::parse(s) {
                Ok(p) => Source::Path(p),
                Err(e) => {
                    errs.push(format!("trigger `{name}`: params.{param}: {e}"));
                    continue;
                }
            },
            other => Source::Literal(other.clone()),
        };
        mapped.insert(param.clone(), source);
    }
    match (auth, event_id) {
        (Some(auth), Some(event_id)) if errs.is_empty() => {
            Ok(Trigger { name: name.clone(), auth, event_id, params: mapped })
        }
        _ => Err(errs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_an_event_to_parameters_and_its_id() {
        let t = Trigger {
            name: "t".into(),
            auth: Auth::Hmac { env: "K".into() },
            event_id: JsonPath::parse("$.id").unwrap(),
            params: BTreeMap::from([
                ("service".into(), Source::Path(JsonPath::parse("$.detail.service").unwrap())),
                ("region".into(), Source::Path(JsonPath::parse("$.region").unwrap())),
                ("count".into(), Source::Path(JsonPath::parse("$.detail.n").unwrap())),
                ("mode".into(), Source::Literal(json!("auto"))),
            ]),
        };
        let event = json!({ "id": "abc-1", "detail": { "service": "web", "n": 3 } });
        let inputs = t.inputs(&event);
        assert_eq!(inputs.keys().collect::<Vec<_>>(), vec!["count", "mode", "service"], "a missing path gives nothing");
        assert!(matches!(&inputs["count"], Input::Value(v) if *v == json!(3)));
        assert_eq!(t.event_id(&event).as_deref(), Some("abc-1"));
        assert_eq!(t.event_id(&json!({ "id": "" })), None);
        assert_eq!(t.event_id(&json!({ "id": 7 })).as_deref(), Some("7"));
        assert_eq!(t.event_id(&json!({ "id": { "b": 1, "a": [2] } })).as_deref(), Some(r#"{"b":1,"a":[2]}"#));
        assert_eq!(t.event_id(&json!({ "id": null })), None);
    }
}
