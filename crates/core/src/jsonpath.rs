//! A small JSONPath: `$`, then `.name` (any characters but `.`, `[` and `]`), `['name']`
//! or `["name"]`, and `[N]` (`[-1]` is the last item). Enough to point at one value of a
//! response, which is all a check needs.

use std::fmt;

/// One step down into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(i64),
}

/// A parsed path, kept with its text for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    pub text: String,
    pub segments: Vec<Segment>,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parses `text`; the error says what is wrong and at which character.
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let chars: Vec<char> = text.chars().collect();
        if chars.first() != Some(&'$') {
            return Err(format!("invalid JSON path `{text}`: it starts with `$` (e.g. `$.status` or `$.items[0].id`)"));
        }
        let at = |i: usize, what: &str| format!("invalid JSON path `{text}`: {what} at character {}", i + 1);
        let mut segments = Vec::new();
        let mut i = 1;
        while i < chars.len() {
            match chars[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < chars.len() && !matches!(chars[end], '.' | '[' | ']') {
                        end += 1;
                    }
                    if end == start {
                        return Err(at(i, "a name is expected after `.`"));
                    }
                    segments.push(Segment::Key(chars[start..end].iter().collect()));
                    i = end;
                }
                '[' => {
                    let close = chars[i..].iter().position(|c| *c == ']').map(|p| i + p);
                    let Some(close) = close else {
                        return Err(at(i, "`[` is not closed"));
                    };
                    let inner: String = chars[i + 1..close].iter().collect();
                    let inner = inner.trim();
                    let quoted = (inner.starts_with('\'') && inner.ends_with('\''))
                        || (inner.starts_with('"') && inner.ends_with('"'));
                    if quoted && inner.len() >= 2 {
                        segments.push(Segment::Key(inner[1..inner.len() - 1].to_string()));
                    } else if let Ok(n) = inner.parse::<i64>() {
                        segments.push(Segment::Index(n));
                    } else {
                        return Err(at(i, "expected `[N]` or `['name']`"));
                    }
                    i = close + 1;
                }
                _ => return Err(at(i, "expected `.name` or `[…]`")),
            }
        }
        Ok(JsonPath { text: text.to_string(), segments })
    }

    /// The value the path points at, if there is one.
    pub fn find<'v>(&self, root: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        let mut cur = root;
        for s in &self.segments {
            cur = match s {
                Segment::Key(k) => cur.as_object()?.get(k)?,
                Segment::Index(n) => {
                    let items = cur.as_array()?;
                    let idx = if *n < 0 { items.len().checked_sub(n.unsigned_abs() as usize)? } else { *n as usize };
                    items.get(idx)?
                }
            };
        }
        Some(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_keys_indexes_and_quoted_names() {
        let doc = json!({"healthy": true, "items": [{"id": 1}, {"id": 2}], "a b": {"c-d": "x"}});
        let get = |p: &str| JsonPath::parse(p).unwrap().find(&doc).cloned();
        assert_eq!(get("$"), Some(doc.clone()));
        assert_eq!(get("$.healthy"), Some(json!(true)));
        assert_eq!(get("$.items[1].id"), Some(json!(2)));
        assert_eq!(get("$.items[-1].id"), Some(json!(2)));
        assert_eq!(get("$['a b'].c-d"), Some(json!("x")));
        assert_eq!(get("$[\"a b\"]['c-d']"), Some(json!("x")));
        assert_eq!(get("$.items[5]"), None);
        assert_eq!(get("$.healthy.x"), None);
        assert_eq!(get("$.items[-3]"), None);
    }

    #[test]
    fn refuses_malformed_paths_with_the_place() {
        assert_eq!(
            JsonPath::parse("healthy").unwrap_err(),
            "invalid JSON path `healthy`: it starts with `$` (e.g. `$.status` or `$.items[0].id`)"
        );
        assert_eq!(
            JsonPath::parse("$.").unwrap_err(),
            "invalid JSON path `$.`: a name is expected after `.` at character 2"
        );
        assert_eq!(
            JsonPath::parse("$.a[0").unwrap_err(),
            "invalid JSON path `$.a[0`: `[` is not closed at character 4"
        );
        assert_eq!(
            JsonPath::parse("$.a[x]").unwrap_err(),
            "invalid JSON path `$.a[x]`: expected `[N]` or `['name']` at character 4"
        );
        assert_eq!(
            JsonPath::parse("$a").unwrap_err(),
            "invalid JSON path `$a`: expected `.name` or `[…]` at character 2"
        );
        assert_eq!(
            JsonPath::parse("$.a]").unwrap_err(),
            "invalid JSON path `$.a]`: expected `.name` or `[…]` at character 4"
        );
        let odd = JsonPath::parse("$.x.@type.a:b").unwrap();
        assert_eq!(
            odd.segments,
            vec![Segment::Key("x".into()), Segment::Key("@type".into()), Segment::Key("a:b".into())]
        );
    }
}
