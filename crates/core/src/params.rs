//! Typed runbook parameters: their declaration and the checking of submitted values.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::diagnostic::did_you_mean;

/// The length a secret parameter's value must have at least.
pub const MIN_SECRET: u64 = 4;

/// Parameters in declaration order, with the location of each name.
#[derive(Debug, Clone, Default)]
pub struct ParamMap(pub Vec<(Spanned<String>, ParamSpec)>);

impl<'de> Deserialize<'de> for ParamMap {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ParamMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of parameter names to parameter specs")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<ParamMap, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Spanned<String>, ParamSpec>()? {
                    out.push((k, v));
                }
                Ok(ParamMap(out))
            }
        }
        de.deserialize_map(V)
    }
}

/// The declaration of one parameter.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    #[serde(rename = "type")]
    pub ty: ParamType,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Value>,
    #[serde(default)]
    pub description: Option<String>,
    /// Regular expression the whole value must match (string, secret, enum).
    #[serde(default)]
    pub pattern: Option<String>,
    /// Allowed values of an `enum`.
    #[serde(default)]
    pub values: Vec<String>,
    #[serde(default, deserialize_with = "given")]
    pub min: Option<f64>,
    #[serde(default, deserialize_with = "given")]
    pub max: Option<f64>,
    #[serde(default, deserialize_with = "given")]
    pub min_length: Option<u64>,
    #[serde(default, deserialize_with = "given")]
    pub max_length: Option<u64>,
    /// A secret's value read from AWS when the execution starts (never stored):
    /// `aws-secretsmanager:NAME_OR_ARN[#json_key]` or `aws-ssm-parameter:/path`.
    #[serde(default)]
    pub from: Option<String>,
}

/// A bound that is written must have a value: `min:` left empty is a mistake, not "no
/// minimum" (leave the key out for that).
fn given<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom("the bound is empty: give a number, or leave the key out")),
    }
}

/// Where a secret parameter's value is read from when an execution starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A Secrets Manager secret (name or ARN), whole or one key of its JSON.
    SecretsManager { id: String, key: Option<String> },
    /// A Parameter Store parameter, decrypted.
    SsmParameter { name: String },
}

impl SecretSource {
    pub fn parse(text: &str) -> Result<SecretSource, String> {
        let usage = "expected aws-secretsmanager:NAME_OR_ARN[#json_key] or aws-ssm-parameter:/path";
        let (scheme, rest) = text.split_once(':').ok_or_else(|| format!("`from: {text}`: {usage}"))?;
        match scheme {
            "aws-secretsmanager" => {
                let (id, key) = match rest.rsplit_once('#') {
                    Some((id, key)) if !key.is_empty() => (id, Some(key.to_string())),
                    Some(_) => return Err(format!("`from: {text}`: the JSON key after `#` is empty")),
                    None => (rest, None),
                };
                if id.is_empty() {
                    return Err(format!("`from: {text}`: name the secret"));
                }
                Ok(SecretSource::SecretsManager { id: id.to_string(), key })
            }
            "aws-ssm-parameter" if rest.is_empty() => Err(format!("`from: {text}`: name the parameter")),
            "aws-ssm-parameter" => Ok(SecretSource::SsmParameter { name: rest.to_string() }),
            other => Err(format!("`from: {text}`: unknown source `{other}`; {usage}")),
        }
    }

    /// The region an ARN names, if the source is given by ARN.
    pub fn arn_region(&self) -> Option<&str> {
        let id = match self {
            SecretSource::SecretsManager { id, .. } => id,
            SecretSource::SsmParameter { name } => name,
        };
        id.strip_prefix("arn:").and_then(|r| r.split(':').nth(2)).filter(|r| !r.is_empty())
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::SecretsManager { id, key: Some(k) } => write!(f, "aws-secretsmanager:{id}#{k}"),
            SecretSource::SecretsManager { id, key: None } => write!(f, "aws-secretsmanager:{id}"),
            SecretSource::SsmParameter { name } => write!(f, "aws-ssm-parameter:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Enum,
    Secret,
}

impl ParamType {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Enum => "enum",
            ParamType::Secret => "secret",
        }
    }

    /// The type's name after `a` or `an` (`an integer`, `a string`).
    fn with_article(self) -> String {
        let name = self.as_str();
        let article = if name.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
        format!("{article} {name}")
    }

    fn is_textual(self) -> bool {
        matches!(self, ParamType::String | ParamType::Secret | ParamType::Enum)
    }
}

/// A checked parameter declaration.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub spec: ParamSpec,
    pub pattern: Option<regex::Regex>,
}

impl Param {
    pub fn is_secret(&self) -> bool {
        self.spec.ty == ParamType::Secret
    }

    /// Where the value comes from when none is given (a secret's `from:`).
    pub fn source(&self) -> Option<SecretSource> {
        self.spec.from.as_deref().and_then(|f| SecretSource::parse(f).ok())
    }

    /// Checks the declaration itself; returns the problems found.
    pub fn check_spec(name: &str, spec: &ParamSpec) -> Result<Param, Vec<String>> {
        let mut errs = Vec::new();
        let ty = spec.ty;
        if !is_param_name(name) {
            errs.push(format!(
                "invalid parameter name `{name}`: use lowercase letters, digits and _ (^[a-z_][a-z0-9_]*$)"
            ));
        }
        let pattern = match &spec.pattern {
            Some(p) if ty.is_textual() => match regex::Regex::new(&format!("^(?:{p})$")) {
                Ok(re) => Some(re),
                Err(e) => {
                    errs.push(format!("parameter `{name}`: invalid pattern: {}", first_line(&e.to_string())));
                    None
                }
            },
            Some(_) => {
                errs.push(format!("parameter `{name}`: `pattern` applies only to string, secret and enum parameters"));
                None
            }
            None => None,
        };
        if ty == ParamType::Enum && spec.values.is_empty() {
            errs.push(format!("parameter `{name}`: an enum needs a non-empty `values` list"));
        }
        if ty != ParamType::Enum && !spec.values.is_empty() {
            errs.push(format!("parameter `{name}`: `values` applies only to enum parameters"));
        }
        let numeric = matches!(ty, ParamType::Integer | ParamType::Number);
        if !numeric && (spec.min.is_some() || spec.max.is_some()) {
            errs.push(format!("parameter `{name}`: `min`/`max` apply only to integer and number parameters"));
        }
        if ty == ParamType::Integer {
            for (bound, v) in [("min", spec.min), ("max", spec.max)] {
                if let Some(v) = v.filter(|v| v.fract() != 0.0 || !v.is_finite()) {
                    errs.push(format!(
                        "parameter `{name}`: {bound} {v} is not a whole number (the parameter is an integer)"
                    ));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (spec.min, spec.max)
            && lo > hi
        {
            errs.push(format!("parameter `{name}`: min {lo} is greater than max {hi}"));
        }
        let lengths = matches!(ty, ParamType::String | ParamType::Secret);
        if !lengths && (spec.min_length.is_some() || spec.max_length.is_some()) {
            errs.push(format!(
                "parameter `{name}`: `min_length`/`max_length` apply only to string and secret parameters"
            ));
        }
        if let (Some(lo), Some(hi)) = (spec.min_length, spec.max_length)
            && lo > hi
        {
            errs.push(format!("parameter `{name}`: min_length {lo} is greater than max_length {hi}"));
        }
        if let Some(hi) = spec.max_length.filter(|&hi| ty == ParamType::Secret && hi < MIN_SECRET) {
            errs.push(format!(
                "parameter `{name}`: max_length {hi} leaves no value possible: a secret has at least {MIN_SECRET} characters"
            ));
        }
        if spec.required && spec.default.is_some() {
            errs.push(format!("parameter `{name}`: a required parameter cannot have a default"));
        }
        if ty == ParamType::Secret && spec.default.is_some() {
            errs.push(format!(
                "parameter `{name}`: a secret cannot have a default (never write secrets into a runbook)"
            ));
        }
        if let Some(from) = &spec.from {
            if ty != ParamType::Secret {
                errs.push(format!("parameter `{name}`: `from` applies only to secret parameters"));
            } else if let Err(e) = SecretSource::parse(from) {
                errs.push(format!("parameter `{name}`: {e}"));
            }
        }
        let param = Param { name: name.to_string(), spec: spec.clone(), pattern };
        if errs.is_empty()
            && let Some(d) = &spec.default
            && let Err(e) = param.coerce(&Input::Value(d.clone()))
        {
            errs.push(format!("parameter `{name}`: invalid default: {e}"));
        }
        if errs.is_empty() { Ok(param) } else { Err(errs) }
    }

    /// Converts one submitted value to its typed form and checks every constraint.
    /// Errors never include a secret's value.
    pub fn coerce(&self, input: &Input) -> Result<Value, String> {
        let spec = &self.spec;
        let secret = self.is_secret();
        // A JSON number or boolean is shown as it was given, not as text (`5`, not `"5"`).
        let bare = matches!(input, Input::Value(Value::Number(_) | Value::Bool(_)));
        let shown = |v: &str| {
            if secret {
                "the value".into()
            } else if bare {
                v.to_string()
            } else {
                format!("{v:?}")
            }
        };
        let text = match input {
            Input::Text(s) => Some(s.clone()),
            Input::Value(Value::String(s)) => Some(s.clone()),
            Input::Value(Value::Number(n)) => Some(n.to_string()),
            Input::Value(Value::Bool(b)) => Some(b.to_string()),
            Input::Value(Value::Null) => None,
            Input::Value(_) => {
                return Err(format!("expected {} but got a list or mapping", spec.ty.with_article()));
            }
        };
        let Some(text) = text else {
            return Err(format!("expected {} but got null", spec.ty.with_article()));
        };
        if text.contains('\0') {
            return Err("contains a NUL byte".to_string());
        }
        let value = match spec.ty {
            ParamType::String | ParamType::Secret => {
                let len = text.chars().count() as u64;
                // An empty secret is never one (an unset variable, an empty file): refused
                // rather than masked everywhere as nothing.
                if secret && text.trim().is_empty() {
                    return Err("is empty: a secret needs a value".to_string());
                }
                // Masked wherever it shows, a shorter secret would hide ordinary text (every
                // `ab` of a log) and so tell what it is.
                let shown = text.trim().chars().count() as u64;
                if secret && shown < MIN_SECRET {
                    return Err(format!(
                        "is {shown} character{} long{}: a secret needs at least {MIN_SECRET}, since output is masked \
                         wherever the secret shows and a shorter one would hide ordinary text",
                        if shown == 1 { "" } else { "s" },
                        if shown < len { " without the spaces around it" } else { "" }
                    ));
                }
                if let Some(min) = spec.min_length
                    && len < min
                {
                    return Err(format!("is {len} characters long, shorter than the minimum {min}"));
                }
                if let Some(max) = spec.max_length
                    && len > max
                {
                    return Err(format!("is {len} characters long, longer than the maximum {max}"));
                }
                Value::String(text)
            }
            ParamType::Enum => {
                if !spec.values.contains(&text) {
                    let values: Vec<&str> = spec.values.iter().map(String::as_str).collect();
                    let hint = crate::diagnostic::did_you_mean(&text, &values)
                        .map(|m| format!(" (did you mean `{m}`?)"))
                        .unwrap_or_default();
                    return Err(format!("{} is not one of: {}{hint}", shown(&text), spec.values.join(", ")));
                }
                Value::String(text)
            }
            ParamType::Integer => {
                let n: i64 = text.trim().parse().map_err(|_| {
                    if crate::shell::is_integer(text.trim()) {
                        format!(
                            "{} is out of range: an integer is from -9223372036854775808 to 9223372036854775807",
                            shown(&text)
                        )
                    } else {
                        format!("{} is not an integer", shown(&text))
                    }
                })?;
                self.check_range(n as f64)?;
                Value::from(n)
            }
            // A whole number stays one (`1`, not `1.0`, in a script).
            ParamType::Number if text.trim().parse::<i64>().is_ok() => {
                let n: i64 = text.trim().parse().unwrap_or_default();
                self.check_range(n as f64)?;
                Value::from(n)
            }
            ParamType::Number => {
                let n: f64 = text.trim().parse().map_err(|_| format!("{} is not a number", shown(&text)))?;
                if !n.is_finite() {
                    return Err(format!("{} is not a finite number", shown(&text)));
                }
                self.check_range(n)?;
                serde_json::Number::from_f64(n).map(Value::Number).ok_or("is not a number")?
            }
            ParamType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Value::Bool(true),
                "false" | "no" | "off" | "0" => Value::Bool(false),
                _ => {
                    return Err(format!("{} is not a boolean (use true or false)", shown(&text)));
                }
            },
        };
        if let (Some(re), Value::String(s)) = (&self.pattern, &value)
            && !re.is_match(s)
        {
            let pat = spec.pattern.as_deref().unwrap_or_default();
            return Err(format!("{} does not match the pattern {pat}", shown(s)));
        }
        Ok(value)
    }

    fn check_range(&self, n: f64) -> Result<(), String> {
        if let Some(min) = self.spec.min
            && n < min
        {
            return Err(format!("{n} is less than the minimum {min}"));
        }
        if let Some(max) = self.spec.max
            && n > max
        {
            return Err(format!("{n} is greater than the maximum {max}"));
        }
        Ok(())
    }
}

fn first_line(s: &str) -> String {
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s).trim().to_string()
}

pub fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_lowercase())
        && chars.all(|c| c == '_' || c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.len() <= 64
}

/// A value as submitted: text from `-p key=value`, or a typed value from a params file or API.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Text(String),
    Value(Value),
}

/// One problem with a submitted parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub param: String,
    pub message: String,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parameter `{}`: {}", self.param, self.message)
    }
}

/// Checked parameter values, ready for templates.
#[derive(Clone, Default, PartialEq)]
pub struct ParamValues {
    pub values: BTreeMap<String, Value>,
    pub secret_names: BTreeSet<String>,
}

impl fmt::Debug for ParamValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.masked().as_object().into_iter().flatten()).finish()
    }
}

pub const MASK: &str = "***";

impl ParamValues {
    /// The values as JSON with every secret replaced by `***`.
    pub fn masked(&self) -> Value {
        let map = self
            .values
            .iter()
            .map(|(k, v)| {
                let v = if self.secret_names.contains(k) && !v.is_null() { Value::from(MASK) } else { v.clone() };
                (k.clone(), v)
            })
            .collect();
        Value::Object(map)
    }

    /// The secret values that must be masked wherever text is shown or stored.
    pub fn secret_values(&self) -> Vec<String> {
        self.secret_names
            .iter()
            .filter_map(|n| self.values.get(n).and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Values rendered as text, for `OPSBOOK_PARAM_<NAME>` environment variables.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        self.values
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (format!("OPSBOOK_PARAM_{}", k.to_ascii_uppercase()), text)
            })
            .collect()
    }
}

/// Checks every submitted value at once. All problems are reported together;
/// nothing is accepted unless everything is valid.
pub fn check_values(params: &[Param], inputs: &BTreeMap<String, Input>) -> Result<ParamValues, Vec<ParamError>> {
    let mut errors = Vec::new();
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    for key in inputs.keys() {
        if !names.contains(&key.as_str()) {
            let hint = did_you_mean(key, &names).map(|m| format!(" (did you mean `{m}`?)")).unwrap_or_default();
            let known = if names.is_empty() {
                "this runbook takes no parameters".to_string()
            } else {
                format!("known: {}", names.join(", "))
            };
            errors.push(ParamError { param: key.clone(), message: format!("unknown parameter{hint}; {known}") });
        }
    }
    let mut out = ParamValues::default();
    for p in params {
        if p.is_secret() {
            out.secret_names.insert(p.name.clone());
        }
        let value = match inputs.get(&p.name) {
            Some(input) => match p.coerce(input) {
                Ok(v) => v,
                Err(message) => {
                    errors.push(ParamError { param: p.name.clone(), message });
                    continue;
                }
            },
            None if p.spec.required && p.spec.from.is_none() => {
                errors.push(ParamError { param: p.name.clone(), message: "is required".into() });
                continue;
            }
            None => match &p.spec.default {
                Some(d) => p.coerce(&Input::Value(d.clone())).unwrap_or(Value::Null),
                None => Value::Null,
            },
        };
        out.values.insert(p.name.clone(), value);
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

#[cfg(test)]
mod tests;
