//! Rendering: shell contexts, strict undefined, placeholders, conditions.

use super::*;

#[test]
fn a_secret_is_mentioned_by_name_by_variable_or_with_all_params() {
    assert!(mentions("echo {{ params.pw }}", "pw"));
    assert!(mentions("echo {{ params['pw'] }}", "pw"));
    assert!(mentions("echo \"$OPSBOOK_PARAM_PW\"", "pw"));
    assert!(mentions("curl -d '{{ params | tojson }}'", "pw"));
    assert!(!mentions("echo {{ params.pw_old }} {{ params.other }}", "pw"));
    assert!(!mentions("echo {{ myparams.x }} $OPSBOOK_PARAM_PWD", "pw"));
}

fn ctx(params: serde_json::Value) -> Context {
    Context { params, execution_id: "EX1".into(), ..Context::default() }
}

/// A template without tags skips the template engine, and comes out as the engine
/// would render it (one trailing newline dropped, the rest as written).
#[test]
fn text_without_tags_renders_as_the_engine_would() {
    let c = ctx(serde_json::json!({}));
    for text in [
        "",
        "true",
        "true\n",
        "a\n\n",
        "a\r\n",
        "a\r",
        "a\n\r",
        "\r",
        "\n",
        "echo '}}' {x} { {\n",
        "  spaced  \n\t",
        "x\r\n\r\n",
        "é\n",
    ] {
        let engine = plain_env().render_str(text, c.to_value(None)).unwrap();
        assert_eq!(untemplated(text).as_deref(), Some(engine.as_str()), "{text:?}");
        assert_eq!(render_shell(text, &c).unwrap(), engine, "{text:?}");
        assert_eq!(render_plain(text, &c).unwrap(), engine, "{text:?}");
    }
    for tagged in ["{{ 1 }}", "a {% if true %}b{% endif %}", "{# note #}x"] {
        assert_eq!(untemplated(tagged), None, "{tagged:?}");
    }
}

#[test]
fn json_payloads_keep_types_and_never_splice() {
    let c = ctx(serde_json::json!({"env": "prod", "n": 3, "on": true, "quote": "a\"b", "list": [1, 2]}));
    let doc = serde_json::json!({
        "env": "{{ params.env }}",
        "n": "{{ params.n }}",
        "next": "{{ params.n + 1 }}",
        "on": "{{params.on}}",
        "text": "n={{ params.n }}",
        "quote": "{{ params.quote }}",
        "list": ["{{ params.list }}", "x"],
        "plain": 7,
        "{{ not a key }}": null,
    });
    assert_eq!(
        render_json(&doc, &c).unwrap(),
        serde_json::json!({
            "env": "prod", "n": 3, "next": 4, "on": true, "text": "n=3", "quote": "a\"b",
            "list": [[1, 2], "x"], "plain": 7, "{{ not a key }}": null,
        })
    );
    assert!(render_json(&serde_json::json!({"x": "{{ params.missing }}"}), &c).is_err());
    let names = BTreeSet::from(["env".to_string()]);
    let steps = BTreeMap::new();
    let scope = Scope { params: &names, secrets: &BTreeSet::new(), steps: &steps, visible_below: 0, target: false };
    assert_eq!(
        check_json(&serde_json::json!({"a": [{"b": "{{ params.nope }}"}], "c": "{{ params.env }}"}), &scope, "payload"),
        vec!["payload.a[0].b: unknown parameter `params.nope`"]
    );
}

#[test]
fn shell_quotes_every_value() {
    let c = ctx(serde_json::json!({"a": "x; rm -rf /", "n": 3, "e": "", "b": true}));
    assert_eq!(
        render_shell("echo {{ params.a }} {{ params.n }} {{ params.e }} {{ params.b }}", &c).unwrap(),
        "echo 'x; rm -rf /' 3 '' true"
    );
    assert_eq!(render_plain("{{ execution.id }}", &c).unwrap(), "EX1");
    // A dict literal's `}}` is inside the tag: the whole value is one quoted word.
    let dict = render_shell("echo \"{{ {'k': {'v': params.a}}['k'].v }}\" {{ {'k': params.a}.k }}", &c).unwrap();
    assert_eq!(dict, "echo \"x; rm -rf /\" 'x; rm -rf /'");
}

#[test]
fn strict_undefined() {
    let c = ctx(serde_json::json!({}));
    let err = render_shell("{{ params.nope }}", &c).unwrap_err();
    assert_eq!(err, "`params.nope` is undefined: the parameter has no value (not given, no default) (template line 1)");
    // A step's missing output is named, with the outputs it has.
    let mut steps = BTreeMap::new();
    let outputs = BTreeMap::from([("url".to_string(), "http://x".to_string())]);
    steps.insert("a".to_string(), StepContext { status: "succeeded".into(), outputs });
    let c = Context { steps: std::sync::Arc::new(steps), ..c };
    assert_eq!(
        eval_condition("steps.a.outputs.missing == 'x'", &c).unwrap_err(),
        "`steps.a.outputs.missing` is undefined: step `a` (succeeded) has no output `missing`; its outputs: `url`"
    );
    assert_eq!(
        render_plain("{{ steps.b.status }}", &c).unwrap_err(),
        "`steps.b.status` is undefined: step `b` has not run (template line 1)"
    );
    // Wherever the value lands in the script: in quotes, in a here-document, in a
    // comment, as the shell's arithmetic. It was written as nothing there.
    for script in [
        "rm -rf \"/data/{{ steps.a.outputs.dir }}\"",
        "echo '[{{ steps.a.outputs.dir }}]'",
        "cat <<EOF\n{{ steps.a.outputs.dir }}\nEOF",
        "# {{ steps.a.outputs.dir }}",
        "echo $(( {{ steps.a.outputs.dir }} + 1 ))",
        "echo {{ steps.a.outputs.dir | upper }} \"{{ steps.a.outputs.dir | lower }}\"",
        "echo \"{{ steps.a.outputs.dir ~ '/x' }}\" {{ steps.a.outputs.dir | trim }}",
        "ssh web1 \"ls {{ steps.a.outputs.dir }}\"",
    ] {
        assert_eq!(
            render_shell(script, &c).unwrap_err().split(" (template line").next().unwrap(),
            "`steps.a.outputs.dir` is undefined: step `a` (succeeded) has no output `dir`; its outputs: `url`",
            "{script}"
        );
    }
    assert_eq!(
        render_shell("rm -rf \"/data/{{ steps.a.outputs.dir | default('tmp') }}\"", &c).unwrap(),
        "rm -rf \"/data/tmp\""
    );
    // An `if` without `else` gives nothing, wherever it is (found by review).
    let flag = "deploy \"A {{ '--dry-run' if steps.a.status == 'failed' }} B\" {{ 'x' if false }}<<EOF\n{{ 'y' if false }}\nEOF";
    assert_eq!(render_shell(flag, &c).unwrap(), "deploy \"A  B\" <<EOF\n\nEOF");
    // What is not a missing reference keeps minijinja's words.
    assert!(render_plain("{{ steps.a.outputs.url.nope.x }}", &c).unwrap_err().starts_with("undefined value"));
}

#[test]
fn dry_run_placeholders() {
    let c = Context { placeholders: true, ..ctx(serde_json::json!({})) };
    assert_eq!(
        render_shell("curl {{ steps.deploy.outputs.url }} # {{ steps.deploy.status }}", &c).unwrap(),
        "curl '<steps.deploy.outputs.url>' # '<steps.deploy.status>'"
    );
}

#[test]
fn conditions() {
    let c = ctx(serde_json::json!({"environment": "production"}));
    assert!(eval_condition("params.environment == 'production'", &c).unwrap());
    assert!(!eval_condition("params.environment == 'staging'", &c).unwrap());
}

#[test]
fn checks_references() {
    let params: BTreeSet<String> = ["version".to_string()].into();
    let steps: BTreeMap<String, usize> =
        [("build".to_string(), 0), ("deploy".to_string(), 1), ("smoke".to_string(), 2)].into();
    let scope = Scope { params: &params, secrets: &BTreeSet::new(), steps: &steps, visible_below: 1, target: false };
    assert_eq!(check("{{ params.version }} {{ steps.build.outputs.x }}", false, &scope), Vec::<String>::new());
    assert_eq!(
        check("{{ params.verison }}", false, &scope),
        vec!["unknown parameter `params.verison` (did you mean `params.version`?)"]
    );
    assert_eq!(
        check("{{ steps.smoke.status }}", false, &scope),
        vec!["`steps.smoke` refers to a step that has not run yet at this point"]
    );
    assert_eq!(
        check("{{ foo }}", false, &scope),
        vec!["unknown variable `foo`: templates can use params, steps and execution"]
    );
    assert!(check("{{ params.version ", false, &scope)[0].starts_with("invalid template"));
}
