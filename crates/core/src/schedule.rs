//! Schedules: cron patterns in a time zone, and the next time they fire.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::document::{Missed, Overlap};

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub cron: String,
    pub timezone: String,
    pub params: BTreeMap<String, serde_json::Value>,
    pub overlap: Overlap,
    pub missed: Missed,
}

/// The fields of a cron pattern of 5, 6 (leading seconds) or 7 (and a trailing year) fields.
const FIELDS: [(&str, &str); 7] = [
    ("second", "0-59"),
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
    ("year", "1-9999"),
];

/// Checks a cron pattern (5 fields, 6 with leading seconds, 7 with a trailing year),
/// naming the field at fault.
pub fn check_cron(pattern: &str) -> Result<croner::Cron, String> {
    const SHAPE: &str = "expected 5 fields (minute hour day-of-month month day-of-week), \
                         6 with leading seconds, or 7 with a trailing year";
    let fields: Vec<&str> = pattern.split_whitespace().collect();
    if !(5..=7).contains(&fields.len()) {
        return Err(match fields.len() {
            0 => format!("the cron pattern is empty: {SHAPE}"),
            n => format!("invalid cron pattern `{pattern}`: {n} field{}; {SHAPE}", if n == 1 { "" } else { "s" }),
        });
    }
    croner::Cron::from_str(pattern).map_err(|e| {
        // The field at fault: the first that fails with every other field `*`.
        let names = match fields.len() {
            5 => &FIELDS[1..6],
            6 => &FIELDS[..6],
            _ => &FIELDS[..],
        };
        let why = match &e {
            croner::errors::CronError::ComponentError(m) | croner::errors::CronError::InvalidPattern(m) => m.clone(),
            other => other.to_string(),
        };
        let why = why.trim_end_matches('.').to_lowercase();
        let culprit = (0..fields.len()).find(|&i| {
            let alone: Vec<&str> = (0..fields.len()).map(|j| if j == i { fields[j] } else { "*" }).collect();
            croner::Cron::from_str(&alone.join(" ")).is_err()
        });
        match culprit {
            Some(i) => format!(
                "invalid cron pattern `{pattern}`: {} field `{}`: {why} (allowed: {})",
                names[i].0, fields[i], names[i].1
            ),
            None => format!("invalid cron pattern `{pattern}`: {why}"),
        }
    })
}

/// Checks a cron pattern that is to fire: valid, and naming a time that exists (`0 0 30 2 *`,
/// 30 February, is valid cron but never fires).
pub fn check_cron_fires(pattern: &str) -> Result<croner::Cron, String> {
    let cron = check_cron(pattern)?;
    // From a leap year, so that 29 February is found.
    let from = jiff::Timestamp::from_second(946_684_800).map_err(|e| e.to_string())?.to_zoned(jiff::tz::TimeZone::UTC);
    match cron.find_next_occurrence(&from, true) {
        Ok(_) => Ok(cron),
        Err(_) => Err(format!("cron pattern `{pattern}` never fires: no date matches it")),
    }
}

/// The first time strictly after `after_ms` (epoch ms) that `pattern` fires in `tz`.
/// A pattern names times on the clock of `tz`: they are found there, then placed in
/// time. The times a daylight-saving change skips fire once, at the instant the clocks
/// jump, however many of them the pattern names; the times it repeats fire once, the
/// first time round.
pub fn next_after(pattern: &str, tz: &jiff::tz::TimeZone, after_ms: i64) -> Result<i64, String> {
    use jiff::tz::AmbiguousOffset;
    let cron = check_cron(pattern)?;
    let never = |e: &dyn std::fmt::Display| format!("`{pattern}` never fires: {e}");
    let after = jiff::Timestamp::from_millisecond(after_ms).map_err(|e| e.to_string())?;
    let mut clock = tz.to_datetime(after);
    // Each turn passes a time already gone round once (in a repeated hour): at most 3,600.
    for _ in 0..4_000 {
        let from = clock.to_zoned(jiff::tz::TimeZone::UTC).map_err(|e| never(&e))?;
        let next = cron.find_next_occurrence(&from, false).map_err(|e| never(&e))?.datetime();
        let at = match tz.to_ambiguous_zoned(next).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(next),
            AmbiguousOffset::Gap { before, .. } => {
                // The jump is the last transition before this clock time read on the old offset.
                let late = before.to_timestamp(next).map_err(|e| never(&e))?;
                let jump = tz.preceding(late + jiff::SignedDuration::from_secs(1)).next();
                Ok(jump.map_or(late, |t| t.timestamp()))
            }
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(next),
        }
        .map_err(|e| never(&e))?;
        if at > after {
            return Ok(at.as_millisecond());
        }
        clock = next;
    }
    Err(never(&"no time after this one"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn next_runs_in_a_time_zone() {
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(next_after("0 3 * * *", &utc, ms("2026-11-23T10:00:00Z")).unwrap(), ms("2026-11-24T03:00:00Z"));
        assert_eq!(next_after("*/15 * * * *", &utc, ms("2026-11-23T10:00:00Z")).unwrap(), ms("2026-11-23T10:15:00Z"));
        let fixed = jiff::tz::TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(next_after("0 3 * * *", &fixed, ms("2026-11-23T10:00:00Z")).unwrap(), ms("2026-11-24T01:00:00Z"));
        assert_eq!(
            check_cron("61 * * * *").unwrap_err(),
            "invalid cron pattern `61 * * * *`: minute field `61`: number out of bounds (allowed: 0-59)"
        );
        assert_eq!(
            check_cron("0 0 25 * * *").unwrap_err(),
            "invalid cron pattern `0 0 25 * * *`: hour field `25`: number out of bounds (allowed: 0-23)"
        );
        assert!(check_cron("bad").unwrap_err().starts_with("invalid cron pattern `bad`: 1 field; expected 5 fields"));
        assert!(check_cron(" ").unwrap_err().starts_with("the cron pattern is empty: expected 5 fields"));
        assert!(check_cron("every day").is_err());
        assert_eq!(
            check_cron_fires("0 0 30 2 *").unwrap_err(),
            "cron pattern `0 0 30 2 *` never fires: no date matches it"
        );
        assert!(check_cron_fires("0 0 29 2 *").is_ok());
        assert!(check_cron_fires("0 17 * * FRI").is_ok());
    }
}

#[cfg(test)]
mod dst {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    /// Europe/Paris: clocks go 02:00 → 03:00 on 2026-03-29 and 03:00 → 02:00 on 2026-10-25.
    #[test]
    fn daylight_saving_changes() {
        let paris = jiff::tz::TimeZone::get("Europe/Paris").expect("tzdata is installed");
        // Spring forward: 02:30 does not exist that day; the run happens once, at the next valid instant.
        let spring = next_after("30 2 * * *", &paris, ms("2026-03-28T12:00:00Z")).unwrap();
        assert!(spring >= ms("2026-03-29T00:30:00Z") && spring <= ms("2026-03-29T01:30:00Z"), "{spring}");
        let after = next_after("30 2 * * *", &paris, spring).unwrap();
        assert_eq!(after, ms("2026-03-30T00:30:00Z"), "and normally the next day (CEST)");
        // Fall back: 02:30 happens twice; the job runs once.
        let fall = next_after("30 2 * * *", &paris, ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(fall, ms("2026-10-25T00:30:00Z"));
        let after = next_after("30 2 * * *", &paris, fall).unwrap();
        assert_eq!(after, ms("2026-10-26T01:30:00Z"), "not again at the repeated 02:30");
        // Several times in the skipped hour: one run, when the clocks jump (03:00 CEST).
        for pattern in ["0 */30 2 28 3 *", "0 0,30 2 28 3 *", "0 * 2 28 3 *", "0 */30 2 28 3 * 2027"] {
            let at = next_after(pattern, &paris, ms("2026-12-01T00:00:00Z")).unwrap();
            assert_eq!(at, ms("2027-03-28T01:00:00Z"), "{pattern}");
            let again = next_after(pattern, &paris, at);
            assert!(again.as_ref().is_err() || again.unwrap() >= ms("2028-03-28T00:00:00Z"), "{pattern}: once");
        }
        // Every half hour through the repeated hour: 02:00 and 02:30 once each, then 03:00.
        let first = next_after("0 */30 * * * *", &paris, ms("2026-10-25T00:10:00Z")).unwrap();
        assert_eq!(first, ms("2026-10-25T00:30:00Z"), "02:30 CEST");
        let then = next_after("0 */30 * * * *", &paris, first).unwrap();
        assert_eq!(then, ms("2026-10-25T02:00:00Z"), "03:00 CET: not 02:00 and 02:30 again");
        // A daily 09:00 stays at 09:00 local across the change.
        assert_eq!(next_after("0 9 * * *", &paris, ms("2026-03-28T12:00:00Z")).unwrap(), ms("2026-03-29T07:00:00Z"));
    }
}
