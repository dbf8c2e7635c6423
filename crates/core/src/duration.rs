//! Human durations as written in runbooks: `500ms`, `30s`, `10m`, `2h`, `7d`, `1h30m`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration parsed from the runbook syntax. Always positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn from_secs(secs: u64) -> Dur {
        Dur(Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Dur {
        Dur(Duration::from_millis(ms))
    }
}

const MAX_MS: u128 = 3650 * 86_400_000;

/// Parses `500ms`, `30s`, `10m`, `2h`, `7d` and concatenations such as `1h30m`.
pub fn parse(text: &str) -> Result<Dur, String> {
    let bad =
        || format!("invalid duration `{text}`: expected a number followed by ms, s, m, h or d (e.g. 30s, 10m, 1h30m)");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return Err(bad());
        }
        let n: u128 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let factor_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total += n * factor_ms;
    }
    if total == 0 {
        return Err(format!("invalid duration `{text}`: must be greater than zero"));
    }
    // Anything longer is a slip of the keyboard, and would overflow date arithmetic.
    if total > MAX_MS {
        return Err(format!("invalid duration `{text}`: longer than 10 years (3650d)"));
    }
    Ok(Dur(Duration::from_millis(total as u64)))
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        if ms > 0 {
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        let text = String::deserialize(de)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(ms|s|m|h|d))+$",
            "description": "A duration such as 500ms, 30s, 10m, 2h, 7d or 1h30m",
        })
    }
}

/// Formats a millisecond count for people: `850ms`, `12.3s`, `4m05s`.
pub fn human_ms(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms % 60_000) / 1000)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<u64, &str>) {
        let got = parse(input).map(|d| d.0.as_millis() as u64);
        match expected {
            Ok(ms) => assert_eq!(got, Ok(ms), "{input}"),
            Err(msg) => assert_eq!(got.unwrap_err(), msg, "{input}"),
        }
    }

    #[test]
    fn parses() {
        check("500ms", Ok(500));
        check("30s", Ok(30_000));
        check("10m", Ok(600_000));
        check("2h", Ok(7_200_000));
        check("7d", Ok(604_800_000));
        check("1h30m", Ok(5_400_000));
        check("5", Err("invalid duration `5`: expected a number followed by ms, s, m, h or d (e.g. 30s, 10m, 1h30m)"));
        check(
            "10 minutes",
            Err("invalid duration `10 minutes`: expected a number followed by ms, s, m, h or d (e.g. 30s, 10m, 1h30m)"),
        );
        check("0s", Err("invalid duration `0s`: must be greater than zero"));
        check("3650d", Ok(315_360_000_000));
        check("3650d1ms", Err("invalid duration `3650d1ms`: longer than 10 years (3650d)"));
        check("99999999999h", Err("invalid duration `99999999999h`: longer than 10 years (3650d)"));
    }

    #[test]
    fn displays() {
        assert_eq!(parse("1h30m").unwrap().to_string(), "1h30m");
        assert_eq!(parse("1500ms").unwrap().to_string(), "1s500ms");
        assert_eq!(human_ms(12_345), "12.3s");
        assert_eq!(human_ms(245_000), "4m05s");
    }
}
