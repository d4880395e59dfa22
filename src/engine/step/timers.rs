//! What a step does to an instance's timers.
//!
//! Each timer of the process stands, in every state, as off, running or paused. A step that
//! changes where some timer stands (or that is a timer's firing) rewrites the instance's
//! timers (each timer's due time and, if it warns, its warning): a timer switched on starts
//! with its full duration, a running one keeps its due
//! time, a paused one keeps the working time it had left and counts it down again when it
//! runs, and a timer that fired starts afresh if it is still on.

use super::Working;
use crate::definition::{Timer, TimerStatus};
use crate::store::{TimerChange, TimerRecord};

impl Working<'_> {
    /// Each timer with where it stood before the step and where it stands after.
    fn timer_statuses(&self) -> impl Iterator<Item = (&Timer, TimerStatus, TimerStatus)> {
        let before = self.original_state.as_deref();
        let after = Some(self.record.state.as_str());
        self.loaded
            .definition
            .timers
            .values()
            .map(move |t| (t, t.status_in(before), t.status_in(after)))
    }

    fn fired(&self, t: &Timer) -> bool {
        self.fired_timer.as_deref() == Some(t.name.as_str())
    }

    /// The step changes where some timer stands, or fires one.
    fn changes_timers(&self) -> bool {
        self.fired_timer.is_some() || self.timer_statuses().any(|(_, b, a)| b != a)
    }

    /// The step rewrites the timers while some timer carries on: its stored due time or
    /// time left must be read first.
    pub(crate) fn needs_stored_timers(&self) -> bool {
        self.changes_timers()
            && self
                .timer_statuses()
                .any(|(t, b, a)| b != TimerStatus::Off && a != TimerStatus::Off && !self.fired(t))
    }

    /// The instance's timers after the step, when the step changes them. A timer keeps two
    /// clocks when it warns: its warning and its due time; a warning given is not stored
    /// again until the timer starts afresh.
    pub(super) fn timer_change(&self) -> Option<TimerChange> {
        if !self.changes_timers() {
            return None;
        }
        let mut timers = Vec::new();
        for (t, before, after) in self.timer_statuses() {
            if after == TimerStatus::Off {
                continue;
            }
            let carried = before != TimerStatus::Off && !self.fired(t);
            let warning_name = t.warning_name();
            for clock in t.clocks(&warning_name) {
                let stored = self.stored_timers.iter().find(|s| s.name == clock.name);
                let given = carried && clock.warning && stored.is_none();
                if given || self.fired_timer.as_deref() == Some(clock.name) {
                    continue;
                }
                let stored = stored.filter(|_| carried);
                let (due_at, paused_left_ms) = match (before, after, stored) {
                    (TimerStatus::Running, TimerStatus::Running, Some(s)) => (s.due_at, None),
                    (_, TimerStatus::Running, s) => {
                        (self.due_in(t, self.left(t, clock.after_ms, s)), None)
                    }
                    (_, _, s) => (i64::MAX, Some(self.left(t, clock.after_ms, s))),
                };
                timers.push(TimerRecord {
                    instance_id: self.record.id.clone(),
                    name: clock.name.to_owned(),
                    due_at,
                    paused_left_ms,
                    version: self.record.version,
                });
            }
        }
        Some(TimerChange {
            instance_id: self.record.id.clone(),
            timers,
        })
    }

    /// The working time a clock of timer `t` has left: all of it (`after_ms`) when it
    /// starts; what remains to its due time when it was running; what it kept when paused.
    fn left(&self, t: &Timer, after_ms: i64, stored: Option<&TimerRecord>) -> i64 {
        match stored {
            None => after_ms,
            Some(s) => match s.paused_left_ms {
                Some(left) => left,
                None => match self.calendar(t) {
                    Some(c) => c.working_ms_between(self.env.now, s.due_at),
                    None => s.due_at.saturating_sub(self.env.now).max(0),
                },
            },
        }
    }

    /// When `left` of working time (in the timer's calendar, or of all time) has passed.
    fn due_in(&self, t: &Timer, left: i64) -> i64 {
        let now = self.env.now;
        match self.calendar(t).map(|c| c.add_working_ms(now, left)) {
            Some(Ok(due)) => due,
            Some(Err(e)) => {
                tracing::warn!(timer = %t.name, error = %e, "counting all time instead");
                now.saturating_add(left)
            }
            None => now.saturating_add(left),
        }
    }

    fn calendar(&self, t: &Timer) -> Option<&crate::definition::Calendar> {
        let id = t.calendar.as_deref()?;
        let calendar = self.env.catalog.calendar(id);
        if calendar.is_none() {
            tracing::warn!(timer = %t.name, calendar = id, "calendar not loaded; counting all time");
        }
        calendar
    }
}
