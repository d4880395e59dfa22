//! How the in-memory store keeps an instance: the columns its own queries filter on, and
//! the rest packed into bytes (see [`super::memory_codec`]).
//!
//! Kept as the engine's `Arc<InstanceRecord>`, the store shared every record with the
//! engine's copy of the instances it wrote last, so the next step on an instance had to
//! copy the record and its data (every field name and value) before it could change them:
//! work the durable stores never cause, since they keep rows, not the engine's values.
//! Packed, the engine's copy is its own, as it is over SQLite or PostgreSQL.

use std::sync::Arc;

use super::memory_codec::{Reader, Writer};
use super::{Decision, InstanceRecord, SlaRecord, StoreError, TimerState, Vote};

/// An instance as the in-memory store keeps it.
#[derive(Debug)]
pub(super) struct KeptInstance {
    pub(super) version: i64,
    pub(super) process: String,
    pub(super) state: String,
    pub(super) created_by: String,
    pub(super) updated_at: i64,
    /// When its earliest running clock is due.
    pub(super) next_due_at: Option<i64>,
    /// The other fields, its trace hash first.
    packed: Box<[u8]>,
}

/// Room reserved for the packed fields: the shipped processes' instances fit.
const PACKED_CAPACITY: usize = 1024;

impl KeptInstance {
    /// `record` as kept.
    pub(super) fn new(record: &InstanceRecord) -> Self {
        let mut out = Vec::with_capacity(PACKED_CAPACITY);
        let mut w = Writer {
            out: &mut out,
            texts: None,
        };
        // Hashes as text: decoding hex to bytes costs more than the 64 bytes it saves here.
        w.text(&record.trace_hash);
        w.text(&record.id);
        w.text(&record.definition_hash);
        w.object(&record.data);
        w.int(record.created_at);
        w.uint(record.votes.len());
        for v in &record.votes {
            w.text(&v.transition);
            w.text(&v.actor);
            w.out.push(match v.decision {
                Decision::Approve => 0,
                Decision::Reject => 1,
            });
            w.opt_text(v.comment.as_deref());
            w.int(v.at);
        }
        w.uint(record.slas.len());
        for s in &record.slas {
            w.text(&s.metric);
            w.int(s.target_ms);
            w.opt_text(s.calendar.as_deref());
            w.int(s.started_at);
            w.opt_int(s.deadline);
            w.int(s.elapsed_ms);
            w.opt_int(s.running_since);
            w.int(s.paused_ms);
            for at in [s.paused_since, s.warned_at, s.breached_at, s.stopped_at] {
                w.opt_int(at);
            }
        }
        w.uint(record.timers.len());
        for t in &record.timers {
            w.text(&t.name);
            w.int(t.due_at);
            w.opt_int(t.paused_left_ms);
        }
        Self {
            version: record.version,
            process: record.process.clone(),
            state: record.state.clone(),
            created_by: record.created_by.clone(),
            updated_at: record.updated_at,
            next_due_at: record.next_due_at(),
            packed: out.into_boxed_slice(),
        }
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            bytes: &self.packed,
            at: 0,
            texts: None,
        }
    }

    /// The record as written.
    pub(super) fn record(&self) -> Result<InstanceRecord, StoreError> {
        self.read()
            .ok_or_else(|| StoreError::Corrupt("kept instance".into()))
    }

    fn read(&self) -> Option<InstanceRecord> {
        let mut r = self.reader();
        let trace_hash = r.text()?;
        let id = r.text()?;
        let definition_hash = r.text()?;
        let data = Arc::new(r.object()?);
        let created_at = r.int()?;
        let votes = r.list(|r| {
            Some(Vote {
                transition: r.text()?,
                actor: r.text()?,
                decision: match r.byte()? {
                    0 => Decision::Approve,
                    1 => Decision::Reject,
                    _ => return None,
                },
                comment: r.opt_text()?,
                at: r.int()?,
            })
        })?;
        let slas = r.list(|r| {
            Some(SlaRecord {
                metric: r.text()?,
                target_ms: r.int()?,
                calendar: r.opt_text()?,
                started_at: r.int()?,
                deadline: r.opt_int()?,
                elapsed_ms: r.int()?,
                running_since: r.opt_int()?,
                paused_ms: r.int()?,
                paused_since: r.opt_int()?,
                warned_at: r.opt_int()?,
                breached_at: r.opt_int()?,
                stopped_at: r.opt_int()?,
            })
        })?;
        let timers = r.list(|r| {
            Some(TimerState {
                name: r.text()?,
                due_at: r.int()?,
                paused_left_ms: r.opt_int()?,
            })
        })?;
        Some(InstanceRecord {
            id,
            process: self.process.clone(),
            definition_hash,
            state: self.state.clone(),
            data,
            version: self.version,
            created_by: self.created_by.clone(),
            created_at,
            updated_at: self.updated_at,
            votes,
            slas,
            trace_hash,
            timers,
        })
    }

    /// The hash of its last trace record, read without reading the rest.
    pub(super) fn trace_hash(&self) -> Result<String, StoreError> {
        self.reader()
            .text()
            .ok_or_else(|| StoreError::Corrupt("kept instance".into()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn record() -> InstanceRecord {
        let data = json!({"summary": "printer \"3\" down", "n": 1.5, "tags": ["a", null]});
        InstanceRecord {
            id: "0190".into(),
            process: "event".into(),
            definition_hash: "ab".repeat(32),
            state: "l1".into(),
            data: Arc::new(data.as_object().cloned().unwrap_or_default()),
            version: 7,
            created_by: "li".into(),
            created_at: 1,
            updated_at: 2,
            votes: vec![
                Vote {
                    transition: "approve".into(),
                    actor: "wang".into(),
                    decision: Decision::Approve,
                    comment: Some("ok".into()),
                    at: 3,
                },
                Vote {
                    transition: "approve".into(),
                    actor: "zhao".into(),
                    decision: Decision::Reject,
                    comment: None,
                    at: 4,
                },
            ],
            slas: vec![SlaRecord {
                metric: "resolution".into(),
                target_ms: 3_600_000,
                calendar: Some("workdays".into()),
                started_at: 4,
                deadline: None,
                elapsed_ms: 5,
                running_since: None,
                paused_ms: 0,
                paused_since: Some(6),
                warned_at: None,
                breached_at: Some(-1),
                stopped_at: None,
            }],
            trace_hash: "cd".repeat(32),
            timers: vec![
                TimerState {
                    name: "resolution".into(),
                    due_at: 90,
                    paused_left_ms: None,
                },
                TimerState {
                    name: "response".into(),
                    due_at: i64::MAX,
                    paused_left_ms: Some(10),
                },
            ],
        }
    }

    #[test]
    fn an_instance_read_back_is_the_instance_kept_field_for_field() {
        let record = record();
        let kept = KeptInstance::new(&record);
        assert_eq!(kept.record().unwrap(), record);
        assert_eq!(kept.trace_hash().unwrap(), record.trace_hash);
        assert_eq!(kept.next_due_at, Some(90));
        assert_eq!((kept.version, kept.updated_at), (7, 2));
        assert_eq!(
            (&*kept.process, &*kept.state, &*kept.created_by),
            ("event", "l1", "li")
        );
    }

    #[test]
    fn an_instance_with_no_trace_votes_slas_or_clocks_reads_back_as_written() {
        let mut record = record();
        record.trace_hash = crate::store::GENESIS.into();
        record.definition_hash = "not-hex".into();
        record.votes.clear();
        record.slas.clear();
        record.timers.clear();
        let kept = KeptInstance::new(&record);
        assert_eq!(kept.record().unwrap(), record);
        assert_eq!(kept.trace_hash().unwrap(), "");
        assert_eq!(kept.next_due_at, None);
    }
}
