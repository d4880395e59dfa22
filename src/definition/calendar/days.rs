//! A calendar's local dates worked out once: turning a local date and minute into an
//! instant, or an instant into a local date, goes through the time zone's rules, which
//! costs far more than a lookup, and every timer of every step asks for the same few dates.

use std::sync::{Mutex, MutexGuard};

use chrono::NaiveDate;

use crate::stripes::Stripes;

/// Spans of instants each thread remembers (an SLA step asks for the date of now and of
/// the deadlines of a few clocks, each on a date of its own).
const SPANS: usize = 8;

/// Dates each thread remembers at most (over ten years); past it its cache starts over (a
/// server asks for the dates around now, so it seldom holds more than a few hundred).
const MAX_DATES: usize = 4_096;

/// A day's working periods as `[start, end)` instants (ms), in order.
type Periods = Box<[(i64, i64)]>;

/// The instants `[start, end)` (ms) of one local date: every instant in it has that date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: i64,
    pub(super) end: i64,
    pub(super) date: NaiveDate,
}

/// What one thread remembers of a calendar.
#[derive(Debug, Default)]
struct Days {
    /// Local date → its working periods; hashed by foldhash, since every SLA step looks a
    /// few dates up.
    periods: foldhash::HashMap<NaiveDate, Periods>,
    /// The local dates instants were last found in, with their instants.
    spans: [Option<Span>; SPANS],
    /// The slot of `spans` the next span found takes.
    next: usize,
}

/// What a calendar has worked out of its local dates. Each thread keeps its own (see
/// [`Stripes`]): one lock for all made every step of every thread write to the same cache
/// line a few times.
#[derive(Debug, Default)]
pub(super) struct DayCache(Stripes<Mutex<Days>>);

impl DayCache {
    fn mine(&self) -> MutexGuard<'_, Days> {
        self.0.mine().lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread's remembered dates, held for one walk over a calendar's dates: the
    /// thread's lock is taken once for all the walk's lookups, where a lookup per date took
    /// it for each of the days an SLA deadline spans.
    pub(super) fn walk(&self) -> DayWalk<'_> {
        DayWalk { days: self.mine() }
    }
}

/// A walk over a calendar's dates (see [`DayCache::walk`]): every lookup of the walk goes
/// through it, so none takes the thread's lock a second time.
pub(super) struct DayWalk<'a> {
    days: MutexGuard<'a, Days>,
}

impl DayWalk<'_> {
    /// The local date of instant `ms`: from a span remembered when one holds `ms`, else
    /// worked out with `compute`, which answers the date and, when it can tell, the span of
    /// instants with that date (remembered for the next calls).
    pub(super) fn date_of(
        &mut self,
        ms: i64,
        compute: impl FnOnce() -> (NaiveDate, Option<Span>),
    ) -> NaiveDate {
        let known = (self.days.spans.iter().flatten())
            .find(|s| s.start <= ms && ms < s.end)
            .map(|s| s.date);
        if let Some(date) = known {
            return date;
        }
        let (date, span) = compute();
        if let Some(span) = span {
            let slot = self.days.next;
            self.days.spans[slot] = Some(span);
            self.days.next = (slot + 1) % SPANS;
        }
        date
    }

    /// Calls `f` with the working periods of `date`, worked out with `compute` the first
    /// time.
    pub(super) fn periods<R>(
        &mut self,
        date: NaiveDate,
        compute: impl FnOnce() -> Vec<(i64, i64)>,
        f: impl FnOnce(&[(i64, i64)]) -> R,
    ) -> R {
        if let Some(periods) = self.days.periods.get(&date) {
            return f(periods);
        }
        let periods = compute().into_boxed_slice();
        let answer = f(&periods);
        if self.days.periods.len() >= MAX_DATES {
            self.days.periods.clear();
        }
        self.days.periods.insert(date, periods);
        answer
    }
}

/// A copy starts with an empty cache: what it holds is derived, never part of the value.
impl Clone for DayCache {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// Two calendars are equal by their definitions; what they have cached does not count.
impl PartialEq for DayCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
