//! Reading a calendar file: every problem reported at its line and column.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Weekday};
use chrono_tz::Tz;
use serde::Deserialize;

use super::{Calendar, Period, WEEKDAYS, dates};
use crate::definition::error::DefinitionError;
use crate::definition::parse::read_yaml;
use crate::definition::problems::Problems;
use crate::definition::source_map::{Position, YamlPath};
use crate::definition::suggest::closest;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    calendar: String,
    #[serde(default)]
    #[allow(dead_code)] // shown to people reading the file; not used by the engine
    title: Option<String>,
    time_zone: String,
    #[serde(default)]
    week: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    holidays: Vec<serde_yaml::Value>,
    #[serde(default)]
    working_days: Vec<serde_yaml::Value>,
}

/// A holiday written as a map: one date or a range, with a name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    date: Option<NaiveDate>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    #[serde(default)]
    name: Option<String>,
}

/// A make-up working day written as a map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkingDay {
    date: NaiveDate,
    /// The weekday whose hours apply (Monday's by default).
    #[serde(default)]
    hours_of: Option<String>,
    #[serde(default)]
    #[allow(dead_code)] // shown to people reading the file
    name: Option<String>,
}

/// Parses and checks the calendar file `file` holding `yaml`.
pub fn parse_calendar(file: &str, yaml: &str) -> Result<Calendar, Vec<DefinitionError>> {
    let (map, value) = read_yaml(file, yaml)?;
    let mut p = Problems::new(file, &map);
    let root = YamlPath::root();
    let Some(raw) = p.deserialize::<RawCalendar>(&root, value) else {
        return Err(p.list);
    };

    let time_zone = match raw.time_zone.parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            p.at_value(
                &root.key("time_zone"),
                format!(
                    "unknown time zone `{}`; use an IANA name such as `Asia/Shanghai`",
                    raw.time_zone
                ),
            );
            None
        }
    };

    let mut week: [Vec<Period>; 7] = Default::default();
    for (day, hours) in &raw.week {
        let path = root.key("week").key(day.as_str());
        let Some(index) = WEEKDAYS.iter().position(|(name, _)| name == day) else {
            let names: Vec<&str> = WEEKDAYS.iter().map(|(n, _)| *n).collect();
            let hint = closest(day, names.iter().copied())
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            p.at_key(
                &path,
                format!("unknown weekday `{day}` (use mon, tue, wed, thu, fri, sat, sun){hint}"),
            );
            continue;
        };
        week[index] = periods(&mut p, &path, hours);
    }

    let mut holidays = BTreeMap::new();
    for (i, entry) in raw.holidays.iter().enumerate() {
        let path = root.key("holidays").index(i);
        let Some((from, to, name)) = holiday(&mut p, &path, entry) else {
            continue;
        };
        if to < from {
            p.at_value(
                &path,
                format!("the holiday ends ({to}) before it starts ({from})"),
            );
        } else if (to - from).num_days() > 366 {
            p.at_value(&path, "a holiday lasts at most a year");
        } else {
            for date in dates(from, to) {
                holidays.insert(date, name.clone());
            }
        }
    }

    let mut working_days = BTreeMap::new();
    for (i, entry) in raw.working_days.iter().enumerate() {
        let path = root.key("working_days").index(i);
        let Some((date, weekday)) = working_day(&mut p, &path, entry) else {
            continue;
        };
        if holidays.contains_key(&date) {
            p.at_value(&path, format!("{date} is both a holiday and a working day"));
        } else if week[weekday.num_days_from_monday() as usize].is_empty() {
            p.at_value(
                &path,
                format!("{date} takes the hours of {weekday}, which has no working hours"),
            );
        } else {
            working_days.insert(date, weekday);
        }
    }

    if week.iter().all(Vec::is_empty) && p.list.is_empty() {
        p.list.push(DefinitionError::new(
            file,
            Position { line: 1, column: 1 },
            "the calendar has no working hours on any weekday",
        ));
    }
    match time_zone {
        Some(time_zone) if p.list.is_empty() => Ok(Calendar {
            id: raw.calendar,
            time_zone,
            week,
            holidays,
            working_days,
            days: Default::default(),
        }),
        _ => Err(p.list),
    }
}

/// The working periods of one weekday (`["08:30-12:00", "13:30-17:30"]`), in order and
/// without overlaps.
fn periods(p: &mut Problems<'_>, path: &YamlPath, hours: &[String]) -> Vec<Period> {
    let mut out: Vec<Period> = Vec::new();
    for (i, text) in hours.iter().enumerate() {
        let at = path.index(i);
        let Some(period) = period(text) else {
            p.at_value(
                &at,
                format!("`{text}` is not a period of the day such as `08:30-12:00`"),
            );
            continue;
        };
        if let Some(before) = out.last()
            && period.start < before.end
        {
            p.at_value(
                &at,
                format!(
                    "`{text}` overlaps or precedes the period before it; list periods in order"
                ),
            );
            continue;
        }
        out.push(period);
    }
    out
}

/// `HH:MM-HH:MM`, start before end, `24:00` allowed as the end.
fn period(text: &str) -> Option<Period> {
    let (start, end) = text.split_once('-')?;
    let minute = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (m < 60 && (h < 24 || (h == 24 && m == 0))).then_some(h * 60 + m)
    };
    let (start, end) = (minute(start)?, minute(end)?);
    (start < end).then_some(Period { start, end })
}

/// A holiday entry: a date, or a map with `date` or `from`/`to`, and a name.
fn holiday(
    p: &mut Problems<'_>,
    path: &YamlPath,
    entry: &serde_yaml::Value,
) -> Option<(NaiveDate, NaiveDate, String)> {
    if let Some(text) = entry.as_str() {
        let date = date(p, path, text)?;
        return Some((date, date, String::new()));
    }
    let raw: RawHoliday = p.deserialize(path, entry.clone())?;
    let name = raw.name.unwrap_or_default();
    match (raw.date, raw.from, raw.to) {
        (Some(d), None, None) => Some((d, d, name)),
        (None, Some(from), Some(to)) => Some((from, to, name)),
        _ => {
            p.at_value(
                path,
                "a holiday is a date, `{ date: ... }`, or `{ from: ..., to: ... }`",
            );
            None
        }
    }
}

/// A working-day entry: a date (Monday's hours) or `{ date: ..., hours_of: sat }`.
fn working_day(
    p: &mut Problems<'_>,
    path: &YamlPath,
    entry: &serde_yaml::Value,
) -> Option<(NaiveDate, Weekday)> {
    if let Some(text) = entry.as_str() {
        return Some((date(p, path, text)?, Weekday::Mon));
    }
    let raw: RawWorkingDay = p.deserialize(path, entry.clone())?;
    let weekday = match raw.hours_of.as_deref() {
        None => Weekday::Mon,
        Some(day) => match WEEKDAYS.iter().find(|(name, _)| *name == day) {
            Some((_, weekday)) => *weekday,
            None => {
                p.at_value(
                    &path.key("hours_of"),
                    format!("unknown weekday `{day}` (use mon, tue, wed, thu, fri, sat, sun)"),
                );
                return None;
            }
        },
    };
    Some((raw.date, weekday))
}

fn date(p: &mut Problems<'_>, path: &YamlPath, text: &str) -> Option<NaiveDate> {
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) => Some(d),
        Err(_) => {
            p.at_value(path, format!("`{text}` is not a date such as `2026-10-01`"));
            None
        }
    }
}
