//! Timers in process files: while an instance is in one of a timer's states, the timer
//! runs; when it is due, the engine fires the timer's transition as the actor `system`.
//!
//! ```yaml
//! timers:
//!   auto_close:
//!     in: [resolved]        # runs while the instance is in these states
//!     pause_in: [waiting]   # optional: paused here, keeping the time it has left
//!     stop_on: [answer]     # optional: taking one of these transitions stops it
//!     after: 3d             # s, m, h, d; combined as 1h30m
//!     after_rule: close_after  # optional: a rule giving the duration (`after` when it gives ())
//!     calendar: service-desk  # optional: count only the calendar's working time
//!     fire: auto_close      # a transition leaving `in`'s states (optional with notify)
//!     notify: [duty_manager]  # optional: roles told when it is due (through the outbox)
//!     warn: { at: 75%, fire: remind, notify: [l1_lead] }   # optional: at 75% of the time
//!     sla: true             # optional: keep an SLA record (met or breached) on the instance
//! ```

use indexmap::IndexMap;
use serde::Deserialize;

use super::model::{Named, Script, ScriptRef, State, Transition};
use super::problems::Problems;
use super::source_map::YamlPath;
use super::suggest::closest;

/// A timer of a process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Timer {
    /// Its name.
    pub name: String,
    /// A human title.
    pub title: Option<String>,
    /// It runs while the instance is in one of these states.
    pub states: Vec<String>,
    /// It is paused, keeping the time it has left, while the instance is in one of these.
    pub pause_in: Vec<String>,
    /// Taking one of these transitions stops it (until the instance enters its states
    /// again; an SLA timer for good).
    pub stop_on: Vec<String>,
    /// It is due this long after it starts, in ms (when no rule gives the duration).
    pub after_ms: Option<i64>,
    /// A rule giving the duration when the timer starts: ms, or text such as `4h`; `()`
    /// falls back to `after_ms`.
    pub after_rule: Option<Script>,
    /// The business calendar `after` counts in (all time when absent).
    pub calendar: Option<String>,
    /// The transition fired when it is due (none: it only notifies).
    pub fire: Option<String>,
    /// Roles told when it is due.
    pub notify: Vec<String>,
    /// A warning before it is due.
    pub warn: Option<Warning>,
    /// It keeps an SLA record on the instance.
    pub sla: bool,
}

/// A warning a timer gives when part of its time has passed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// The stored name of its clock: the timer's name with [`WARNING_SUFFIX`].
    #[serde(skip)]
    pub name: String,
    /// The share of the timer's time after which it warns, in percent (1 to 99).
    pub at_percent: u8,
    /// The transition fired then (typically one that stays in the state), if any.
    pub fire: Option<String>,
    /// Roles told then.
    pub notify: Vec<String>,
}

/// One of the clocks a timer keeps: its due time, or its warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock<'t> {
    /// The stored name: the timer's, or the timer's with [`WARNING_SUFFIX`].
    pub name: &'t str,
    /// Its full duration, in ms.
    pub after_ms: i64,
    /// It is the warning.
    pub warning: bool,
}

/// Appended to a timer's name for the stored row of its warning.
pub const WARNING_SUFFIX: &str = ":warning";

/// Where a timer stands in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerStatus {
    /// Not started, or stopped.
    Off,
    /// Counting down.
    Running,
    /// Keeping the time it has left.
    Paused,
}

impl Timer {
    /// Its clocks for a run of `after_ms`: the warning (if any) and the due time.
    pub fn clocks(&self, after_ms: i64) -> impl Iterator<Item = Clock<'_>> {
        let warning = self.warn.iter().map(move |w| Clock {
            name: &w.name,
            after_ms: after_ms * i64::from(w.at_percent) / 100,
            warning: true,
        });
        warning.chain(std::iter::once(Clock {
            name: &self.name,
            after_ms,
            warning: false,
        }))
    }

    /// What running out does: the transition fired (if any) and the roles notified, for
    /// its due time or, with `warning`, its warning.
    pub fn on_run_out(&self, warning: bool) -> (Option<&str>, &[String]) {
        match (&self.warn, warning) {
            (Some(w), true) => (w.fire.as_deref(), &w.notify),
            _ => (self.fire.as_deref(), &self.notify),
        }
    }

    /// It runs in `state`.
    pub fn runs_in(&self, state: &str) -> bool {
        self.states.iter().any(|s| s == state)
    }

    /// Where it stands while an instance is in `state` (`None`: no instance yet).
    pub fn status_in(&self, state: Option<&str>) -> TimerStatus {
        match state {
            Some(s) if self.runs_in(s) => TimerStatus::Running,
            Some(s) if self.pause_in.iter().any(|p| p == s) => TimerStatus::Paused,
            _ => TimerStatus::Off,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTimer {
    #[serde(default)]
    title: Option<String>,
    #[serde(rename = "in")]
    states: Vec<String>,
    #[serde(default)]
    pause_in: Vec<String>,
    #[serde(default)]
    stop_on: Vec<String>,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    after_rule: Option<String>,
    #[serde(default)]
    calendar: Option<String>,
    #[serde(default)]
    fire: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
    #[serde(default)]
    warn: Option<RawWarning>,
    #[serde(default)]
    sla: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawWarning {
    at: String,
    #[serde(default)]
    fire: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
}

/// Checks the `timers` of a process against its states and transitions.
pub(crate) fn check_timers(
    p: &mut Problems<'_>,
    raw: IndexMap<String, serde_yaml::Value>,
    states: &Named<State>,
    transitions: &Named<Transition>,
    roles: &[String],
) -> Named<Timer> {
    let mut timers = Named::default();
    for (name, value) in raw {
        let path = YamlPath::root().key("timers").key(name.as_str());
        let Some(raw) = p.deserialize::<RawTimer>(&path, value) else {
            continue;
        };
        let mut ok = true;
        if raw.states.is_empty() {
            p.at_key(&path.key("in"), format!("timer `{name}` runs in no state"));
            ok = false;
        }
        for (i, state) in raw.states.iter().enumerate() {
            let at = path.key("in").index(i);
            match states.get(state) {
                None => {
                    let hint = closest(state, states.keys().map(String::as_str))
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    p.at_value(&at, format!("unknown state `{state}`{hint}"));
                    ok = false;
                }
                Some(s) if s.is_final => {
                    p.at_value(
                        &at,
                        format!("`{state}` is final: a timer there could never fire"),
                    );
                    ok = false;
                }
                Some(_) => {}
            }
        }
        for (i, state) in raw.pause_in.iter().enumerate() {
            let at = path.key("pause_in").index(i);
            if !states.contains_key(state) {
                let hint = closest(state, states.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                p.at_value(&at, format!("unknown state `{state}`{hint}"));
                ok = false;
            } else if raw.states.contains(state) {
                p.at_value(
                    &at,
                    format!("timer `{name}` cannot both run and pause in `{state}`"),
                );
                ok = false;
            }
        }
        for (i, stop) in raw.stop_on.iter().enumerate() {
            if !transitions.contains_key(stop) {
                let hint = closest(stop, transitions.keys().map(String::as_str))
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                p.at_value(
                    &path.key("stop_on").index(i),
                    format!("unknown transition `{stop}`{hint}"),
                );
                ok = false;
            }
        }
        let after_ms = match raw.after.as_deref().map(|a| (a, duration_ms(a))) {
            Some((_, Some(ms))) if ms > 0 => Some(ms),
            Some((text, _)) => {
                p.at_value(
                    &path.key("after"),
                    format!("`{text}` is not a duration such as `90m`, `4h`, `3d` or `1h30m`"),
                );
                ok = false;
                None
            }
            None if raw.after_rule.is_none() => {
                p.at_key(
                    &path,
                    format!("timer `{name}` needs `after:` (a duration), `after_rule:`, or both"),
                );
                ok = false;
                None
            }
            None => None,
        };
        if name.contains(':') {
            p.at_key(&path, format!("a timer's name cannot hold `:` (`{name}`)"));
            ok = false;
        }
        ok &= check_action(
            p,
            &path,
            &name,
            (raw.fire.as_deref(), &raw.notify),
            &raw.states,
            (transitions, roles),
        );
        let warn = match &raw.warn {
            None => None,
            Some(w) => {
                let at = path.key("warn");
                let percent =
                    w.at.strip_suffix('%')
                        .and_then(|n| n.trim().parse::<u8>().ok())
                        .filter(|n| (1..=99).contains(n));
                if percent.is_none() {
                    p.at_value(
                        &at.key("at"),
                        format!("`{}` is not a share of the time such as `75%`", w.at),
                    );
                    ok = false;
                }
                ok &= check_action(
                    p,
                    &at,
                    &name,
                    (w.fire.as_deref(), &w.notify),
                    &raw.states,
                    (transitions, roles),
                );
                percent.map(|at_percent| Warning {
                    name: format!("{name}{WARNING_SUFFIX}"),
                    at_percent,
                    fire: w.fire.clone(),
                    notify: w.notify.clone(),
                })
            }
        };
        if ok {
            timers.insert(
                name.clone(),
                Timer {
                    name,
                    title: raw.title,
                    states: raw.states,
                    pause_in: raw.pause_in,
                    stop_on: raw.stop_on,
                    after_ms,
                    after_rule: raw.after_rule.map(|r| Script {
                        script: ScriptRef::from_text(&r),
                        path: path.key("after_rule"),
                    }),
                    calendar: raw.calendar,
                    fire: raw.fire,
                    notify: raw.notify,
                    warn,
                    sla: raw.sla,
                },
            );
        }
    }
    timers
}

/// Whether a clock's `fire` and `notify` (one of them at least) are sound: see
/// [`check_fire`]; every role notified is a role of the process.
fn check_action(
    p: &mut Problems<'_>,
    path: &YamlPath,
    timer: &str,
    (fire, notify): (Option<&str>, &[String]),
    states: &[String],
    (transitions, roles): (&Named<Transition>, &[String]),
) -> bool {
    let mut ok = true;
    for (i, role) in notify.iter().enumerate() {
        if !roles.contains(role) {
            let hint = closest(role, roles.iter().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            p.at_value(
                &path.key("notify").index(i),
                format!("unknown role `{role}`{hint}"),
            );
            ok = false;
        }
    }
    match fire {
        Some(fire) => {
            ok &= check_fire(p, &path.key("fire"), timer, fire, states, transitions);
        }
        None if notify.is_empty() => {
            p.at_key(
                path,
                format!(
                    "timer `{timer}` does nothing when it runs out: add `fire:`, `notify:` or both"
                ),
            );
            ok = false;
        }
        None => {}
    }
    ok
}

/// Whether `fire` names a transition a timer running in `states` can fire: it exists, a
/// caller could fire it (not automatic, not an approval), and it leaves at least one of
/// the states (in the others, or when its guard refuses, the timer runs out without it).
fn check_fire(
    p: &mut Problems<'_>,
    path: &YamlPath,
    timer: &str,
    fire: &str,
    states: &[String],
    transitions: &Named<Transition>,
) -> bool {
    match transitions.get(fire) {
        None => {
            let hint = closest(fire, transitions.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            p.at_value(path, format!("unknown transition `{fire}`{hint}"));
            false
        }
        Some(t) if t.auto || t.approval.is_some() => {
            p.at_value(
                path,
                format!(
                    "`{fire}` is {}: a timer fires a transition a caller could fire",
                    if t.auto { "automatic" } else { "an approval" }
                ),
            );
            false
        }
        Some(t) if !states.iter().any(|s| t.from.contains(s)) => {
            p.at_value(
                path,
                format!(
                    "`{fire}` leaves none of the states where timer `{timer}` runs ({})",
                    states.join(", ")
                ),
            );
            false
        }
        Some(_) => true,
    }
}

/// `45s`, `90m`, `4h`, `3d`, or several of them (`1h30m`), in ms.
pub(crate) fn duration_ms(text: &str) -> Option<i64> {
    let mut total: i64 = 0;
    let mut number = String::new();
    let mut any = false;
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: i64 = match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            'd' => 86_400_000,
            _ => return None,
        };
        let n: i64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        number.clear();
        any = true;
    }
    (any && number.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::duration_ms;

    /// The problems `parse` finds in `yaml`, as `file:line:col: message`.
    fn problems(yaml: &str) -> Vec<String> {
        crate::definition::parse("t.yaml", yaml, &Default::default())
            .expect_err("refused")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn mistakes_in_timers_are_reported_at_their_line_and_column() {
        let yaml = "process: t\nroles: [r]\nstates:\n  a: { initial: true }\n  b: {}\n  done: { final: true }\ntransitions:\n  go: { from: a, to: b, roles: [r] }\n  end: { from: b, to: done, roles: [r] }\n  auto_end: { from: a, to: done, auto: true }\ntimers:\n  t1: { in: [b, c], after: 2 hours, fire: ned }\n  t2: { in: [a], after: 1h, fire: end }\n  t3: { in: [done], after: 1h, fire: auto_end }\n";
        assert_eq!(
            problems(yaml),
            [
                "t.yaml:12:17: unknown state `c`; did you mean `a`?",
                "t.yaml:12:28: `2 hours` is not a duration such as `90m`, `4h`, `3d` or `1h30m`",
                "t.yaml:12:43: unknown transition `ned`",
                "t.yaml:13:35: `end` leaves none of the states where timer `t2` runs (a)",
                "t.yaml:14:14: `done` is final: a timer there could never fire",
                "t.yaml:14:38: `auto_end` is automatic: a timer fires a transition a caller could fire",
            ]
        );
    }

    #[test]
    fn a_timer_cannot_pause_in_an_unknown_state_or_where_it_runs() {
        let yaml = "process: t\nroles: [r]\nstates:\n  a: { initial: true }\n  b: {}\n  done: { final: true }\ntransitions:\n  go: { from: a, to: b, roles: [r] }\n  end: { from: [a, b], to: done, roles: [r] }\ntimers:\n  t: { in: [a], pause_in: [a, hold], after: 1h, fire: end }\n";
        assert_eq!(
            problems(yaml),
            [
                "t.yaml:11:28: timer `t` cannot both run and pause in `a`",
                "t.yaml:11:31: unknown state `hold`",
            ]
        );
    }

    #[test]
    fn a_warning_needs_a_share_of_the_time_and_a_transition_from_the_timer_s_states() {
        let yaml = "process: t\nroles: [r]\nstates:\n  a: { initial: true }\n  b: {}\n  done: { final: true }\ntransitions:\n  go: { from: a, to: b, roles: [r] }\n  end: { from: [a, b], to: done, roles: [r] }\ntimers:\n  t: { in: [b], after: 1h, fire: end, warn: { at: 120%, fire: go } }\n  \"x:y\": { in: [a], after: 1h, fire: end }\n";
        assert_eq!(
            problems(yaml),
            [
                "t.yaml:11:51: `120%` is not a share of the time such as `75%`",
                "t.yaml:11:63: `go` leaves none of the states where timer `t` runs (b)",
                "t.yaml:12:3: a timer's name cannot hold `:` (`x:y`)",
            ]
        );
    }

    #[test]
    fn a_timer_must_have_a_duration_and_do_something_with_known_roles_and_transitions() {
        let yaml = "process: t\nroles: [desk, lead]\nstates:\n  a: { initial: true }\n  done: { final: true }\ntransitions:\n  end: { from: a, to: done, roles: [desk] }\ntimers:\n  t1: { in: [a], fire: end }\n  t2: { in: [a], after: 1h }\n  t3: { in: [a], after: 1h, notify: [led], stop_on: [ned] }\n  t4: { in: [a], after_rule: 'hours(2)', notify: [lead], sla: true }\n";
        assert_eq!(
            problems(yaml),
            [
                "t.yaml:9:3: timer `t1` needs `after:` (a duration), `after_rule:`, or both",
                "t.yaml:10:3: timer `t2` does nothing when it runs out: add `fire:`, `notify:` or both",
                "t.yaml:11:38: unknown role `led`; did you mean `lead`?",
                "t.yaml:11:54: unknown transition `ned`",
            ]
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_ms("45s"), Some(45_000));
        assert_eq!(duration_ms("90m"), Some(5_400_000));
        assert_eq!(duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(duration_ms("3d"), Some(259_200_000));
        for bad in ["", "3", "h", "3 days", "1.5h", "-2h"] {
            assert_eq!(duration_ms(bad), None, "{bad}");
        }
    }
}
