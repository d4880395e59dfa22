//! Business calendars: when a service desk works. A calendar names a time zone, the working
//! hours of each weekday, public holidays, and make-up working days (调休: a weekend day
//! declared a working day). Targets measured in business time count only working time; a
//! calendar open every day from 00:00 to 24:00 counts all of it.
//!
//! Calendars are YAML files a process owner edits (`calendars/`); [`parse_calendar`] checks
//! one and reports every problem as `file:line:col: message`.

mod days;
mod parse;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Datelike, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;

use days::{DayCache, DayWalk, Span};
pub use parse::parse_calendar;

/// Minutes since local midnight, 0..=1440.
type Minute = u32;

/// A working period of a day, in local minutes since midnight: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First minute worked.
    pub start: Minute,
    /// First minute no longer worked (1440 for midnight at the end of the day).
    pub end: Minute,
}

/// A business calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct Calendar {
    /// Its id (`service-desk`).
    pub id: String,
    /// The time zone its hours are in.
    pub time_zone: Tz,
    /// Working periods by weekday (Monday first); empty: not worked.
    pub week: [Vec<Period>; 7],
    /// Dates not worked whatever their weekday, with their names.
    pub holidays: BTreeMap<NaiveDate, String>,
    /// Dates worked whatever their weekday (调休), each with the weekday whose hours apply.
    pub working_days: BTreeMap<NaiveDate, Weekday>,
    /// Working periods as instants, by local date, as they are asked for.
    days: DayCache,
}

/// How far ahead a calendar is searched for working time before giving up.
const HORIZON_DAYS: u32 = 3 * 366;

/// The calendar has no working time within [`HORIZON_DAYS`] of the start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("calendar `{0}` has no working time within three years")]
pub struct NoWorkingTime(pub String);

impl Calendar {
    /// The working periods of a local date.
    pub fn periods(&self, date: NaiveDate) -> &[Period] {
        if self.holidays.contains_key(&date) {
            return &[];
        }
        let weekday = self
            .working_days
            .get(&date)
            .copied()
            .unwrap_or(date.weekday());
        &self.week[weekday.num_days_from_monday() as usize]
    }

    /// Working time between two instants (ms since the epoch), in ms; 0 when `to <= from`.
    pub fn working_ms_between(&self, from: i64, to: i64) -> i64 {
        if to <= from {
            return 0;
        }
        let mut total = 0;
        let mut days = self.walk();
        let mut date = days.local_date(from);
        let last = days.local_date(to);
        while date <= last {
            total += days.periods(date, |periods| {
                periods
                    .iter()
                    .map(|&(start, end)| (end.min(to) - start.max(from)).max(0))
                    .sum::<i64>()
            });
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        total
    }

    /// The instant (ms) at which `duration_ms` of working time has passed since `from`.
    /// A zero duration is due at `from` itself.
    pub fn add_working_ms(&self, from: i64, duration_ms: i64) -> Result<i64, NoWorkingTime> {
        if duration_ms <= 0 {
            return Ok(from);
        }
        let mut left = duration_ms;
        let mut days = self.walk();
        let mut date = days.local_date(from);
        for _ in 0..HORIZON_DAYS {
            let due = days.periods(date, |periods| {
                for &(start, end) in periods {
                    let s = start.max(from);
                    if s >= end {
                        continue;
                    }
                    if left <= end - s {
                        return Some(s + left);
                    }
                    left -= end - s;
                }
                None
            });
            if let Some(due) = due {
                return Ok(due);
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        Err(NoWorkingTime(self.id.clone()))
    }

    /// The local date of an instant, through the time zone's rules.
    fn zone_date(&self, ms: i64) -> NaiveDate {
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|t| t.with_timezone(&self.time_zone).date_naive())
            .unwrap_or_default()
    }

    /// The instants of `date` when it is a plain day: 24 hours from its local midnight to
    /// the next, both of them existing. A day the clocks change on is left out (`None`), so
    /// its instants are always looked up through the time zone.
    fn plain_day(&self, date: NaiveDate) -> Option<Span> {
        let start = self.instant(date, 0)?;
        let end = self.instant(date, 1440)?;
        let plain = end - start == 24 * 3600 * 1000
            && self.zone_date(start) == date
            && self.zone_date(end - 1) == date;
        plain.then_some(Span { start, end, date })
    }

    /// A walk over this calendar's dates, under one lock of the thread's cache.
    fn walk(&self) -> Walk<'_> {
        Walk {
            calendar: self,
            days: self.days.walk(),
        }
    }

    /// A date's working periods as instants (ms), in order.
    fn instants(&self, date: NaiveDate) -> Vec<(i64, i64)> {
        self.periods(date)
            .iter()
            .filter_map(|p| Some((self.instant(date, p.start)?, self.instant(date, p.end)?)))
            .collect()
    }

    /// The instant of a local date and minute (1440: the next midnight). A local time that
    /// does not exist (a daylight-saving gap) is taken as the first instant after the gap.
    fn instant(&self, date: NaiveDate, minute: Minute) -> Option<i64> {
        let (date, minute) = if minute >= 1440 {
            (date.succ_opt()?, minute - 1440)
        } else {
            (date, minute)
        };
        let mut time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
        // A gap lasts at most a few hours; step forward until the local time exists.
        for _ in 0..=24 * 4 {
            if let Some(t) = self
                .time_zone
                .from_local_datetime(&date.and_time(time))
                .earliest()
            {
                return Some(t.timestamp_millis());
            }
            time = time.overflowing_add_signed(chrono::Duration::minutes(15)).0;
        }
        None
    }
}

/// A walk over a calendar's dates (see [`Calendar::walk`]).
struct Walk<'c> {
    calendar: &'c Calendar,
    days: DayWalk<'c>,
}

impl Walk<'_> {
    /// The local date of an instant.
    fn local_date(&mut self, ms: i64) -> NaiveDate {
        let calendar = self.calendar;
        self.days.date_of(ms, || {
            let date = calendar.zone_date(ms);
            (date, calendar.plain_day(date))
        })
    }

    /// Calls `f` with the working periods of `date` as instants (ms), in order.
    fn periods<R>(&mut self, date: NaiveDate, f: impl FnOnce(&[(i64, i64)]) -> R) -> R {
        let calendar = self.calendar;
        self.days.periods(date, || calendar.instants(date), f)
    }
}

/// Every weekday, Monday first.
pub(crate) const WEEKDAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Mon),
    ("tue", Weekday::Tue),
    ("wed", Weekday::Wed),
    ("thu", Weekday::Thu),
    ("fri", Weekday::Fri),
    ("sat", Weekday::Sat),
    ("sun", Weekday::Sun),
];

/// Dates of a holiday given as a range, inclusive.
fn dates(from: NaiveDate, to: NaiveDate) -> BTreeSet<NaiveDate> {
    from.iter_days().take_while(|d| *d <= to).collect()
}

#[cfg(test)]
mod tests;
