//! Values written into what an `http` step sends, so that a value stays a value whatever
//! it holds: in the URL each is percent-encoded for the part it lands in (path, query,
//! fragment); in a JSON body it is JSON-escaped inside a string and a JSON value
//! elsewhere; in a form body it is form-encoded.
//!
//! The template renders first with a marker in place of each value; where each marker
//! landed is then read from the rendered text (its `{% if %}` and `{% for %}` already
//! done), and the value written there for that place.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::OnceLock;

use minijinja::{Environment, Value};

use super::{Context, derived, explain, text_of, untemplated};

/// A value's marker: `OPEN`, its number, `CLOSE` (noncharacters, which no runbook holds).
const OPEN: char = '\u{FDD0}';
const CLOSE: char = '\u{FDD1}';

thread_local! {
    /// The values of the render under way, by marker number.
    static HELD: RefCell<Vec<Value>> = const { RefCell::new(Vec::new()) };
}

/// What a request's body is, which says how a value is written into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// JSON: escaped inside a string, a JSON value elsewhere.
    Json,
    /// `application/x-www-form-urlencoded`: form-encoded.
    Form,
    /// Anything else: as it is.
    Text,
}

impl Body {
    /// The body's kind from its `Content-Type` (any JSON type, `…+json` included), or,
    /// without one, from the template: a body that begins with `{` or `[` is JSON.
    pub fn of(content_type: Option<&str>, template: &str) -> Body {
        match content_type.map(|t| t.to_ascii_lowercase()) {
            Some(t) if t.contains("json") => Body::Json,
            Some(t) if t.contains("application/x-www-form-urlencoded") => Body::Form,
            Some(_) => Body::Text,
            None if starts_as_json(template) => Body::Json,
            None => Body::Text,
        }
    }
}

/// Whether a template's text begins with `{` or `[` of its own, past spaces and `{% %}`
/// and `{# #}` tags (`{{ x }}` first: what it writes is not known).
fn starts_as_json(template: &str) -> bool {
    let mut rest = template.trim_start();
    loop {
        let close = match rest.get(..2) {
            Some("{%") => "%}",
            Some("{#") => "#}",
            _ => break,
        };
        match rest[2..].find(close) {
            Some(at) => rest = rest[2 + at + 2..].trim_start(),
            None => return false,
        }
    }
    !rest.starts_with("{{") && rest.starts_with(['{', '['])
}

/// Renders a request's URL: each value percent-encoded for the part it lands in. A value
/// before the path (a base URL, `{{ params.base }}/health`; a host, a port) is written
/// as it is; `| safe` writes any value as it is.
pub fn render_url(template: &str, ctx: &Context) -> Result<String, String> {
    render(template, ctx, write_url)
}

/// Renders a request's body as `kind` says.
pub fn render_body(template: &str, kind: Body, ctx: &Context) -> Result<String, String> {
    match kind {
        Body::Json => render(template, ctx, write_json),
        Body::Form => render(template, ctx, write_form),
        Body::Text => super::render_plain(template, ctx),
    }
}

fn marking_env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = super::base_env();
        env.set_formatter(|out, _state, value| {
            derived::record(&text_of(value));
            let n = HELD.with(|h| {
                let mut held = h.borrow_mut();
                held.push(value.clone());
                held.len() - 1
            });
            write!(out, "{OPEN}{n}{CLOSE}")?;
            Ok(())
        });
        env
    })
}

/// A piece of the rendered text: text of the template, or a value.
enum Piece<'a> {
    Text(&'a str),
    Value(Value),
}

fn render(template: &str, ctx: &Context, write: fn(&[Piece<'_>]) -> Result<String, String>) -> Result<String, String> {
    if let Some(text) = untemplated(template) {
        return Ok(text);
    }
    if template.contains([OPEN, CLOSE]) {
        return Err("the characters U+FDD0 and U+FDD1 are reserved".into());
    }
    derived::tracked(template, ctx, |ctx| {
        HELD.with(|h| h.borrow_mut().clear());
        let marked =
            marking_env().render_str(template, ctx.to_value(None)).map_err(|e| explain(&e, template, false, ctx));
        let values = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
        write(&pieces(&marked?, values)?)
    })
}

/// The rendered text cut at its markers.
fn pieces(marked: &str, values: Vec<Value>) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = marked;
    while let Some(open) = rest.find(OPEN) {
        out.push(Piece::Text(&rest[..open]));
        let after = &rest[open + OPEN.len_utf8()..];
        let close = after.find(CLOSE).ok_or("a value's marker is cut")?;
        let n: usize =
            after[..close].parse().map_err(|_| "a value holds another's marker ({% set %} … {% endset %})")?;
        out.push(Piece::Value(values.get(n).cloned().ok_or("a value's marker is unknown")?));
        rest = &after[close + CLOSE.len_utf8()..];
    }
    out.push(Piece::Text(rest));
    Ok(out)
}

/// The text of a value, refusing one that holds a marker (a `{% set %}` block's capture).
fn text(value: &Value) -> Result<String, String> {
    let text = text_of(value);
    if text.contains([OPEN, CLOSE]) {
        return Err("a value made of other values' output ({% set x %} … {% endset %}) cannot be placed in a \
             request: build it with an expression ({% set x = a ~ b %})"
            .into());
    }
    Ok(text)
}

fn write_json(pieces: &[Piece<'_>]) -> Result<String, String> {
    let mut out = String::new();
    let (mut in_string, mut escaped) = (false, false);
    for piece in pieces {
        match piece {
            Piece::Text(t) => {
                for c in t.chars() {
                    match c {
                        _ if escaped => escaped = false,
                        '\\' if in_string => escaped = true,
                        '"' => in_string = !in_string,
                        _ => {}
                    }
                }
                out.push_str(t);
            }
            Piece::Value(v) if v.is_safe() => out.push_str(&text(v)?),
            Piece::Value(_) if escaped => {
                return Err("a backslash right before {{ … }} in a JSON string would escape the value's first \
                     character: remove it"
                    .into());
            }
            Piece::Value(v) if in_string => {
                let json = serde_json::to_string(&text(v)?).map_err(|e| e.to_string())?;
                out.push_str(&json[1..json.len() - 1]);
            }
            // Text that is a JSON number, `true`, `false` or `null` goes in as that value;
            // any other text (an object's text too: `{"$ne": null}` from a parameter
            // would be an operator) as a JSON string.
            Piece::Value(v) if v.as_str().is_some_and(is_json_scalar) => out.push_str(&text(v)?),
            Piece::Value(v) => {
                text(v)?;
                let json = serde_json::to_string(v).map_err(|e| format!("a value is no JSON value: {e}"))?;
                out.push_str(&json);
            }
        }
    }
    Ok(out)
}

/// Whether `text` is a JSON number, `true`, `false` or `null`.
fn is_json_scalar(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_number() || v.is_boolean() || v.is_null())
}

fn write_form(pieces: &[Piece<'_>]) -> Result<String, String> {
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Value(v) if v.is_safe() => out.push_str(&text(v)?),
            Piece::Value(v) => {
                for word in text(v)?.split(' ').enumerate() {
                    if word.0 > 0 {
                        out.push('+');
                    }
                    encode(&mut out, word.1);
                }
            }
        }
    }
    Ok(out)
}

/// The part of a URL the text so far is in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    /// Before the path: the scheme and authority, or a value that is the base URL.
    Base,
    Authority,
    Path,
    Query,
    Fragment,
}

fn write_url(pieces: &[Piece<'_>]) -> Result<String, String> {
    let mut out = String::new();
    let mut part = Part::Base;
    for (i, piece) in pieces.iter().enumerate() {
        let next = match pieces.get(i + 1) {
            Some(Piece::Text(t)) => *t,
            _ => "",
        };
        // Whether an `@` comes before the path, past later values: the user information.
        let userinfo = pieces[i + 1..]
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => t.find(['@', '/', '?', '#']).map(|at| t[at..].starts_with('@')),
                Piece::Value(_) => None,
            })
            .next()
            .unwrap_or(false);
        match piece {
            Piece::Text(t) => {
                out.push_str(t);
                part = advance(part, t);
            }
            Piece::Value(v) if v.is_safe() => {
                let value = text(v)?;
                out.push_str(&value);
                part = advance(part, &value);
            }
            Piece::Value(v) => {
                let value = text(v)?;
                match part {
                    // The base URL itself: the part it ends in is where what follows is.
                    Part::Base => {
                        out.push_str(&value);
                        part = advance(part, &value);
                    }
                    // Before `@`: the user or password.
                    Part::Authority if userinfo => encode(&mut out, &value),
                    Part::Authority => {
                        if value.contains(['/', '?', '#', '@', '\\'])
                            || value.chars().any(|c| c.is_whitespace() || c.is_control())
                        {
                            return Err(format!(
                                "a value in the URL's host or port may not hold `/`, `?`, `#`, `@`, `\\` or spaces: {}",
                                crate::terminal::plain_text(&value)
                            ));
                        }
                        out.push_str(&value);
                    }
                    Part::Path => {
                        let whole =
                            out.ends_with('/') && next.chars().next().is_none_or(|c| matches!(c, '/' | '?' | '#'));
                        if whole && matches!(value.as_str(), "." | "..") {
                            return Err(format!(
                                "a value `{value}` as a whole segment of the URL's path would move up the path"
                            ));
                        }
                        encode(&mut out, &value);
                    }
                    Part::Query | Part::Fragment => encode(&mut out, &value),
                }
            }
        }
    }
    Ok(out)
}

/// The part of a URL after `text`, from `part`.
fn advance(mut part: Part, text: &str) -> Part {
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if part == Part::Base && rest.starts_with("://") {
            part = Part::Authority;
            rest = &rest[3..];
            continue;
        }
        part = match (part, c) {
            (Part::Base | Part::Authority, '/') => Part::Path,
            (Part::Base | Part::Authority | Part::Path, '?') => Part::Query,
            (Part::Base | Part::Authority | Part::Path | Part::Query, '#') => Part::Fragment,
            (part, _) => part,
        };
        rest = &rest[c.len_utf8()..];
    }
    part
}

/// Percent-encodes `value` onto `out`: all but the unreserved characters, which is valid
/// in every part of a URL, and the form in which the masker knows a secret.
fn encode(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(params: serde_json::Value) -> Context {
        Context { params, ..Context::default() }
    }

    #[test]
    fn json_bodies_keep_every_value_a_value() {
        let c =
            ctx(serde_json::json!({"v": "1\", \"env\": \"prod", "n": 3, "s": "3", "list": ["a", "b"], "nl": "a\nb\\"}));
        let body = r#"{"version": "v{{ params.v }}", "env": "staging", "replicas": {{ params.n }}, "s": {{ params.s }}, "l": {{ params.list }}, "m": "{{ params.nl }}"}"#;
        let out = render_body(body, Body::Json, &c).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["version"], "v1\", \"env\": \"prod");
        assert_eq!(parsed["env"], "staging");
        assert_eq!(parsed["replicas"], 3);
        assert_eq!(parsed["s"], 3, "text that is a JSON value goes in as it");
        assert_eq!(parsed["l"], serde_json::json!(["a", "b"]));
        assert_eq!(parsed["m"], "a\nb\\");
        // Loops and conditions are done before values are placed.
        let looped =
            r#"[{% for x in params.list %}"{{ x }}\{{ params.v }}"{% if not loop.last %}, {% endif %}{% endfor %}]"#;
        let err = render_body(looped, Body::Json, &c).unwrap_err();
        assert!(err.contains("backslash right before"), "{err}");
        let looped =
            r#"[{% for x in params.list %}"{{ x }}-{{ params.v }}"{% if not loop.last %}, {% endif %}{% endfor %}]"#;
        let parsed: serde_json::Value = serde_json::from_str(&render_body(looped, Body::Json, &c).unwrap()).unwrap();
        assert_eq!(parsed[1], "b-1\", \"env\": \"prod");
        // `| safe` writes a value as it is.
        let raw = render_body(r#"{"a": {{ params.s | safe }}}"#, Body::Json, &c).unwrap();
        assert_eq!(raw, r#"{"a": 3}"#);
        assert!(render_body("[\u{FDD0}{{ params.s }}]", Body::Json, &c).unwrap_err().contains("reserved"));
    }

    #[test]
    fn urls_encode_values_for_their_part() {
        let c = ctx(
            serde_json::json!({"base": "http://127.0.0.1:8080/api", "id": "a/b?c#d e", "q": "x&admin=1+2#", "up": ".."}),
        );
        let url = "{{ params.base }}/items/{{ params.id }}?name={{ params.q }}&id={{ params.id }}#{{ params.q }}";
        assert_eq!(
            render_url(url, &c).unwrap(),
            "http://127.0.0.1:8080/api/items/a%2Fb%3Fc%23d%20e?name=x%26admin%3D1%2B2%23&id=a%2Fb%3Fc%23d%20e#x%26admin%3D1%2B2%23"
        );
        assert_eq!(
            render_url("https://{{ params.id }}.example", &ctx(serde_json::json!({"id": "eu"}))).unwrap(),
            "https://eu.example"
        );
        let err = render_url("http://h/files/{{ params.up }}/etc", &c).unwrap_err();
        assert!(err.contains("move up the path"), "{err}");
        assert_eq!(render_url("http://h/v{{ params.up }}", &c).unwrap(), "http://h/v..");
        assert_eq!(render_url("http://h/{{ params.id | safe }}", &c).unwrap(), "http://h/a/b?c#d e");
        // A base URL's own query: what follows it is in the query.
        let c = ctx(
            serde_json::json!({"base": "http://h/api?key=1", "v": "x&admin=1", "pw": "p@ss/w#rd", "host": "evil.example/x?"}),
        );
        assert_eq!(
            render_url("{{ params.base }}&name={{ params.v }}", &c).unwrap(),
            "http://h/api?key=1&name=x%26admin%3D1"
        );
        // A password before `@` is encoded; a host may not change the URL's parts.
        assert_eq!(render_url("http://admin:{{ params.pw }}@h/x", &c).unwrap(), "http://admin:p%40ss%2Fw%23rd@h/x");
        let both = "http://{{ params.pw }}:{{ params.pw }}@h/x";
        assert_eq!(render_url(both, &c).unwrap(), "http://p%40ss%2Fw%23rd:p%40ss%2Fw%23rd@h/x");
        let err = render_url("https://{{ params.host }}/health", &c).unwrap_err();
        assert!(err.contains("host or port may not hold"), "{err}");
    }

    #[test]
    fn forms_encode_values_and_bodies_are_told_apart() {
        let c = ctx(serde_json::json!({"t": "a b&c=d"}));
        assert_eq!(render_body("text={{ params.t }}&x=1", Body::Form, &c).unwrap(), "text=a+b%26c%3Dd&x=1");
        assert_eq!(render_body("note: {{ params.t }}", Body::Text, &c).unwrap(), "note: a b&c=d");
        assert_eq!(Body::of(Some("application/vnd.api+json; charset=utf-8"), "x"), Body::Json);
        assert_eq!(Body::of(Some("Application/X-WWW-Form-Urlencoded"), "{"), Body::Form);
        assert_eq!(Body::of(Some("text/plain"), "{"), Body::Text);
        assert_eq!(Body::of(None, "  {\"a\": 1}"), Body::Json);
        assert_eq!(Body::of(None, "a=1"), Body::Text);
        assert_eq!(Body::of(None, "{{ params.t }}"), Body::Text, "a value's braces are no JSON's");
        assert_eq!(Body::of(None, "{# note #}\n{% if true %}[1]{% endif %}"), Body::Json);
        // Text that is a JSON scalar goes in as it; any other text (an object's text, a
        // JSON string's own text) as a string.
        let c = ctx(
            serde_json::json!({"doc": "{\"a\": [1, 2]}", "half": "1, \"admin\": true", "yes": "true", "q": "\"x\""}),
        );
        let body =
            "{\"d\": {{ params.doc }}, \"h\": {{ params.half }}, \"y\": {{ params.yes }}, \"q\": {{ params.q }}}";
        let parsed: serde_json::Value = serde_json::from_str(&render_body(body, Body::Json, &c).unwrap()).unwrap();
        let expected = serde_json::json!({"d": "{\"a\": [1, 2]}", "h": "1, \"admin\": true", "y": true, "q": "\"x\""});
        assert_eq!(parsed, expected);
    }
}
