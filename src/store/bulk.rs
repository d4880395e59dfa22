//! A batch of steps as a few set-based statements: the rows of every kind the batch writes
//! (answers, new instances, instance updates, link changes, trace records) are gathered so
//! that each kind is written at once: on PostgreSQL as one array per column, all passed
//! to one call of `opsflow_write_rows` (see `postgres_bulk`); on SQLite by one prepared
//! statement per kind, run per row on the writer's handle directly (see `sqlite_bulk`). A
//! batch then costs one round trip to the server or none to the driver's thread, where
//! writing step by step through the driver costs several per step.
//!
//! The set-based form is all or nothing for the whole batch. It is tried first; when any
//! row is refused (a lost race, a live idempotency key), the caller rolls it back and
//! writes the batch again step by step in savepoints, so that only the refused steps fail.

use serde_json::{Map, Value};

use super::{SlaRecord, Step, TimerState, Vote};

/// The rows of a batch, by kind, borrowed from its steps.
#[derive(Debug, Default)]
pub(super) struct Bulk<'a> {
    pub(super) answers: Vec<AnswerRow<'a>>,
    /// An expired answer under the same key is replaced only when given before this time
    /// (the earliest of the batch: a step that needs a later cut-off goes step by step).
    pub(super) replaces_before: i64,
    pub(super) creates: Vec<InstanceRow<'a>>,
    pub(super) updates: Vec<InstanceRow<'a>>,
    pub(super) link_clears: Vec<LinkRow<'a>>,
    pub(super) link_adds: Vec<LinkRow<'a>>,
    pub(super) traces: Vec<TraceRow<'a>>,
}

/// A stored answer.
#[derive(Debug)]
pub(super) struct AnswerRow<'a> {
    pub(super) actor: &'a str,
    pub(super) key: &'a str,
    pub(super) fingerprint: &'a str,
    pub(super) status: u16,
    pub(super) response: &'a str,
    pub(super) created_at: i64,
}

/// An instance to create, or to update from version `previous`.
#[derive(Debug)]
pub(super) struct InstanceRow<'a> {
    pub(super) id: &'a str,
    pub(super) process: &'a str,
    pub(super) definition_hash: &'a str,
    pub(super) state: &'a str,
    pub(super) data: &'a Map<String, Value>,
    pub(super) version: i64,
    pub(super) previous: Option<i64>,
    pub(super) created_by: &'a str,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) votes: &'a [Vote],
    pub(super) slas: &'a [SlaRecord],
    pub(super) timers: &'a [TimerState],
    pub(super) next_due_at: Option<i64>,
    pub(super) trace_hash: &'a str,
}

/// A link field to clear (no `to_id`) or one of its targets.
#[derive(Debug)]
pub(super) struct LinkRow<'a> {
    pub(super) from_id: &'a str,
    pub(super) relation: &'a str,
    pub(super) to_id: Option<&'a str>,
}

/// A trace record.
#[derive(Debug)]
pub(super) struct TraceRow<'a> {
    pub(super) instance_id: &'a str,
    pub(super) seq: i64,
    pub(super) at: i64,
    pub(super) actor: &'a str,
    pub(super) roles: &'a [String],
    pub(super) channel: &'a str,
    pub(super) kind: &'a str,
    pub(super) transition: Option<&'a str>,
    pub(super) from_state: Option<&'a str>,
    pub(super) to_state: &'a str,
    pub(super) data: &'a Map<String, Value>,
    /// Before-values and rule decisions, if any.
    pub(super) detail: Option<Box<serde_json::value::RawValue>>,
    pub(super) comment: Option<&'a str>,
    pub(super) definition_hash: &'a str,
    pub(super) prev_hash: &'a str,
    pub(super) hash: &'a str,
}

impl<'a> Bulk<'a> {
    /// The rows of `steps`, or `None` when the batch cannot be written set-wise: two of its
    /// steps write the same instance, key, link field or timers (they must apply one after the
    /// other, and one of them will be refused).
    pub(super) fn new(steps: &'a [Step]) -> Option<Bulk<'a>> {
        let mut bulk = Bulk {
            replaces_before: i64::MAX,
            ..Bulk::default()
        };
        let mut instances = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        let mut fields = std::collections::HashSet::new();
        for step in steps {
            if !step.outbox.is_empty() {
                return None;
            }
            if let Some(w) = &step.answer {
                let a = &w.answer;
                if !keys.insert((a.actor.as_str(), a.key.as_str())) {
                    return None;
                }
                bulk.replaces_before = bulk.replaces_before.min(w.replaces_before);
                bulk.answers.push(AnswerRow {
                    actor: &a.actor,
                    key: &a.key,
                    fingerprint: &a.fingerprint,
                    status: a.status,
                    response: &a.response,
                    created_at: a.created_at,
                });
            }
            for w in &step.writes {
                let i = &w.instance;
                if !instances.insert(i.id.as_str()) {
                    return None;
                }
                let row = InstanceRow {
                    id: &i.id,
                    process: &i.process,
                    definition_hash: &i.definition_hash,
                    state: &i.state,
                    data: &i.data,
                    version: i.version,
                    previous: w.previous_version,
                    created_by: &i.created_by,
                    created_at: i.created_at,
                    updated_at: i.updated_at,
                    votes: &i.votes,
                    slas: &i.slas,
                    timers: &i.timers,
                    next_due_at: i.next_due_at(),
                    trace_hash: &i.trace_hash,
                };
                match w.previous_version {
                    None => bulk.creates.push(row),
                    Some(_) => bulk.updates.push(row),
                }
            }
            for change in &step.links {
                if !fields.insert((change.from.as_str(), change.relation.as_str())) {
                    return None;
                }
                bulk.link_clears.push(LinkRow {
                    from_id: &change.from,
                    relation: &change.relation,
                    to_id: None,
                });
                for to in &change.to {
                    bulk.link_adds.push(LinkRow {
                        from_id: &change.from,
                        relation: &change.relation,
                        to_id: Some(to),
                    });
                }
            }
            for t in &step.trace {
                bulk.traces.push(TraceRow {
                    instance_id: &t.instance_id,
                    seq: t.seq,
                    at: t.at,
                    actor: &t.actor,
                    roles: &t.roles,
                    channel: t.channel.as_str(),
                    kind: t.kind.as_str(),
                    transition: t.transition.as_deref(),
                    from_state: t.from.as_deref(),
                    to_state: &t.to,
                    data: &t.data,
                    detail: super::rows::detail_json(t),
                    comment: t.comment.as_deref(),
                    definition_hash: &t.definition_hash,
                    prev_hash: &t.prev_hash,
                    hash: &t.hash,
                });
            }
        }
        Some(bulk)
    }
}

/// Why a set-based write was abandoned; the batch is then written step by step.
#[derive(Debug)]
pub(super) enum Refused {
    /// The rows could not be put in the database's batch form.
    Encoding(String),
    /// A row was not written: a version or key check found nothing to write.
    Row(&'static str),
    /// The database failed.
    Database(sqlx::Error),
    /// The database failed, on SQLite's writer used directly (see `sqlite_writer`).
    Sqlite(rusqlite::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Encoding(e) => write!(f, "rows not encodable: {e}"),
            Refused::Row(why) => write!(f, "a row was refused: {why}"),
            Refused::Database(e) => write!(f, "{e}"),
            Refused::Sqlite(e) => write!(f, "{e}"),
        }
    }
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Database(e)
    }
}

impl From<rusqlite::Error> for Refused {
    fn from(e: rusqlite::Error) -> Self {
        Refused::Sqlite(e)
    }
}
