//! What a step does to an instance's timers, SLA records and notifications.
//!
//! Each timer of the process stands, in every state, as off, running or paused. A step that
//! changes where some timer stands (or that is a timer's firing) rewrites the instance's
//! timers (each timer's due time and, if it warns, its warning): a timer switched on starts
//! with its full duration (from its rule, or `after`), a running one keeps its due time, a
//! paused one keeps the working time it had left and counts it down again when it runs, and
//! a timer that fired a transition starts afresh if it is still on. A clock that ran out
//! without a transition (a warning, a notification) is spent until the timer starts afresh.
//!
//! A timer marked `sla` keeps a record on the instance: started, paused, deadline, working
//! time used, breached, stopped. A stopped record is final: the timer does not start again.

use serde_json::{Map, Value, json};

use super::Working;
use crate::clock::format_ms;
use crate::definition::{Timer, TimerStatus};
use crate::engine::error::EngineError;
use crate::store::{SlaRecord, TimerState, TraceKind};

/// A timer of a step's instance with where it stood before the step and where it stands
/// after.
pub(crate) type Standing<'a> = (&'a Timer, TimerStatus, TimerStatus);

impl<'a> Working<'a> {
    /// Where timer `t` stands in `state`: off for good once its SLA record stopped.
    fn status(&self, t: &Timer, state: Option<&str>) -> TimerStatus {
        let stopped = t.sla && self.sla(t).is_some_and(|r| r.stopped_at.is_some());
        if stopped {
            TimerStatus::Off
        } else {
            t.status_in(state)
        }
    }

    /// Where timer `t` stands after the step: off when the step took one of its `stop_on`
    /// transitions.
    fn status_after(&self, t: &Timer) -> TimerStatus {
        if t.stop_on.iter().any(|s| self.taken.contains(&s.as_str())) {
            TimerStatus::Off
        } else {
            self.status(t, Some(self.record.state.as_str()))
        }
    }

    fn sla(&self, t: &Timer) -> Option<&SlaRecord> {
        self.record.slas.iter().find(|r| r.metric == t.name)
    }

    /// Each timer with where it stood before the step and where it stands after: worked
    /// out once per step, for [`Self::needs_lookups`] and [`Self::plan_timers`].
    pub(crate) fn timer_statuses(&self) -> Vec<Standing<'a>> {
        let before = self.original_state.as_deref();
        self.loaded
            .definition
            .timers
            .values()
            .map(|t| (t, self.status(t, before), self.status_after(t)))
            .collect()
    }

    fn fired(&self, t: &Timer) -> bool {
        self.fired_timer.as_deref().is_some_and(|f| {
            f == t.name || f.strip_suffix(crate::definition::WARNING_SUFFIX) == Some(&t.name)
        })
    }

    /// The step fires a timer, or moves one of `statuses`.
    fn changes(&self, statuses: &[Standing<'_>]) -> bool {
        self.fired_timer.is_some() || statuses.iter().any(|(_, b, a)| b != a)
    }

    /// The process's lookups must be read first: some timer with a rule starts afresh
    /// (`statuses` from [`Self::timer_statuses`]).
    pub(crate) fn needs_lookups(&self, statuses: &[Standing<'_>]) -> bool {
        if self.loaded.definition.lookups.is_empty() {
            return false;
        }
        self.changes(statuses)
            && statuses.iter().any(|(t, b, a)| {
                t.after_rule.is_some()
                    && *a != TimerStatus::Off
                    && (*b == TimerStatus::Off || self.fired_anew(t))
            })
    }

    /// Timer `t`'s transition fired in this step: it starts afresh if still on.
    fn fired_anew(&self, t: &Timer) -> bool {
        self.fired(t) && !self.fired_alone && !self.fired_warning()
    }

    fn fired_warning(&self) -> bool {
        self.fired_timer
            .as_deref()
            .is_some_and(|f| f.ends_with(crate::definition::WARNING_SUFFIX))
    }

    /// Works out the instance's timers, SLA records and notifications after the step (and
    /// those of the instances it created) from `statuses` ([`Self::timer_statuses`]). They
    /// may be taken before any SLA record is updated here: a record decides only its own
    /// timer's status, and each timer's record is updated after its status is read.
    pub(crate) fn plan_timers(&mut self, statuses: Vec<Standing<'a>>) -> Result<(), EngineError> {
        for c in &mut self.created {
            c.plan_timers(c.timer_statuses())?;
        }
        if !self.changes(&statuses) {
            return Ok(());
        }
        let now = self.env.now;
        // The clocks as they stood; a clock kept running keeps its name's String.
        let mut stood = std::mem::take(&mut self.record.timers);
        let mut timers = Vec::with_capacity(stood.len());
        let mut sla_events = Vec::new();
        for (t, before, after) in statuses {
            let fresh = before == TimerStatus::Off || self.fired_anew(t);
            let duration = if fresh && after != TimerStatus::Off {
                self.duration(t)?
            } else {
                0
            };
            let mut due = None;
            if after != TimerStatus::Off {
                for clock in t.clocks(duration) {
                    let at = stood.iter().position(|s| s.name == clock.name);
                    let stored = at.filter(|_| !fresh).map(|i| &stood[i]);
                    let ran_out = self.fired_timer.as_deref() == Some(clock.name);
                    if (!fresh && stored.is_none()) || (ran_out && !self.fired_anew(t)) {
                        continue; // given, or spent until the timer starts afresh
                    }
                    let (due_at, paused_left_ms) = match (before, after, stored) {
                        (TimerStatus::Running, TimerStatus::Running, Some(s)) => (s.due_at, None),
                        (_, TimerStatus::Running, s) => {
                            (self.due_in(t, self.left(t, clock.after_ms, s)), None)
                        }
                        (_, _, s) => (i64::MAX, Some(self.left(t, clock.after_ms, s))),
                    };
                    if !clock.warning {
                        due = paused_left_ms.is_none().then_some(due_at);
                    }
                    // Clock names are unique in a definition: no later clock looks for it.
                    let name = match at {
                        Some(i) => std::mem::take(&mut stood[i].name),
                        None => clock.name.to_owned(),
                    };
                    timers.push(TimerState {
                        name,
                        due_at,
                        paused_left_ms,
                    });
                }
            }
            if t.sla {
                for event in self.update_sla(t, (before, after), duration, due) {
                    sla_events.push((t, event));
                }
            }
            if let Some(warning) = self.ran_out_now(t) {
                self.notice(t, warning, now);
            }
        }
        for (t, event) in sla_events {
            self.trace_sla(&t.name, event);
        }
        self.record.timers = timers;
        Ok(())
    }

    /// A trace record of an SLA event: what happened to `metric`, and where it stands.
    fn trace_sla(&mut self, metric: &str, event: &'static str) {
        let Some(r) = self.record.slas.iter().find(|r| r.metric == metric) else {
            return;
        };
        let mut data = Map::with_capacity(5);
        data.insert("metric".into(), Value::from(metric));
        data.insert("event".into(), Value::from(event));
        data.insert("target_ms".into(), Value::from(r.target_ms));
        data.insert("elapsed_ms".into(), Value::from(r.elapsed_ms));
        if let Some(d) = r.deadline {
            data.insert("deadline".into(), Value::from(format_ms(d)));
        }
        let state = self.record.state.clone();
        self.record(TraceKind::Sla, None, Some(state), data, None);
    }

    /// The clock of `t` whose running out this step is.
    /// Whether a clock of `t` ran out in this step: `Some(true)` its warning, `Some(false)`
    /// its due time.
    fn ran_out_now(&self, t: &Timer) -> Option<bool> {
        self.fired(t).then(|| self.fired_warning())
    }

    /// Updates the SLA record of `t`; `due` is its due time after the step, if running.
    /// Returns what happened to it, in order.
    fn update_sla(
        &mut self,
        t: &Timer,
        (before, after): (TimerStatus, TimerStatus),
        duration: i64,
        due: Option<i64>,
    ) -> Vec<&'static str> {
        let mut events = Vec::new();
        let now = self.env.now;
        let index = self.record.slas.iter().position(|r| r.metric == t.name);
        let Some(index) = index.or_else(|| {
            (before == TimerStatus::Off && after != TimerStatus::Off).then(|| {
                self.record.slas.push(SlaRecord {
                    metric: t.name.clone(),
                    target_ms: duration,
                    calendar: t.calendar.clone(),
                    started_at: now,
                    deadline: None,
                    elapsed_ms: 0,
                    running_since: None,
                    paused_ms: 0,
                    paused_since: None,
                    warned_at: None,
                    breached_at: None,
                    stopped_at: None,
                });
                events.push("started");
                self.record.slas.len() - 1
            })
        }) else {
            return events;
        };
        let mut r = self.record.slas[index].clone();
        if r.stopped_at.is_some() || (before == TimerStatus::Off && after == TimerStatus::Off) {
            return events;
        }
        let deadline = r.deadline;
        if before == TimerStatus::Running && after != TimerStatus::Running {
            let since = r.running_since.unwrap_or(now);
            r.elapsed_ms += self.working_between(t, since, now);
            r.running_since = None;
            r.deadline = None;
        }
        if before == TimerStatus::Paused
            && after != TimerStatus::Paused
            && let Some(since) = r.paused_since.take()
        {
            r.paused_ms += now - since;
        }
        if let Some(warning) = self.ran_out_now(t) {
            if warning {
                r.warned_at.get_or_insert(now);
                events.push("warned");
            } else if r.breached_at.is_none() {
                r.breached_at = Some(deadline.unwrap_or(now));
                events.push("breached");
            }
        }
        match after {
            TimerStatus::Running if before != TimerStatus::Running => {
                r.running_since = Some(now);
                if r.breached_at.is_none() {
                    r.deadline = due;
                }
                if before == TimerStatus::Paused {
                    events.push("resumed");
                }
            }
            TimerStatus::Paused if before != TimerStatus::Paused => {
                r.paused_since = Some(now);
                if before == TimerStatus::Running {
                    events.push("paused");
                }
            }
            TimerStatus::Off => {
                r.stopped_at = Some(now);
                if r.breached_at.is_none() && r.elapsed_ms > r.target_ms {
                    r.breached_at = Some(deadline.unwrap_or(now));
                }
                events.push(if r.breached_at.is_some() {
                    "missed"
                } else {
                    "met"
                });
            }
            _ => {}
        }
        self.record.slas[index] = r;
        events
    }

    /// Raises the notification of a clock that ran out, when it names roles to notify.
    fn notice(&mut self, t: &Timer, warning: bool, now: i64) {
        let (fire, notify) = t.on_run_out(warning);
        if notify.is_empty() {
            return;
        }
        let event = if warning {
            "timer_warning"
        } else {
            "timer_due"
        };
        let body = json!({
            "event": event,
            "timer": t.name,
            "title": t.title,
            "notify": notify,
            "transition": fire,
        });
        self.raise(body, now);
    }

    /// Queues a notification about this instance as it stands after the step.
    pub(crate) fn raise(&mut self, mut body: Value, now: i64) {
        if let Value::Object(m) = &mut body {
            m.insert("process".into(), Value::from(self.record.process.clone()));
            m.insert("instance".into(), Value::from(self.record.id.clone()));
            m.insert("at".into(), Value::from(format_ms(now)));
            m.insert("state".into(), Value::from(self.record.state.clone()));
            m.insert("data".into(), Value::Object(Map::clone(&self.record.data)));
        }
        self.notices.push(body);
    }

    /// The duration of a fresh run of `t`: its rule's answer, or `after`.
    fn duration(&mut self, t: &Timer) -> Result<i64, EngineError> {
        let from_rule = match &t.after_rule {
            None => None,
            Some(script) => {
                let input = Map::new();
                let ms =
                    self.env
                        .rules
                        .duration(&self.loaded.rules, script, &self.context(&input))?;
                self.decided(script, ms.map_or(Value::Null, Value::from));
                ms
            }
        };
        match from_rule.or(t.after_ms) {
            Some(ms) => Ok(ms),
            None => Err(self.rule_error(
                t.after_rule
                    .as_ref()
                    .expect("a timer without `after` has a rule"),
                format!("gave no duration, and timer `{}` has no `after`", t.name),
            )),
        }
    }

    /// The working time a clock of timer `t` has left: all of it (`after_ms`) when it
    /// starts; what remains to its due time when it was running; what it kept when paused.
    fn left(&self, t: &Timer, after_ms: i64, stored: Option<&TimerState>) -> i64 {
        match stored {
            None => after_ms,
            Some(s) => match s.paused_left_ms {
                Some(left) => left,
                None => self.working_between(t, self.env.now, s.due_at),
            },
        }
    }

    /// Working time (in `t`'s calendar, or all time) between two instants; 0 if reversed.
    fn working_between(&self, t: &Timer, from: i64, to: i64) -> i64 {
        match self.calendar(t) {
            Some(c) => c.working_ms_between(from, to),
            None => to.saturating_sub(from).max(0),
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
            tracing::warn!(
                timer = %t.name,
                calendar = id,
                "calendar not loaded; counting all time"
            );
        }
        calendar
    }
}
