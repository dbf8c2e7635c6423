//! The filters and tests a template names, checked before it renders: minijinja finds an
//! unknown one only when the template renders, after earlier steps have run.

use std::collections::BTreeSet;

use minijinja::{Environment, ErrorKind};

/// The filters (`x | name`) and tests (`x is name`) a template names that templates do
/// not have: minijinja finds those only when it renders, after earlier steps have run.
pub(super) fn unknown(source: &str, expression: bool, env: &Environment<'_>) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (kind, name) in named_functions(source, expression) {
        if !seen.insert((kind, name)) {
            continue;
        }
        if !known(env, kind, name) {
            errs.push(format!(
                "unknown {kind} `{name}` (see \"Templates\" in docs/runbook-format.md for those there are)"
            ));
        }
    }
    for name in method_calls(source, expression) {
        if seen.insert(("method", name)) {
            errs.push(no_method(name, env));
        }
    }
    errs
}

/// Whether templates have the filter (`kind` "filter") or test called `name`.
fn known(env: &Environment<'_>, kind: &str, name: &str) -> bool {
    let (probe, missing) = match kind {
        "filter" => (format!("none | {name}"), ErrorKind::UnknownFilter),
        _ => (format!("none is {name}"), ErrorKind::UnknownTest),
    };
    !env.compile_expression(&probe).is_ok_and(|e| e.eval(()).is_err_and(|e| e.kind() == missing))
}

/// The text of each tag of `source`, or the whole of it when it is an `expression`.
fn tag_texts(source: &str, expression: bool) -> Vec<&str> {
    if expression { vec![source] } else { super::tags(source) }
}

/// Why `.name(…)` fails: values in templates have no methods (Jinja2's Python string and
/// dict methods are not there), and what to write instead.
fn no_method(name: &str, env: &Environment<'_>) -> String {
    let instead = match name {
        "strip" | "lstrip" | "rstrip" => "the filter `| trim`".to_string(),
        "startswith" => "the test `is startingwith(…)`".to_string(),
        "endswith" => "the test `is endingwith(…)`".to_string(),
        "get" => "`x['key'] | default(…)`".to_string(),
        "keys" | "values" => "`| items` (pairs of key and value)".to_string(),
        _ if known(env, "filter", name) => format!("the filter `| {name}(…)`"),
        _ => "a filter (see \"Templates\" in docs/runbook-format.md for those there are)".to_string(),
    };
    format!("values in templates have no methods, so `.{name}(…)` fails when the step runs: write {instead}")
}

/// The method names called in the tags of `source` (`x.split(',')`), string literals
/// aside; `loop.cycle(…)` and `loop.changed(…)` are methods of the loop, and stay.
fn method_calls(source: &str, expression: bool) -> Vec<&str> {
    let mut found = Vec::new();
    for tag in tag_texts(source, expression) {
        let code: Vec<(usize, char)> = super::tags::code_chars(tag).collect();
        for (n, &(i, c)) in code.iter().enumerate() {
            let after_value = n > 0 && matches!(code[n - 1].1, ')' | ']' | '_' | 'a'..='z' | 'A'..='Z' | '0'..='9');
            if c != '.' || !after_value {
                continue;
            }
            let rest = &tag[i + 1..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            let (name, call) = (&rest[..end], rest[end..].trim_start().starts_with('('));
            let receiver = tag[..i].rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next();
            let numeric = name.starts_with(|c: char| c.is_ascii_digit());
            if call && !name.is_empty() && !numeric && receiver != Some("loop") {
                found.push(name);
            }
        }
    }
    found
}

/// Each filter and test name in the tags of `source` (the whole of it, `expression`),
/// string literals aside.
fn named_functions(source: &str, expression: bool) -> Vec<(&'static str, &str)> {
    let mut found = Vec::new();
    for tag in tag_texts(source, expression) {
        scan_tag(tag, &mut found);
    }
    found
}

/// The names after `|` (filters) and after `is`/`is not` (tests) in a tag's text.
fn scan_tag<'a>(tag: &'a str, found: &mut Vec<(&'static str, &'a str)>) {
    let ident = |s: &'a str| -> &'a str {
        let s = s.trim_start();
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
        &s[..end]
    };
    // `{% filter name %}…{% endfilter %}` applies a filter to a block.
    if let Some(rest) = tag.trim_start_matches(['-', '+', '~']).trim_start().strip_prefix("filter")
        && rest.starts_with(char::is_whitespace)
    {
        let name = ident(rest);
        if !name.is_empty() {
            found.push(("filter", name));
        }
    }
    for (i, c) in super::tags::code_chars(tag) {
        match c {
            '|' => {
                let name = ident(&tag[i + 1..]);
                if !name.is_empty() {
                    found.push(("filter", name));
                    named_in_call(name, &tag[i + 1..], found);
                }
            }
            _ => {
                let word_start = i == 0 || !tag[..i].ends_with(|p: char| p.is_ascii_alphanumeric() || p == '_');
                if word_start && tag[i..].starts_with("is") && tag[i + 2..].starts_with(char::is_whitespace) {
                    let mut after = tag[i + 2..].trim_start();
                    if let Some(rest) = after.strip_prefix("not").filter(|r| r.starts_with(char::is_whitespace)) {
                        after = rest;
                    }
                    let name = ident(after);
                    if !name.is_empty() {
                        found.push(("test", name));
                    }
                }
            }
        }
    }
}

/// The filter or test named by a string in a call of `map`, `select`, `reject`,
/// `selectattr` or `rejectattr` (`map("upper")`, `selectattr("ok", "defined")`).
fn named_in_call<'a>(filter: &str, after_bar: &'a str, found: &mut Vec<(&'static str, &'a str)>) {
    let (kind, position) = match filter {
        "map" => ("filter", 0),
        "select" | "reject" => ("test", 0),
        "selectattr" | "rejectattr" => ("test", 1),
        _ => return,
    };
    let Some(open) = after_bar.find('(') else { return };
    let args = &after_bar[open + 1..];
    let args = &args[..args.find(')').unwrap_or(args.len())];
    // `map(attribute="x")` names an attribute, not a filter.
    if args.contains('=') {
        return;
    }
    let strings: Vec<&str> = args
        .split(',')
        .map(str::trim)
        .filter_map(|a| {
            a.strip_prefix('"').and_then(|a| a.strip_suffix('"')).or_else(|| a.strip_prefix('\'')?.strip_suffix('\''))
        })
        .collect();
    if let Some(name) =
        strings.get(position).filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        found.push((kind, name));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    #[test]
    fn unknown_filters_and_tests_are_found_before_anything_renders() {
        let params: BTreeSet<String> = ["env".to_string()].into();
        let steps = BTreeMap::new();
        let none = BTreeSet::new();
        let scope =
            super::super::Scope { params: &params, secrets: &none, steps: &steps, visible_below: 0, target: false };
        let errs = super::super::check("echo {{ params.env | nosuchfilter }} {{ params.env | upper }}", false, &scope);
        assert_eq!(
            errs,
            vec!["unknown filter `nosuchfilter` (see \"Templates\" in docs/runbook-format.md for those there are)"]
        );
        let errs =
            super::super::check("{% if params.env is not nosuchtest %}x{% endif %}{{ 'a|b is c' }}", false, &scope);
        assert_eq!(
            errs,
            vec!["unknown test `nosuchtest` (see \"Templates\" in docs/runbook-format.md for those there are)"]
        );
        assert!(super::super::check("params.env | lower | default('x')", true, &scope).is_empty());
        assert!(super::super::check("{{ params.env | replace('|', 'is x') }}", false, &scope).is_empty());
        // Text: a raw block and a comment run nothing.
        let raw =
            "helm --set x='{% raw %}{{ .Values.tag | quote }}{% endraw %}' {# {{ x | nope }} #}{{ params.env | bad }}";
        assert_eq!(
            super::super::check(raw, false, &scope),
            vec!["unknown filter `bad` (see \"Templates\" in docs/runbook-format.md for those there are)"]
        );
        let calls = "{{ [params.env] | map('nosuchmap') | list }}{{ [params.env] | select(\"nosuchtest\") | list }}{{ [params.env] | map('upper') | list }}";
        assert_eq!(
            super::super::check(calls, false, &scope),
            vec![
                "unknown filter `nosuchmap` (see \"Templates\" in docs/runbook-format.md for those there are)",
                "unknown test `nosuchtest` (see \"Templates\" in docs/runbook-format.md for those there are)"
            ]
        );
        let block = "{% filter nosuch %}{{ params.env }}{% endfilter %}{% filter upper %}x{% endfilter %}";
        assert_eq!(
            super::super::check(block, false, &scope),
            vec!["unknown filter `nosuch` (see \"Templates\" in docs/runbook-format.md for those there are)"]
        );
        // Values have no methods (Jinja2's Python ones are not there); the loop's stay.
        let methods = "{{ params.env.split(',') }}{{ params.env.upper() }}{{ params.env.strip() }}\
                       {% for x in [1] %}{{ loop.cycle('a', 'b') }}{% endfor %}{{ 'a.b(c)' }}{{ 1.5 }}";
        assert_eq!(
            super::super::check(methods, false, &scope),
            vec![
                "values in templates have no methods, so `.split(…)` fails when the step runs: write the filter `| split(…)`",
                "values in templates have no methods, so `.upper(…)` fails when the step runs: write the filter `| upper(…)`",
                "values in templates have no methods, so `.strip(…)` fails when the step runs: write the filter `| trim`",
            ]
        );
        assert_eq!(
            super::super::check("params.env.startswith('p')", true, &scope),
            vec![
                "values in templates have no methods, so `.startswith(…)` fails when the step runs: write the test `is startingwith(…)`"
            ]
        );
        // A `}}` that closes a dict literal does not end the tag (as minijinja reads it).
        let dict = "{{ {'a': {'b': params.env}} | nosuchjson }}";
        assert_eq!(
            super::super::check(dict, false, &scope),
            vec!["unknown filter `nosuchjson` (see \"Templates\" in docs/runbook-format.md for those there are)"]
        );
    }
}
