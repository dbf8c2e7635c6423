//! Freeze windows: a cron start and a duration in a time zone, and date ranges.

use crate::BlockRecord;
use crate::config::{Freeze, date_range, timezone};

pub(crate) fn check(f: &Freeze, now: jiff::Timestamp) -> Result<Vec<BlockRecord>, String> {
    let mut records = Vec::new();
    for w in &f.windows {
        let tz = timezone(w.timezone.as_deref())?;
        let cron = opsbook_core::schedule::check_cron(&w.start)?;
        // The latest start at or before now; the window is on while now < start + duration.
        let here = now.to_zoned(tz.clone());
        let Ok(start) = cron.find_previous_occurrence(&here, true) else { continue };
        let end = start.timestamp().as_millisecond() + i64::try_from(w.duration.0.as_millis()).unwrap_or(i64::MAX / 2);
        if now.as_millisecond() < end {
            let end_ts = jiff::Timestamp::from_millisecond(end).map_err(|e| e.to_string())?;
            records.push(BlockRecord {
                source: "freeze".into(),
                id: format!("{} +{}", w.start, w.duration),
                title: format!(
                    "{} until {}",
                    w.reason.as_deref().unwrap_or("freeze window"),
                    end_ts.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z")
                ),
                started_at: Some(start.timestamp().to_string()),
                updated_at: None,
                rule: format!("window `{}` for {} ({})", w.start, w.duration, w.timezone.as_deref().unwrap_or("UTC")),
                ..BlockRecord::default()
            });
        }
    }
    let tz = timezone(f.timezone.as_deref())?;
    let today = now.to_zoned(tz.clone()).date();
    let mut seen = std::collections::BTreeSet::new();
    for d in &f.dates {
        let (from, to) = date_range(d)?;
        // The same range written twice is one freeze.
        if from <= today && today <= to && seen.insert((from, to)) {
            // Like windows: the instant it began, in RFC 3339.
            let began =
                from.to_zoned(tz.clone()).map(|z| z.timestamp().to_string()).unwrap_or_else(|_| from.to_string());
            records.push(BlockRecord {
                source: "freeze".into(),
                id: d.clone(),
                title: format!("freeze from {from} to {to}"),
                started_at: Some(began),
                rule: format!("dates {d}"),
                ..BlockRecord::default()
            });
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FreezeWindow;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn windows_and_dates() {
        let f = Freeze {
            windows: vec![FreezeWindow {
                start: "0 17 * * FRI".into(),
                duration: opsbook_core::duration::parse("63h").unwrap(),
                timezone: Some("Europe/Berlin".into()),
                reason: Some("weekend freeze".into()),
            }],
            dates: vec!["2026-12-24/2026-12-27".into()],
            timezone: None,
        };
        // Friday 2026-11-27 17:00 Berlin = 16:00 UTC; the window runs to Monday 08:00 Berlin.
        assert!(check(&f, at("2026-11-27T15:59:00Z")).unwrap().is_empty());
        let on = check(&f, at("2026-11-27T16:00:00Z")).unwrap();
        assert_eq!(on[0].title, "weekend freeze until 2026-11-30 08:00 CET");
        assert_eq!(check(&f, at("2026-11-30T06:59:00Z")).unwrap().len(), 1);
        assert!(check(&f, at("2026-11-30T07:00:00Z")).unwrap().is_empty());
        let xmas = check(&f, at("2026-12-25T12:00:00Z")).unwrap();
        assert_eq!(xmas[0].title, "freeze from 2026-12-24 to 2026-12-27");
        assert_eq!(xmas[0].started_at.as_deref(), Some("2026-12-24T00:00:00Z"));
        // The same range twice is one record; in a time zone, the day starts there.
        let twice = Freeze {
            windows: vec![],
            dates: vec!["2026-12-24/2026-12-27".into(), "2026-12-24/2026-12-27".into()],
            timezone: Some("America/New_York".into()),
        };
        let recs = check(&twice, at("2026-12-25T12:00:00Z")).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].started_at.as_deref(), Some("2026-12-24T05:00:00Z"));
        assert_eq!(
            check(&f, at("2026-12-28T00:00:00Z")).unwrap()[0].rule,
            "window `0 17 * * FRI` for 2d15h (Europe/Berlin)"
        );
        assert!(check(&f, at("2026-12-29T12:00:00Z")).unwrap().is_empty());
    }
}
