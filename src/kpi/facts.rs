//! Facts about one instance, derived from its trace records alone, so that KPIs can be
//! recomputed for any past period (and from any log shaped like a trace).
//!
//! For an instance the facts are a JSON object:
//! - `id`, `created_at` (ms), `month` (`2026-11`, UTC, of creation), `records`, and
//!   `as_of`: the time the facts hold at (`until`, or the last record);
//! - `state`: where it stands after the last record; `data`: its fields as the records
//!   wrote them (given the definition, only its fields; the record that ends an approval
//!   round holds the round's outcome, not fields);
//! - `entered` / `last_entered`: state → when it was first / last entered (ms);
//! - `time_in`: state → ms spent there, up to the last record (or `until`, if later);
//! - `taken`: transition → how often it was taken (callers' and automatic);
//! - `first_taken`: transition → when it was first taken;
//! - `actors`: distinct actors of callers' steps, in order;
//! - `sla`: metric → `{status, met, elapsed_ms, target_ms}` from the `sla` records
//!   (`met` is true or false once the clock stopped, absent before);
//! - `approvals`: approval transition → the last round's outcome (`approved`, `rejected`).
//!
//! A KPI query adds `period`: `{from, to}` in ms, each `()` when the period is open there.

use serde_json::{Map, Value, json};

use crate::clock::format_ms;
use crate::definition::Definition;
use crate::store::{FactRecord, TraceKind};

/// Adds `n` to the number at `key` (0 when absent).
fn add(map: &mut Map<String, Value>, key: &str, n: i64) {
    let before = map.get(key).and_then(Value::as_i64).unwrap_or(0);
    map.insert(key.to_owned(), Value::from(before + n));
}

/// The facts of one instance from its trace records, in order. `until` closes the time
/// spent in the current state (the end of the period asked about); `None` stops at the
/// last record.
pub fn facts(records: &[FactRecord], until: Option<i64>, def: Option<&Definition>) -> Value {
    let Some(first) = records.first() else {
        return Value::Null;
    };
    let mut data = Map::new();
    let mut entered = Map::new();
    let mut last_entered = Map::new();
    let mut time_in = Map::new();
    let mut taken = Map::new();
    let mut first_taken = Map::new();
    let mut actors: Vec<String> = Vec::new();
    let mut sla = Map::new();
    let mut approvals = Map::new();
    let mut state: Option<(String, i64)> = None;
    for r in records {
        let round_outcome = r.kind == TraceKind::Transition
            && def.is_some_and(|d| {
                r.transition
                    .as_ref()
                    .and_then(|t| d.transitions.get(t))
                    .is_some_and(|t| t.approval.is_some())
            });
        let writes = r
            .data
            .iter()
            .filter(|_| !round_outcome)
            .filter(|(k, _)| def.is_none_or(|d| d.fields.contains_key(*k)));
        for (k, v) in writes {
            if v.is_null() {
                data.remove(k);
            } else {
                data.insert(k.clone(), v.clone());
            }
        }
        if matches!(
            r.kind,
            TraceKind::Transition | TraceKind::Vote | TraceKind::Created
        ) && !actors.contains(&r.actor)
        {
            actors.push(r.actor.clone());
        }
        if let Some(t) = &r.transition
            && matches!(r.kind, TraceKind::Transition | TraceKind::Automatic)
        {
            add(&mut taken, t, 1);
            first_taken.entry(t.clone()).or_insert(Value::from(r.at));
            if let Some(outcome) = r.data.get("outcome").and_then(Value::as_str)
                && matches!(outcome, "approved" | "rejected")
                && (round_outcome || def.is_none())
            {
                approvals.insert(t.clone(), Value::from(outcome));
            }
        }
        if r.kind == TraceKind::Sla {
            sla_fact(&mut sla, r);
        }
        let moved = match &state {
            None => true,
            Some((s, _)) => *s != r.to,
        };
        if moved {
            if let Some((s, since)) = &state {
                add(&mut time_in, s, r.at - since);
            }
            entered.entry(r.to.clone()).or_insert(Value::from(r.at));
            last_entered.insert(r.to.clone(), Value::from(r.at));
            state = Some((r.to.clone(), r.at));
        }
    }
    let last_at = records.last().map_or(first.at, |r| r.at);
    let end = until.map_or(last_at, |u| u.max(last_at));
    if let Some((s, since)) = &state {
        add(&mut time_in, s, end - since);
    }
    let created = first.at;
    let month = format_ms(created).get(..7).unwrap_or_default().to_owned();
    json!({
        "id": first.instance_id,
        "created_at": created,
        "month": month,
        "records": records.len(),
        "as_of": end,
        "state": state.map(|(s, _)| s),
        "data": data,
        "entered": entered,
        "last_entered": last_entered,
        "time_in": time_in,
        "taken": taken,
        "first_taken": first_taken,
        "actors": actors,
        "sla": sla,
        "approvals": approvals,
    })
}

/// Folds one `sla` record into the SLA facts.
fn sla_fact(sla: &mut Map<String, Value>, r: &FactRecord) {
    let Some(metric) = r.data.get("metric").and_then(Value::as_str) else {
        return;
    };
    let event = r
        .data
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let entry = sla
        .entry(metric.to_owned())
        .or_insert_with(|| json!({ "status": "running" }));
    let Value::Object(m) = entry else {
        return;
    };
    for key in ["elapsed_ms", "target_ms"] {
        if let Some(v) = r.data.get(key) {
            m.insert(key.into(), v.clone());
        }
    }
    let status = match event {
        "met" | "missed" => {
            m.insert("met".into(), Value::Bool(event == "met"));
            event
        }
        "breached" => "breached",
        "paused" => "paused",
        "started" | "resumed" => "running",
        _ => return,
    };
    // A breach stays visible until the clock stops.
    if !(m.get("status") == Some(&Value::from("breached"))
        && matches!(status, "running" | "paused"))
    {
        m.insert("status".into(), Value::from(status));
    }
}
