//! The checks of a gate's settings: Alertmanager matchers, names, URLs, time zones,
//! freeze dates, and each source's as a whole.

use super::Source;

/// Parses an Alertmanager matcher as Alertmanager does: a label name, one of `=` `!=`
/// `=~` `!~`, and a value, double-quoted (with `\"`, `\\` and `\n` escapes) or bare;
/// a regular expression must compile (anchored, as Alertmanager anchors it).
/// Returns (name, operator, value).
pub fn matcher(m: &str) -> Result<(String, &'static str, String), String> {
    let m = m.trim();
    let name_len = m.bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
    let name = &m[..name_len];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("it must start with a label name (letters, digits and `_`), e.g. severity=\"critical\"".into());
    }
    let rest = m[name_len..].trim_start();
    let Some(op) = ["=~", "!~", "!=", "="].into_iter().find(|op| rest.starts_with(op)) else {
        return Err(format!("expected =, !=, =~ or !~ after `{name}`"));
    };
    let rest = rest[op.len()..].trim_start();
    let value = if let Some(quoted) = rest.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = quoted.chars();
        loop {
            match chars.next() {
                None => return Err("the quoted value is not closed with `\"`".into()),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c @ ('"' | '\\')) => value.push(c),
                    Some(c) => return Err(format!("unknown escape `\\{c}` in the quoted value")),
                    None => return Err("the quoted value is not closed with `\"`".into()),
                },
                Some(c) => value.push(c),
            }
        }
        let after = chars.as_str().trim();
        if !after.is_empty() {
            return Err(format!("unexpected `{after}` after the quoted value"));
        }
        value
    } else {
        if rest.is_empty() {
            return Err(format!("no value after `{name}{op}` (write `{name}{op}\"\"` to mean empty)"));
        }
        if let Some(c) = rest.chars().find(|c| c.is_whitespace() || "{}!=~,\\\"'`".contains(*c)) {
            return Err(format!("the bare value `{rest}` has `{c}`: put the value in double quotes"));
        }
        rest.to_string()
    };
    if op.ends_with('~') {
        regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
            format!("invalid regular expression `{value}`: {}", e.to_string().lines().last().unwrap_or(""))
        })?;
    }
    Ok((name.to_string(), op, value))
}

/// `prod-us-east-1`, `web_eu.v2`: safe in a URL path and a CI log line.
pub fn is_gate_name(name: &str) -> bool {
    name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn check_url(url: &str) -> Result<(), String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(format!("`{url}` is not an http:// or https:// URL"))
    }
}

pub fn timezone(name: Option<&str>) -> Result<jiff::tz::TimeZone, String> {
    match name {
        None | Some("UTC") => Ok(jiff::tz::TimeZone::UTC),
        Some(n) => jiff::tz::TimeZone::get(n).map_err(|_| {
            let known: Vec<String> = jiff::tz::db().available().map(|z| z.to_string()).collect();
            let known: Vec<&str> = known.iter().map(String::as_str).collect();
            match crate::diagnostic::did_you_mean(n, &known) {
                Some(m) => format!("unknown time zone `{n}` (did you mean `{m}`?)"),
                None => format!("unknown time zone `{n}` (an IANA name such as `Europe/Berlin`, or `UTC`)"),
            }
        }),
    }
}

/// A `YYYY-MM-DD` date. What is wrong otherwise: written as a date but no such day
/// (2026-02-30, `Err(true)`: say that, not the format), or not written as a date
/// (`Err(false)`).
pub fn calendar_date(d: &str) -> Result<jiff::civil::Date, bool> {
    d.parse().map_err(|_| {
        d.len() == 10
            && d.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() })
    })
}

/// `YYYY-MM-DD` or `YYYY-MM-DD/YYYY-MM-DD`.
pub fn date_range(s: &str) -> Result<(jiff::civil::Date, jiff::civil::Date), String> {
    let date = |d: &str| -> Result<jiff::civil::Date, String> {
        let d = d.trim();
        calendar_date(d).map_err(|shaped| {
            if shaped {
                format!("invalid date range `{s}`: {d} is no day of the calendar")
            } else {
                format!("invalid date range `{s}`: use YYYY-MM-DD or YYYY-MM-DD/YYYY-MM-DD")
            }
        })
    };
    let (a, b) = s.split_once('/').unwrap_or((s, s));
    let (a, b) = (date(a)?, date(b)?);
    if b < a {
        return Err(format!("invalid date range `{s}`: it ends before it starts"));
    }
    Ok((a, b))
}

/// Checks one source's settings (URLs, matchers, cron patterns, time zones, dates).
pub fn check_source(s: &Source) -> Result<(), String> {
    match s {
        Source::AwsHealth(a) => {
            for c in &a.categories {
                if !["issue", "accountNotification", "scheduledChange", "investigation"].contains(&c.as_str()) {
                    return Err(format!(
                        "aws_health: unknown category `{c}` (issue, accountNotification, scheduledChange, investigation)"
                    ));
                }
            }
            for r in a.regions.iter().filter(|r| *r != "global") {
                crate::aws_regions::check_region(r).map_err(|e| format!("aws_health: {e}; a region, or `global`"))?;
            }
            for z in &a.availability_zones {
                let region = crate::aws_regions::check_zone(z).map_err(|e| format!("aws_health: {e}"))?;
                let regional: Vec<&str> = a.regions.iter().map(String::as_str).filter(|r| *r != "global").collect();
                if !regional.is_empty() && !regional.contains(&region.as_str()) {
                    return Err(format!(
                        "aws_health: availability zone `{z}` is in {region}, which `regions` does not list ({})",
                        regional.join(", ")
                    ));
                }
            }
            for sv in &a.services {
                if sv.is_empty() || sv.chars().any(|c| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) {
                    return Err(format!(
                        "aws_health: `{sv}` is not an AWS Health service code: they are upper case, e.g. `{}`",
                        sv.to_ascii_uppercase().replace(['-', ' '], "")
                    ));
                }
            }
            for st in &a.statuses {
                if !["open", "closed", "upcoming"].contains(&st.as_str()) {
                    return Err(format!("aws_health: unknown status `{st}` (open, closed, upcoming)"));
                }
            }
            if let Some(u) = &a.endpoint_url {
                check_url(u)?;
            }
            if !a.organization && !a.accounts.is_empty() {
                return Err("aws_health: accounts apply only with organization: true".into());
            }
            Ok(())
        }
        Source::Statuspage(p) => check_url(&p.url),
        Source::Alertmanager(a) => {
            check_url(&a.url)?;
            for m in &a.matchers {
                matcher(m).map_err(|why| format!("invalid Alertmanager matcher `{m}`: {why}"))?;
            }
            Ok(())
        }
        Source::Freeze(f) => {
            if f.windows.is_empty() && f.dates.is_empty() {
                return Err("a freeze needs windows or dates".into());
            }
            for w in &f.windows {
                crate::schedule::check_cron_fires(&w.start)?;
                timezone(w.timezone.as_deref())?;
            }
            timezone(f.timezone.as_deref())?;
            for d in &f.dates {
                date_range(d)?;
            }
            Ok(())
        }
        Source::Http(h) => {
            check_url(&h.url)?;
            for code in &h.expect_status {
                if !(100..=599).contains(code) {
                    return Err(format!("http.expect_status: `{code}` is not an HTTP status code"));
                }
            }
            match &h.expect_json {
                Some(e) => {
                    crate::jsonpath::JsonPath::parse(&e.path).map(drop).map_err(|e| format!("expect_json.path: {e}"))
                }
                None => Ok(()),
            }
        }
        Source::Command(c) => {
            if c.run.trim().is_empty() {
                return Err("command.run is empty".into());
            }
            Ok(())
        }
    }
}
