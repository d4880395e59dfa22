//! A calendar's working periods as instants, worked out once per local date: turning a
//! local date and minute into an instant goes through the time zone's rules, which costs
//! far more than a lookup, and every timer of every step asks for the same few dates.

use std::sync::Mutex;

use chrono::NaiveDate;

use crate::stripes::Stripes;

/// Dates each thread remembers at most (over ten years); past it its cache starts over (a
/// server asks for the dates around now, so it seldom holds more than a few hundred).
const MAX_DATES: usize = 4_096;

/// A day's working periods as `[start, end)` instants (ms), in order.
type Periods = Box<[(i64, i64)]>;

/// Local date → its working periods; hashed by foldhash, since every SLA step looks a
/// few dates up. Each thread keeps its own (see [`Stripes`]): one lock for all made every
/// step of every thread write to the same cache line a few times.
#[derive(Debug, Default)]
pub(super) struct DayCache(Stripes<Mutex<foldhash::HashMap<NaiveDate, Periods>>>);

impl DayCache {
    /// Calls `f` with the periods of `date`, working them out with `compute` the first time.
    pub(super) fn with<R>(
        &self,
        date: NaiveDate,
        compute: impl FnOnce() -> Vec<(i64, i64)>,
        f: impl FnOnce(&[(i64, i64)]) -> R,
    ) -> R {
        let mut days = self.0.mine().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(periods) = days.get(&date) {
            return f(periods);
        }
        let periods = compute().into_boxed_slice();
        let answer = f(&periods);
        if days.len() >= MAX_DATES {
            days.clear();
        }
        days.insert(date, periods);
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
