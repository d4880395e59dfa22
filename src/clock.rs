//! The engine's clock. Everything that asks "what time is it" asks a [`Clock`], so tests
//! and simulations can move time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, as milliseconds since the Unix epoch (UTC).
    fn now_ms(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to; for tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `ms` since the epoch.
    pub fn at(ms: i64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicI64::new(ms),
        })
    }

    /// Moves the clock forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The wall clock moved forward by an offset: for simulation mode, where a process owner
/// moves time to watch timers and SLAs play out.
#[derive(Debug, Default)]
pub struct SimulatedClock {
    offset: AtomicI64,
}

impl SimulatedClock {
    /// Starts at the wall clock's now.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Moves the clock forward by `ms` (never back).
    pub fn advance(&self, ms: i64) {
        self.offset.fetch_add(ms.max(0), Ordering::SeqCst);
    }
}

impl Clock for SimulatedClock {
    fn now_ms(&self) -> i64 {
        Utc::now()
            .timestamp_millis()
            .saturating_add(self.offset.load(Ordering::SeqCst))
    }
}

/// Milliseconds since the epoch as an RFC 3339 UTC string with milliseconds.
///
/// Times from 1970 to 9999 (all a running engine writes) are formatted here directly, digit
/// by digit, as `chrono` would write them: answers and SLA trace records format several
/// per step. Others go through `chrono`.
pub fn format_ms(ms: i64) -> String {
    write_ms(ms, str::to_owned)
}

/// Writes [`format_ms`]'s text without allocating for times from 1970 to 9999.
fn write_ms<W>(ms: i64, write: impl FnOnce(&str) -> W) -> W {
    match rfc3339_text(ms) {
        Some(text) => write(text.as_str()),
        None => write(&by_chrono(ms)),
    }
}

fn by_chrono(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The 24 bytes of a time from 1970 to 9999 in RFC 3339 with milliseconds.
struct Rfc3339([u8; 24]);

impl Rfc3339 {
    fn as_str(&self) -> &str {
        // Only ASCII digits and marks are written.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

fn rfc3339_text(ms: i64) -> Option<Rfc3339> {
    if !(0..YEAR_10000_MS).contains(&ms) {
        return None;
    }
    let (days, in_day) = (ms / DAY_MS, ms % DAY_MS);
    let (year, month, day) = civil_date(days);
    let mut text = [0u8; 24];
    let mut put = |at: usize, value: i64, digits: usize| {
        let mut v = value;
        for i in (at..at + digits).rev() {
            text[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, in_day / 3_600_000, 2);
    put(14, in_day / 60_000 % 60, 2);
    put(17, in_day / 1000 % 60, 2);
    put(20, in_day % 1000, 3);
    for (at, mark) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        text[at] = mark;
    }
    Some(Rfc3339(text))
}

/// A time in an answer: milliseconds since the epoch, kept as a number until the answer
/// is written, then as [`format_ms`] writes it. It reads back every text `format_ms`
/// writes, years past 9999 included, so a stored answer replays to the same text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment(pub i64);

impl serde::Serialize for Moment {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write_ms(self.0, |text| serializer.serialize_str(text))
    }
}

impl<'de> serde::Deserialize<'de> for Moment {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(deserializer)?;
        text.parse::<DateTime<Utc>>()
            .map(|t| Moment(t.timestamp_millis()))
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
    }
}

const DAY_MS: i64 = 86_400_000;

/// 10000-01-01T00:00:00Z in milliseconds since the epoch.
const YEAR_10000_MS: i64 = 253_402_300_800_000;

/// The proleptic Gregorian (year, month, day) of a day counted from 1970-01-01 (day 0),
/// for days on or after it. Counts in 400-year eras that start on 1 March, so that the
/// leap day falls at the end of each counted year.
fn civil_date(days: i64) -> (i64, i64, i64) {
    // 1970-01-01 is 719_468 days after 0000-03-01.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Parses an RFC 3339 string into milliseconds since the epoch.
pub fn parse_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Reads an RFC 3339 string as milliseconds since the epoch (the inverse of
/// [`serialize_ms`], as a [`Moment`] reads it).
pub fn deserialize_ms<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    <Moment as serde::Deserialize>::deserialize(deserializer).map(|m| m.0)
}

/// Serializes milliseconds since the epoch as an RFC 3339 UTC string.
pub fn serialize_ms<S: serde::Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
    write_ms(*ms, |text| serializer.serialize_str(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_as_chrono_formats_them() {
        let mut samples = vec![
            0,
            1,
            999,
            DAY_MS - 1,
            DAY_MS,
            951_782_400_000,   // 2000-02-29
            951_868_799_999,   // 2000-02-29T23:59:59.999
            4_107_542_400_000, // 2100-03-01
            1_798_761_599_999, // 2026-12-31T23:59:59.999
            YEAR_10000_MS - 1,
            YEAR_10000_MS,
            -1,
            -DAY_MS * 400,
            i64::MIN,
            i64::MAX,
        ];
        // Every day of 1970-2100 at a varying time of day, and spread steps to year 9999.
        let mut ms = 0;
        while ms < 4_102_444_800_000 {
            samples.push(ms);
            ms += DAY_MS + 3_723_457;
        }
        let mut ms = 0;
        while ms < YEAR_10000_MS {
            samples.push(ms);
            ms += 7_919 * DAY_MS + 12_345_678;
        }
        for ms in samples {
            assert_eq!(format_ms(ms), by_chrono(ms), "{ms}");
        }
    }

    #[test]
    fn a_moment_is_written_as_format_ms_writes_it_and_reads_back_to_the_same_text() {
        for ms in [
            0,
            1_764_806_400_123,
            YEAR_10000_MS - 1,
            YEAR_10000_MS,
            8_210_266_876_799_999,
            -1,
            -62_167_219_200_001,
            i64::MIN,
            i64::MAX,
        ] {
            let text = serde_json::to_string(&Moment(ms)).unwrap();
            assert_eq!(text, format!("\"{}\"", format_ms(ms)), "{ms}");
            let back: Moment = serde_json::from_str(&text).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), text, "{ms}");
        }
        assert!(serde_json::from_str::<Moment>("\"yesterday\"").is_err());
    }

    #[test]
    fn a_formatted_time_reads_back_as_the_same_instant() {
        for ms in [0, 1_764_806_400_123, YEAR_10000_MS - 1] {
            assert_eq!(parse_ms(&format_ms(ms)), Some(ms));
        }
    }
}
