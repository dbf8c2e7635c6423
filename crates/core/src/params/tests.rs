//! Parameter declarations and values: types, bounds, patterns, secrets, defaults.

use super::*;
use proptest::prelude::*;

fn param(yaml: &str) -> Param {
    let spec: ParamSpec = serde_saphyr::from_str(yaml).unwrap();
    Param::check_spec("p", &spec).unwrap()
}

fn check(params: &[Param], inputs: &[(&str, &str)], expected: Result<serde_json::Value, Vec<&str>>) {
    let inputs = inputs.iter().map(|(k, v)| (k.to_string(), Input::Text(v.to_string()))).collect();
    let got = check_values(params, &inputs)
        .map(|v| v.masked())
        .map_err(|e| e.iter().map(ToString::to_string).collect::<Vec<_>>());
    match expected {
        Ok(v) => assert_eq!(got, Ok(v)),
        Err(msgs) => assert_eq!(got.unwrap_err(), msgs),
    }
}

#[test]
fn reports_every_violation_at_once() {
    let mut a = param("{ type: integer, min: 1, max: 20 }");
    a.name = "replicas".into();
    let mut b = param("{ type: string, required: true, pattern: \"\\\\d+\\\\.\\\\d+\\\\.\\\\d+\" }");
    b.name = "version".into();
    let mut c = param("{ type: secret, min_length: 8 }");
    c.name = "token".into();
    let mut d = param("{ type: enum, values: [staging, production], required: true }");
    d.name = "environment".into();
    check(
        &[a, b, c, d],
        &[("replicas", "25"), ("version", "1.x"), ("token", "short"), ("envirnoment", "prod")],
        Err(vec![
            "parameter `envirnoment`: unknown parameter (did you mean `environment`?); known: replicas, version, token, environment",
            "parameter `replicas`: 25 is greater than the maximum 20",
            "parameter `version`: \"1.x\" does not match the pattern \\d+\\.\\d+\\.\\d+",
            "parameter `token`: is 5 characters long, shorter than the minimum 8",
            "parameter `environment`: is required",
        ]),
    );
}

#[test]
fn secret_sources_parse_or_say_why() {
    use SecretSource::*;
    assert_eq!(
        SecretSource::parse("aws-secretsmanager:prod/db#password"),
        Ok(SecretsManager { id: "prod/db".into(), key: Some("password".into()) })
    );
    let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/db-AbCdEf";
    let s = SecretSource::parse(&format!("aws-secretsmanager:{arn}")).unwrap();
    assert_eq!(s, SecretsManager { id: arn.into(), key: None });
    assert_eq!(s.arn_region(), Some("eu-west-1"));
    assert_eq!(SecretSource::parse("aws-ssm-parameter:/app/key"), Ok(SsmParameter { name: "/app/key".into() }));
    assert_eq!(SecretSource::parse("aws-ssm-parameter:/app/key").unwrap().arn_region(), None);
    assert_eq!(
        SecretSource::parse("vault:x").unwrap_err(),
        "`from: vault:x`: unknown source `vault`; expected aws-secretsmanager:NAME_OR_ARN[#json_key] or aws-ssm-parameter:/path"
    );
    assert_eq!(
        SecretSource::parse("aws-secretsmanager:db#").unwrap_err(),
        "`from: aws-secretsmanager:db#`: the JSON key after `#` is empty"
    );
    let spec: ParamSpec = serde_saphyr::from_str("{ type: string, from: \"aws-ssm-parameter:/x\" }").unwrap();
    assert_eq!(
        Param::check_spec("p", &spec).unwrap_err(),
        vec!["parameter `p`: `from` applies only to secret parameters"]
    );
    // A required secret with a source needs no value.
    let spec: ParamSpec =
        serde_saphyr::from_str("{ type: secret, required: true, from: \"aws-ssm-parameter:/x\" }").unwrap();
    let p = Param::check_spec("p", &spec).unwrap();
    assert_eq!(check_values(&[p], &BTreeMap::new()).unwrap().values["p"], Value::Null);
}

#[test]
fn secrets_are_masked_and_never_echoed() {
    let mut s = param("{ type: secret, pattern: \"[a-z]+\" }");
    s.name = "pw".into();
    check(std::slice::from_ref(&s), &[("pw", "abcd")], Ok(serde_json::json!({"pw": "***"})));
    check(
        std::slice::from_ref(&s),
        &[("pw", "abc")],
        Err(vec![
            "parameter `pw`: is 3 characters long: a secret needs at least 4, since output is masked wherever the \
             secret shows and a shorter one would hide ordinary text",
        ]),
    );
    check(
        std::slice::from_ref(&s),
        &[("pw", "Hunter2")],
        Err(vec!["parameter `pw`: the value does not match the pattern [a-z]+"]),
    );
    check(std::slice::from_ref(&s), &[("pw", "")], Err(vec!["parameter `pw`: is empty: a secret needs a value"]));
    let mut spaced = param("{ type: secret }");
    spaced.name = "pw".into();
    check(
        &[spaced],
        &[("pw", "a   ")],
        Err(vec![
            "parameter `pw`: is 1 character long without the spaces around it: a secret needs at least 4, since \
             output is masked wherever the secret shows and a shorter one would hide ordinary text",
        ]),
    );
    let short: ParamSpec = serde_saphyr::from_str("{ type: secret, max_length: 3 }").unwrap();
    let err = Param::check_spec("pw", &short).unwrap_err();
    assert!(err.iter().any(|e| e.contains("max_length 3 leaves no value possible")), "{err:?}");
}

#[test]
fn defaults_and_types() {
    let mut n = param("{ type: number, default: 1.5 }");
    n.name = "ratio".into();
    let mut b = param("{ type: boolean, default: false }");
    b.name = "flag".into();
    check(&[n.clone(), b.clone()], &[], Ok(serde_json::json!({"flag": false, "ratio": 1.5})));
    // A whole number stays one: a script gets `2`, not `2.0`.
    check(&[n.clone(), b], &[("flag", "yes"), ("ratio", "2")], Ok(serde_json::json!({"flag": true, "ratio": 2})));
    assert_eq!(n.coerce(&Input::Text("2.0".into())).unwrap(), serde_json::json!(2.0), "as written");
    let i = param("{ type: integer }");
    let big = i.coerce(&Input::Text("12345678901234567890".into())).unwrap_err();
    assert!(big.contains("is out of range: an integer is from -9223372036854775808 to 9223372036854775807"), "{big}");
    assert!(i.coerce(&Input::Text("1.5".into())).unwrap_err().contains("is not an integer"));
    // A JSON value is shown as given; the type with its article.
    let flag = param("{ type: boolean }");
    assert_eq!(flag.coerce(&Input::Value(serde_json::json!(5))).unwrap_err(), "5 is not a boolean (use true or false)");
    let e = param("{ type: enum, values: [a] }");
    assert_eq!(
        e.coerce(&Input::Value(serde_json::json!([1]))).unwrap_err(),
        "expected an enum but got a list or mapping"
    );
}

proptest! {
    #[test]
    fn integers_respect_bounds(v in any::<i64>(), lo in -1000i64..1000, span in 0i64..1000) {
        let hi = lo + span;
        let p = param(&format!("{{ type: integer, min: {lo}, max: {hi} }}"));
        let got = p.coerce(&Input::Text(v.to_string()));
        prop_assert_eq!(got.is_ok(), (lo..=hi).contains(&v));
        if let Ok(value) = got {
            prop_assert_eq!(value, serde_json::json!(v));
        }
    }

    #[test]
    fn strings_respect_pattern_and_length(s in "\\PC{0,20}") {
        let p = param("{ type: string, pattern: \"[a-z][a-z0-9-]*\", max_length: 10 }");
        let ok = p.coerce(&Input::Text(s.clone())).is_ok();
        let expected = !s.is_empty()
            && s.chars().count() <= 10
            && s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        prop_assert_eq!(ok, expected);
    }

    #[test]
    fn coercion_never_panics(s in any::<String>()) {
        for ty in ["string", "integer", "number", "boolean", "secret"] {
            let p = param(&format!("{{ type: {ty} }}"));
            let _ = p.coerce(&Input::Text(s.clone()));
        }
        let _ = crate::parse(&s);
    }
}
