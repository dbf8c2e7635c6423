//! Templates in runbooks (minijinja, strict undefined).
//!
//! Inside `run` scripts every `{{ ... }}` value is written for the shell context it lands
//! in ([`crate::shell`]): one quoted word where a word goes, escaped inside `"…"` and
//! here-documents, a closed-and-reopened quote inside `'…'`. The shell reads back exactly
//! the value, and it can never inject code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior, Value};

use crate::shell;

mod derived;
mod functions;
mod tags;
mod web;

pub(crate) use tags::{close_at, tags};
pub use web::{Body, render_body, render_url};

/// What templates can see: `params`, `steps.<id>.outputs/status`, `execution.id`.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub params: serde_json::Value,
    /// Shared so that building a context per template stays cheap with many steps.
    pub steps: std::sync::Arc<BTreeMap<String, StepContext>>,
    pub execution_id: String,
    /// Dry run: steps that have not run render as `<steps.ID.outputs.KEY>` placeholders.
    pub placeholders: bool,
    /// The current target's name, in a step with `targets`.
    pub target: Option<String>,
    /// Where `params` holds secrets in the clear: what a template derives from them.
    pub secrets: Option<Secrets>,
}

/// The secret parameters of a context, and the masker that must hide whatever a
/// template makes of them (`{{ params.pw | upper }}`, `{{ params.pw[2:] }}`).
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub names: std::sync::Arc<[String]>,
    pub masker: crate::secret::Masker,
}

#[derive(Debug, Clone, Default)]
pub struct StepContext {
    pub status: String,
    pub outputs: BTreeMap<String, String>,
}

impl Context {
    /// The root of what templates see; `plans` only for shell scripts.
    fn to_value(&self, plans: Option<Vec<shell::Context>>) -> Value {
        let steps = Value::from_object(Steps(self.steps.clone()));
        let steps = if self.placeholders {
            Value::from_object(Placeholder { path: "steps".into(), known: Some(steps) })
        } else {
            steps
        };
        let mut execution = BTreeMap::new();
        execution.insert("id".to_string(), Value::from(self.execution_id.as_str()));
        let mut root = BTreeMap::new();
        root.insert("params".to_string(), json_to_value(&self.params));
        if let Some(plans) = plans {
            root.insert(PLANS.to_string(), Value::from_object(Plans(plans)));
        }
        root.insert("steps".to_string(), steps);
        root.insert("execution".to_string(), Value::from(execution));
        if let Some(t) = &self.target {
            root.insert("target".to_string(), Value::from(t.as_str()));
        }
        Value::from(root)
    }
}

/// `steps`, converted entry by entry when a template looks one up.
#[derive(Debug)]
struct Steps(std::sync::Arc<BTreeMap<String, StepContext>>);

impl minijinja::value::Object for Steps {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        let s = self.0.get(key.as_str()?)?;
        let outputs: BTreeMap<String, Value> =
            s.outputs.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
        let mut m = BTreeMap::new();
        m.insert("status".to_string(), Value::from(s.status.as_str()));
        m.insert("outputs".to_string(), Value::from(outputs));
        Some(Value::from(m))
    }

    fn enumerate(self: &std::sync::Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(self.0.keys().map(|k| Value::from(k.as_str())).collect())
    }
}

/// Stands in, during a dry run, for values only known once steps have run.
#[derive(Debug)]
struct Placeholder {
    path: String,
    /// Values that are known (the steps that did run).
    known: Option<Value>,
}

impl minijinja::value::Object for Placeholder {
    fn get_value(self: &std::sync::Arc<Self>, key: &Value) -> Option<Value> {
        let key = key.as_str()?;
        if let Some(v) = self.known.as_ref().and_then(|k| k.get_attr(key).ok()).filter(|v| !v.is_undefined()) {
            return Some(v);
        }
        let path = format!("{}.{key}", self.path);
        if path.matches('.').count() >= 3 || key == "status" {
            Some(Value::from(format!("<{path}>")))
        } else {
            Some(Value::from_object(Placeholder { path, known: None }))
        }
    }
}

fn json_to_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => Value::from(i),
            None => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json_to_value).collect::<Vec<_>>()),
        serde_json::Value::Object(o) => {
            Value::from(o.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect::<BTreeMap<_, _>>())
        }
    }
}

fn text_of(value: &Value) -> String {
    if value.is_none() || value.is_undefined() {
        String::new()
    } else if value.kind() == minijinja::value::ValueKind::Bool {
        value.is_true().to_string()
    } else if let Some(s) = value.as_str() {
        s.to_string()
    } else {
        value.to_string()
    }
}

fn base_env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
}

/// Names templates may not use: they carry the shell contexts of a render.
pub const RESERVED: &str = "__opsbook";
const PLANS: &str = "__opsbook_plans";
const FILTER: &str = "__opsbook_sh";

/// The shell context of each rewritten interpolation of one render, by number.
#[derive(Debug)]
struct Plans(Vec<shell::Context>);

impl minijinja::value::Object for Plans {}

/// A value already written for its shell context: the formatter passes it through.
#[derive(Debug)]
struct Written(String);

impl minijinja::value::Object for Written {}

fn shell_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = base_env();
        env.add_filter(FILTER, |state: &minijinja::State<'_, '_>, value: Value, n: usize| -> Result<Value, Error> {
            let plans = state.lookup(PLANS);
            let context = plans
                .as_ref()
                .and_then(|p| p.downcast_object_ref::<Plans>())
                .and_then(|p| p.0.get(n))
                .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "no shell context for this value"))?;
            // Undefined: handed on as it is, for printing to decide as it does for a bare
            // word: a missing value fails (it would be written as nothing, `rm -rf
            // "/data/{{ typo }}"`), the empty one of `{{ x if cond }}` prints nothing.
            if value.is_undefined() {
                return Ok(value);
            }
            let raw = text_of(&value);
            derived::record(&raw);
            let text = shell::escape(&raw, context).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
            Ok(Value::from_object(Written(text)))
        });
        env.set_formatter(|out, _state, value| {
            if let Some(Written(text)) = value.downcast_object_ref::<Written>() {
                out.write_str(text)?;
                return Ok(());
            }
            // (Strict undefined refused a missing value before this: this one is the
            // nothing of `{{ x if cond }}`, nothing in any place of the script.)
            if value.is_undefined() {
                return Ok(());
            }
            let raw = text_of(value);
            derived::record(&raw);
            let text =
                shell::escape(&raw, &shell::Context::Bare).map_err(|e| Error::new(ErrorKind::InvalidOperation, e))?;
            out.write_str(&text)?;
            Ok(())
        });
        env
    })
}

/// Rewrites every `{{ x }}` that is not where a bare word goes into
/// `{{ (x) | __opsbook_sh(N) }}`, N numbering its shell context. Refuses contexts that
/// cannot be made safe, and templates that use the reserved names.
fn plan_shell(source: &str) -> Result<(String, Vec<shell::Context>), String> {
    if source.contains(RESERVED) {
        return Err(format!("`{RESERVED}…` names are reserved"));
    }
    let mut out = String::with_capacity(source.len() + 64);
    let mut plans = Vec::new();
    let mut last = 0;
    for i in shell::interpolations(source) {
        if let shell::Context::Refused(why) = i.context {
            return Err(format!("template line {}: {why}", i.line));
        }
        if i.context == shell::Context::Bare || !source[..i.end].ends_with("}}") || i.end - i.start < 4 {
            continue;
        }
        let inner = &source[i.start + 2..i.end - 2];
        let control = |c: char| matches!(c, '-' | '+' | '~');
        let (left, inner) = match inner.chars().next() {
            Some(c) if control(c) => inner.split_at(c.len_utf8()),
            _ => ("", inner),
        };
        let (inner, right) = match inner.chars().last() {
            Some(c) if control(c) => inner.split_at(inner.len() - c.len_utf8()),
            _ => (inner, ""),
        };
        out.push_str(&source[last..i.start]);
        out.push_str(&format!("{{{{{left} ({inner}) | {FILTER}({}) {right}}}}}", plans.len()));
        plans.push(i.context);
        last = i.end;
    }
    out.push_str(&source[last..]);
    Ok((out, plans))
}

fn plain_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = base_env();
        env.set_formatter(|out, _state, value| {
            let text = text_of(value);
            derived::record(&text);
            out.write_str(&text)?;
            Ok(())
        });
        env
    })
}

/// [`describe`], and for an undefined value the reference that has none and why
/// (`steps.a.outputs.url`: step `a` has no output `url`; its outputs: none).
fn explain(err: &Error, source: &str, expression: bool, ctx: &Context) -> String {
    let mut text = describe(err);
    if expression {
        // An expression is one line: its line number says nothing.
        text = text.trim_end_matches(" (template line 1)").to_string();
    }
    if err.kind() != ErrorKind::UndefinedError {
        return text;
    }
    let vars = if expression {
        plain_env().compile_expression(source).map(|e| e.undeclared_variables(true))
    } else {
        plain_env().template_from_str(source).map(|t| t.undeclared_variables(true))
    };
    let mut vars: Vec<String> = vars.map(|v| v.into_iter().collect()).unwrap_or_default();
    vars.sort();
    match vars.iter().find_map(|var| missing(var, ctx)) {
        Some(why) => text.replacen("undefined value", &why, 1),
        None => text,
    }
}

/// Why `var` (a dotted path a template uses) has no value in `ctx`, if it has none.
fn missing(var: &str, ctx: &Context) -> Option<String> {
    let parts: Vec<&str> = var.split('.').collect();
    match parts.as_slice() {
        ["params", name, ..] if ctx.params.get(name).is_none() => {
            Some(format!("`params.{name}` is undefined: the parameter has no value (not given, no default)"))
        }
        ["steps", id, rest @ ..] if !ctx.steps.contains_key(*id) => {
            let path = std::iter::once(format!("steps.{id}")).chain(rest.iter().map(|p| p.to_string()));
            let path: Vec<String> = path.collect();
            Some(format!("`{}` is undefined: step `{id}` has not run", path.join(".")))
        }
        ["steps", id, "outputs", key, ..] => {
            let step = ctx.steps.get(*id)?;
            if step.outputs.contains_key(*key) {
                return None;
            }
            let known: Vec<String> = step.outputs.keys().map(|k| format!("`{k}`")).collect();
            let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
            Some(format!(
                "`steps.{id}.outputs.{key}` is undefined: step `{id}` ({}) has no output `{key}`; its outputs: {known}",
                step.status
            ))
        }
        _ => None,
    }
}

fn describe(err: &Error) -> String {
    let mut msg = match (err.kind(), err.detail()) {
        (ErrorKind::UndefinedError, None) => "undefined value".to_string(),
        // A refusal of opsbook's own (where a value cannot go) is its whole message.
        (ErrorKind::InvalidOperation, Some(detail)) => detail.to_string(),
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    };
    if let Some(line) = err.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

/// The output of a template with no tags (`{{`, `{%`, `{#`) in it, without compiling
/// it: the text, less one trailing newline, as the engine renders it. Most `run`
/// scripts have none, and compiling one costs more than running the step's shell.
fn untemplated(template: &str) -> Option<String> {
    if template.contains("{{") || template.contains("{%") || template.contains("{#") {
        return None;
    }
    // As minijinja's lexer does: a trailing `\n`, then a trailing `\r`.
    let text = template.strip_suffix('\n').unwrap_or(template);
    Some(text.strip_suffix('\r').unwrap_or(text).to_string())
}

/// Renders a shell script: every interpolated value is written for its shell context.
pub fn render_shell(template: &str, ctx: &Context) -> Result<String, String> {
    if let Some(text) = untemplated(template) {
        return Ok(text);
    }
    let (source, plans) = plan_shell(template)?;
    derived::tracked(template, ctx, |ctx| {
        let root = ctx.to_value(Some(plans.clone()));
        shell_env().render_str(&source, root).map_err(|e| explain(&e, template, false, ctx))
    })
}

/// Renders text that no shell reads (URLs, messages, environment values).
pub fn render_plain(template: &str, ctx: &Context) -> Result<String, String> {
    if let Some(text) = untemplated(template) {
        return Ok(text);
    }
    derived::tracked(template, ctx, |ctx| {
        plain_env().render_str(template, ctx.to_value(None)).map_err(|e| explain(&e, template, false, ctx))
    })
}

/// The value of the environment variable `name` of a step's `env:`: as text, or, for a
/// variable programs run as a command line (`GIT_SSH_COMMAND`, `RSYNC_RSH`…), as a line
/// of a script, each value written for the shell that reads it.
pub fn render_env(name: &str, template: &str, ctx: &Context) -> Result<String, String> {
    if crate::shell::runs_as_command_line(name) { render_shell(template, ctx) } else { render_plain(template, ctx) }
}

/// Evaluates a `when:` expression to a boolean.
pub fn eval_condition(expr: &str, ctx: &Context) -> Result<bool, String> {
    let compiled = plain_env().compile_expression(expr).map_err(|e| describe(&e))?;
    compiled.eval(ctx.to_value(None)).map(|v| v.is_true()).map_err(|e| explain(&e, expr, true, ctx))
}

/// The expression inside a string that is only `{{ expression }}`, if it is one.
fn sole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    (!inner.contains("{{") && !inner.contains("}}")).then(|| inner.trim_start_matches('-').trim_end_matches('-'))
}

/// Renders a JSON document whose strings are templates (a Lambda payload): each string
/// renders as text, except one that is only `{{ expression }}`, which takes the value's
/// own type. Keys are kept as written. Values are never spliced into JSON text.
pub fn render_json(value: &serde_json::Value, ctx: &Context) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        J::String(s) => match sole_expression(s) {
            Some(expr) => {
                let compiled = plain_env().compile_expression(expr).map_err(|e| describe(&e))?;
                let eval = |ctx: &Context| {
                    let v = compiled.eval(ctx.to_value(None)).map_err(|e| explain(&e, expr, true, ctx))?;
                    if v.is_undefined() {
                        return Err(format!("`{}` is undefined", expr.trim()));
                    }
                    serde_json::to_value(&v).map_err(|e| format!("{{{{ {} }}}} is not a JSON value: {e}", expr.trim()))
                };
                derived::tracked_json(expr, ctx, eval)?
            }
            None if s.contains("{{") || s.contains("{%") => J::String(render_plain(s, ctx)?),
            None => J::String(s.clone()),
        },
        J::Array(items) => J::Array(items.iter().map(|v| render_json(v, ctx)).collect::<Result<_, _>>()?),
        J::Object(map) => {
            J::Object(map.iter().map(|(k, v)| Ok((k.clone(), render_json(v, ctx)?))).collect::<Result<_, String>>()?)
        }
        other => other.clone(),
    })
}

/// Checks every template string of a JSON document; each problem names its path
/// (`payload.items[0].name: …`).
pub fn check_json(value: &serde_json::Value, scope: &Scope<'_>, path: &str) -> Vec<String> {
    use serde_json::Value as J;
    match value {
        J::String(s) => {
            let errs = match sole_expression(s) {
                Some(expr) => check(expr, true, scope),
                None => check(s, false, scope),
            };
            errs.into_iter().map(|e| format!("{path}: {e}")).collect()
        }
        J::Array(items) => {
            items.iter().enumerate().flat_map(|(i, v)| check_json(v, scope, &format!("{path}[{i}]"))).collect()
        }
        J::Object(map) => map.iter().flat_map(|(k, v)| check_json(v, scope, &format!("{path}.{k}"))).collect(),
        _ => Vec::new(),
    }
}

/// What a template may reference, for checks done before anything runs.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub params: &'a BTreeSet<String>,
    /// The secret ones among them.
    pub secrets: &'a BTreeSet<String>,
    /// Every step id with its position (the first, for a duplicate).
    pub steps: &'a BTreeMap<String, usize>,
    /// Steps at positions below this one have run when the template renders.
    pub visible_below: usize,
    /// `target` names the current target (a step with `targets`).
    pub target: bool,
}

/// Checks syntax and references of a template (or of an expression when `expression`).
pub fn check(source: &str, expression: bool, scope: &Scope<'_>) -> Vec<String> {
    let env = plain_env();
    let vars = if expression {
        match env.compile_expression(source) {
            Ok(e) => e.undeclared_variables(true),
            Err(e) => return vec![format!("invalid expression: {}", describe(&e))],
        }
    } else {
        match env.template_from_str(source) {
            Ok(t) => t.undeclared_variables(true),
            Err(e) => return vec![format!("invalid template: {}", describe(&e))],
        }
    };
    let mut errs = functions::unknown(source, expression, plain_env());
    let mut vars: Vec<String> = vars.into_iter().collect();
    vars.sort();
    for var in vars {
        let mut parts = var.split('.');
        let root = parts.next().unwrap_or_default();
        let second = parts.next();
        match (root, second) {
            ("params", Some(p)) if !scope.params.contains(p) => {
                let known: Vec<&str> = scope.params.iter().map(String::as_str).collect();
                let hint = crate::diagnostic::did_you_mean(p, &known)
                    .map(|m| format!(" (did you mean `params.{m}`?)"))
                    .unwrap_or_default();
                errs.push(format!("unknown parameter `params.{p}`{hint}"));
            }
            ("steps", Some(s)) if scope.steps.get(s).is_none_or(|i| *i >= scope.visible_below) => {
                if scope.steps.contains_key(s) {
                    errs.push(format!("`steps.{s}` refers to a step that has not run yet at this point"));
                } else {
                    let known: Vec<&str> = scope.steps.keys().map(String::as_str).collect();
                    let hint = crate::diagnostic::did_you_mean(s, &known)
                        .map(|m| format!(" (did you mean `steps.{m}`?)"))
                        .unwrap_or_default();
                    errs.push(format!("unknown step `steps.{s}`{hint}"));
                }
            }
            ("steps", Some(_)) => {
                if let Some(field) = parts.next()
                    && field != "outputs"
                    && field != "status"
                {
                    errs.push(format!("`{var}`: a step exposes only `outputs` and `status`"));
                }
            }
            ("execution", Some(f)) if f != "id" => errs.push(format!("`{var}`: execution exposes only `execution.id`")),
            ("params" | "steps" | "execution", _) => {}
            ("target", None) if scope.target => {}
            ("target", _) if scope.target => errs.push(format!("`{var}`: `target` is the target's name, a string")),
            ("target", _) => {
                errs.push("`target` is set only in steps with `targets` (and their rollbacks)".to_string())
            }
            (other, _) => {
                errs.push(format!("unknown variable `{other}`: templates can use params, steps and execution"))
            }
        }
    }
    errs
}

/// Whether a text may use secret parameter `name`.
pub fn mentions(text: &str, name: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let var = format!("OPSBOOK_PARAM_{}", name.to_ascii_uppercase());
    let by_var = text.match_indices(&var).any(|(i, _)| !text[i + var.len()..].starts_with(ident));
    if by_var || text.contains(&format!("params['{name}']")) || text.contains(&format!("params[\"{name}\"]")) {
        return true;
    }
    let dotted = format!("params.{name}");
    let by_name = text.match_indices(&dotted).any(|(i, _)| !text[i + dotted.len()..].starts_with(ident));
    // `params` handed on whole (`{{ params | tojson }}`) may carry any of them.
    let whole = text.match_indices("params").any(|(i, _)| {
        let before_ok = i == 0 || !text[..i].ends_with(ident);
        let after = &text[i + "params".len()..];
        before_ok && !after.starts_with(ident) && !after.starts_with('.') && !after.starts_with('[')
    });
    by_name || whole
}

#[cfg(test)]
mod tests;
