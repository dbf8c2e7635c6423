//! What a template makes of secret parameters.
//!
//! A secret passed through a filter (`{{ params.pw | upper }}`, `{{ params.pw[2:] }}`,
//! `{% set x = params.pw | replace("a", "b") %}{{ x }}`) is no longer the value the
//! masker looks for. So a template that names a secret is rendered a second time, with
//! every secret changed in every character: each value it writes that differs between
//! the two renders came from a secret, and is masked from then on (in the step's output,
//! its logs, its outputs and the errors it reports).

use std::cell::RefCell;

use super::{Context, Secrets, mentions};

thread_local! {
    /// The text of each value written by the render under way, while one is recorded.
    static WRITTEN: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Called by the formatters with each value a template writes, as text.
pub(super) fn record(text: &str) {
    WRITTEN.with(|w| {
        if let Some(list) = w.borrow_mut().as_mut() {
            list.push(text.to_string());
        }
    });
}

/// Runs `f` and returns what it wrote through [`record`].
fn recording<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let before = WRITTEN.with(|w| w.replace(Some(Vec::new())));
    let out = f();
    let written = WRITTEN.with(|w| w.replace(before)).unwrap_or_default();
    (out, written)
}

/// Renders with `render`, and masks what the template derived from the secrets it names.
pub(super) fn tracked(
    template: &str,
    ctx: &Context,
    render: impl Fn(&Context) -> Result<String, String>,
) -> Result<String, String> {
    let Some((secrets, shortest)) = named(template, ctx) else {
        let out = render(ctx)?;
        masked_outputs(template, ctx, &out, &render)?;
        return Ok(out);
    };
    let (out, real) = recording(|| render(ctx));
    let out = out?;
    masked_outputs(template, ctx, &out, &render)?;
    let (_, other) = recording(|| render(&changed(ctx, secrets)));
    secrets.masker.add(derived(real, &other, shortest)?);
    Ok(out)
}

/// An earlier step's output that held a secret is stored masked: a template (rendered
/// for a step, with the secrets in the clear) that writes one out would hand the step
/// `***` for the value. Found by rendering again with the masks changed.
fn masked_outputs(
    template: &str,
    ctx: &Context,
    out: &str,
    render: &impl Fn(&Context) -> Result<String, String>,
) -> Result<(), String> {
    let mask = crate::params::MASK;
    let masked = ctx.steps.values().any(|s| s.outputs.values().any(|v| v.contains(mask)));
    if ctx.secrets.is_none() || !template.contains("steps") || !masked {
        return Ok(());
    }
    let mut steps = (*ctx.steps).clone();
    for v in steps.values_mut().flat_map(|s| s.outputs.values_mut()) {
        *v = v.replace(mask, "\u{1}");
    }
    let other = Context { steps: std::sync::Arc::new(steps), ..ctx.clone() };
    match render(&other) {
        Ok(again) if again != out => Err("an earlier step's output it names held a secret and is stored masked \
             (`***`), so the step would get `***`: hand the secret on from its parameter ({{ params.NAME }}) instead"
            .to_string()),
        _ => Ok(()),
    }
}

/// [`tracked`] for an expression that gives a JSON value (a Lambda payload's
/// `{{ expression }}`): its strings and numbers that differ are masked.
pub(super) fn tracked_json(
    expr: &str,
    ctx: &Context,
    eval: impl Fn(&Context) -> Result<serde_json::Value, String>,
) -> Result<serde_json::Value, String> {
    let Some((secrets, shortest)) = named(expr, ctx) else {
        return eval(ctx);
    };
    let real = eval(ctx)?;
    let (mut mine, mut other) = (Vec::new(), Vec::new());
    leaves(&real, &mut mine);
    if let Ok(v) = eval(&changed(ctx, secrets)) {
        leaves(&v, &mut other);
    }
    secrets.masker.add(derived(mine, &other, shortest)?);
    Ok(real)
}

/// The context's secrets, when `template` names any, and the length of the shortest
/// of those it names.
fn named<'c>(template: &str, ctx: &'c Context) -> Option<(&'c Secrets, usize)> {
    let secrets = ctx.secrets.as_ref()?;
    let shortest = (secrets.names.iter())
        .filter(|name| mentions(template, name))
        .filter_map(|name| ctx.params.get(name.as_str()))
        .filter_map(|v| match v {
            serde_json::Value::String(s) => Some(s.chars().count()),
            serde_json::Value::Number(n) => Some(n.to_string().len()),
            _ => None,
        })
        .min()?;
    Some((secrets, shortest))
}

/// The context with every secret changed in every character it can be (letters and
/// digits to the next, anything else kept unless nothing else is in the value).
fn changed(ctx: &Context, secrets: &Secrets) -> Context {
    let mut other = Context { secrets: None, ..ctx.clone() };
    if let serde_json::Value::Object(params) = &mut other.params {
        for name in secrets.names.iter() {
            let Some(value) = params.get_mut(name.as_str()) else { continue };
            match value {
                serde_json::Value::String(s) => *s = change(s),
                serde_json::Value::Number(n) => {
                    if let Ok(changed) = change(&n.to_string()).parse() {
                        *n = changed;
                    }
                }
                _ => {}
            }
        }
    }
    other
}

fn change(text: &str) -> String {
    let next = |c: char| match c {
        'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        c if !c.is_ascii() && c.is_alphanumeric() => 'x',
        c => c,
    };
    let out: String = text.chars().map(next).collect();
    if out == text { text.chars().map(|c| if c == 'x' { 'y' } else { 'x' }).collect() } else { out }
}

/// What was written from the secrets: the values that differ between the two renders,
/// in the order written. When the secrets steered the template (a loop over their
/// characters, a test on them), the two renders wrote different numbers of values, and
/// whatever the first wrote that the second never did is taken as theirs. A comparison's
/// `true` or `false` is left. A piece too short to mask (under 4 characters, and shorter
/// than the shortest secret: a first letter, each character in a loop) fails the render:
/// masked everywhere it would hide ordinary text, and left, a loop spells the secret out.
fn derived(real: Vec<String>, other: &[String], shortest: usize) -> Result<Vec<String>, String> {
    let differ: Vec<String> = if real.len() == other.len() {
        real.into_iter().zip(other).filter(|(a, b)| a != *b).map(|(a, _)| a).collect()
    } else {
        real.into_iter().filter(|a| !other.contains(a)).collect()
    };
    let differ: Vec<String> =
        differ.into_iter().filter(|s| !s.trim().is_empty() && s != "true" && s != "false").collect();
    if differ.iter().any(|s| s.chars().count() < shortest.min(4)) {
        return Err("a template writes a piece of a secret parameter too short to mask (under 4 characters): \
                    pass the secret whole, or keep it out of what is written"
            .to_string());
    }
    Ok(differ)
}

/// The strings and numbers of a JSON value, as text.
fn leaves(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::{render_json, render_plain, render_shell};
    use super::*;

    fn ctx(masker: &crate::secret::Masker) -> Context {
        Context {
            params: serde_json::json!({ "pw": "hunter2", "pin": "4711", "user": "alice" }),
            secrets: Some(Secrets { names: vec!["pw".to_string(), "pin".to_string()].into(), masker: masker.clone() }),
            ..Context::default()
        }
    }

    #[test]
    fn what_a_filter_makes_of_a_secret_is_masked() {
        let masker = crate::secret::Masker::new(["hunter2".to_string(), "4711".to_string()]);
        let ctx = ctx(&masker);
        let script = "echo {{ params.pw | upper }} {{ params.pw[2:] }} {{ params.user | upper }}";
        assert_eq!(render_shell(script, &ctx).unwrap(), "echo HUNTER2 nter2 ALICE");
        assert_eq!(masker.mask("HUNTER2 nter2 ALICE"), "*** *** ALICE");
        // Through a variable, a loop, and a plain (environment) value.
        let set = "{% set x = params.pw | reverse %}{% for c in [x] %}{{ c }}{% endfor %}";
        assert_eq!(render_plain(set, &ctx).unwrap(), "2retnuh");
        assert_eq!(masker.mask("got 2retnuh"), "got ***");
        // A value steered by the secret: whatever only the real render wrote.
        let steered = "{% if params.pw == 'hunter2' %}{{ params.user ~ '-admin' }}{% endif %}";
        assert_eq!(render_plain(steered, &ctx).unwrap(), "alice-admin");
        assert_eq!(masker.mask("alice-admin"), "***");
        // Numbers, and typed payload values.
        let payload = serde_json::json!({ "token": "{{ params.pw | title }}", "n": "{{ params.pin | int + 1 }}" });
        let rendered = render_json(&payload, &ctx).unwrap();
        assert_eq!(rendered, serde_json::json!({ "token": "Hunter2", "n": 4712 }));
        assert_eq!(masker.mask("Hunter2 4712"), "*** ***");
    }

    #[test]
    fn what_says_little_of_a_secret_stays_visible_and_pieces_of_it_are_refused() {
        let masker = crate::secret::Masker::new(["hunter2".to_string()]);
        let ctx = ctx(&masker);
        render_shell("echo {{ params.pw | length }} {{ params.pw == 'x' }} {{ params.user }}", &ctx).unwrap();
        assert_eq!(masker.mask("7 false alice hunter2"), "7 false alice ***");
        // A piece too short to mask, or the secret a character at a time, is no render.
        for pieces in ["echo {{ params.pw[0] }}", "{% for c in params.pw %}{{ c }} {% endfor %}"] {
            let err = render_plain(pieces, &ctx).unwrap_err();
            assert!(err.starts_with("a template writes a piece of a secret parameter too short to mask"), "{err}");
        }
        // A context without secrets in the clear (a dry run's) records nothing.
        let shown = Context { secrets: None, ..ctx.clone() };
        render_plain("{{ params.pw | upper }}", &shown).unwrap();
        assert_eq!(masker.mask("HUNTER2"), "HUNTER2");
    }

    #[test]
    fn every_character_changes() {
        assert_eq!(change("az-Z9é"), "ba-A0x");
        assert_eq!(change("!!"), "xx");
    }
}
