//! How the in-memory store keeps trace records: encoded into bytes, since it keeps every
//! one for the life of the process. Texts that repeat from record to record (actors, roles,
//! states, transitions, field names, definition and rule-source hashes) are kept once and
//! named by number; a record's kind and channel take one byte together; numbers are
//! varints; a SHA-256 is kept as its 32 bytes, and a record's `prev_hash` that is the hash
//! of the record before it is not kept twice. The records of one shard are packed one after
//! another into chunks that never move. A record read back is the record written, field for
//! field.
//!
//! Kept as Rust values, a record of the bench's workload took about 800 bytes in a dozen
//! allocations, and handing out fresh pages for them was the largest part of a step; packed,
//! it takes about a hundred.

use super::memory_codec::{Reader, Texts, Writer, put_varint, tag};
use super::{Channel, RuleDecision, StoreError, TraceKind, TraceRecord};

/// Bytes of a chunk; a record longer than that gets a chunk of its own size.
const CHUNK: usize = 64 * 1024;

/// Where a record starts: its chunk in the high 32 bits, its offset in the low ones.
type Position = u64;

/// The trace logs of some instances.
#[derive(Debug, Default)]
pub(super) struct TraceLogs {
    /// The last record of each instance's log, by instance id.
    heads: foldhash::HashMap<String, Head>,
    chunks: Vec<Vec<u8>>,
    texts: Texts,
    /// Where a record is encoded before it is placed (reused).
    scratch: Vec<u8>,
}

#[derive(Debug)]
struct Head {
    last: Position,
    /// The last record's hash as written (hex), when it is a SHA-256: the next record's
    /// `prev_hash` is compared with it as text, so that a push decodes one hash, not three.
    hash: Option<[u8; 64]>,
}

impl TraceLogs {
    /// Appends `r` to the log of its instance.
    pub(super) fn push(&mut self, r: &TraceRecord) {
        let head = self.heads.get(r.instance_id.as_str());
        let chained = head
            .and_then(|h| h.hash.as_ref())
            .is_some_and(|h| h.as_slice() == r.prev_hash.as_bytes());
        let previous = head.map(|h| h.last);
        self.scratch.clear();
        let mut w = Writer {
            out: &mut self.scratch,
            texts: Some(&mut self.texts),
        };
        let sha = w.record(r, chained);
        let at = self.place(previous);
        let head = Head {
            last: at,
            hash: sha.then(|| r.hash.as_bytes().try_into().ok()).flatten(),
        };
        match self.heads.get_mut(r.instance_id.as_str()) {
            Some(h) => *h = head,
            None => {
                self.heads.insert(r.instance_id.clone(), head);
            }
        }
    }

    /// Copies the encoded record in `scratch` into a chunk, preceded by the distance back
    /// to `previous`, the instance's record before it; returns where it starts.
    fn place(&mut self, previous: Option<Position>) -> Position {
        let room = self.scratch.len() + 10;
        let fits = self
            .chunks
            .last()
            .is_some_and(|c| c.capacity() - c.len() >= room);
        if !fits {
            self.chunks.push(Vec::with_capacity(room.max(CHUNK)));
        }
        let index = self.chunks.len() - 1;
        let chunk = &mut self.chunks[index];
        let at = ((index as u64) << 32) | chunk.len() as u64;
        put_varint(chunk, previous.map_or(0, |p| at - p));
        chunk.extend_from_slice(&self.scratch);
        at
    }

    /// The records of `instance_id` in order.
    pub(super) fn records(&self, instance_id: &str) -> Result<Vec<TraceRecord>, StoreError> {
        let Some(head) = self.heads.get(instance_id) else {
            return Ok(Vec::new());
        };
        let corrupt = || StoreError::Corrupt(format!("kept trace of {instance_id}"));
        let mut starts = Vec::new();
        let mut at = head.last;
        loop {
            let mut r = self.reader(at).ok_or_else(corrupt)?;
            let back = r.varint().ok_or_else(corrupt)?;
            starts.push(r);
            if back == 0 {
                break;
            }
            at = at.checked_sub(back).ok_or_else(corrupt)?;
        }
        let mut records: Vec<TraceRecord> = Vec::with_capacity(starts.len());
        for mut r in starts.into_iter().rev() {
            let last_hash = records.last().map(|p| p.hash.as_str());
            let record = r.record(instance_id, last_hash).ok_or_else(corrupt)?;
            records.push(record);
        }
        Ok(records)
    }

    fn reader(&self, at: Position) -> Option<Reader<'_>> {
        let chunk = self.chunks.get(usize::try_from(at >> 32).ok()?)?;
        Some(Reader {
            bytes: chunk,
            at: usize::try_from(at & u64::from(u32::MAX)).ok()?,
            texts: Some(&self.texts),
        })
    }
}

/// A record's kind and channel in one byte (numbering their names in the texts took two
/// lookups of every record): the kind's number times four, plus the channel's.
fn step_code(kind: TraceKind, channel: Channel) -> u8 {
    let kind = match kind {
        TraceKind::Created => 0,
        TraceKind::Transition => 1,
        TraceKind::Automatic => 2,
        TraceKind::Vote => 3,
        TraceKind::Timer => 4,
        TraceKind::Sla => 5,
        TraceKind::Migration => 6,
    };
    let channel = match channel {
        Channel::Api => 0,
        Channel::Timer => 1,
        Channel::System => 2,
    };
    kind * 4 + channel
}

/// The kind and channel of [`step_code`]'s byte.
fn step_of(code: u8) -> Option<(TraceKind, Channel)> {
    let kind = match code / 4 {
        0 => TraceKind::Created,
        1 => TraceKind::Transition,
        2 => TraceKind::Automatic,
        3 => TraceKind::Vote,
        4 => TraceKind::Timer,
        5 => TraceKind::Sla,
        6 => TraceKind::Migration,
        _ => return None,
    };
    let channel = match code % 4 {
        0 => Channel::Api,
        1 => Channel::Timer,
        2 => Channel::System,
        _ => return None,
    };
    Some((kind, channel))
}

impl Writer<'_> {
    /// `r` without its instance id (its log's key); `chained`: its `prev_hash` is the hash
    /// of the log's last record. Returns whether its hash was kept as a SHA-256.
    fn record(&mut self, r: &TraceRecord, chained: bool) -> bool {
        self.int(r.seq);
        self.int(r.at);
        self.text(&r.actor);
        self.uint(r.roles.len());
        for role in r.roles.iter() {
            self.text(role);
        }
        self.out.push(step_code(r.kind, r.channel));
        self.opt_text(r.transition.as_deref());
        self.opt_text(r.from.as_deref());
        self.text(&r.to);
        self.object(&r.data);
        self.object(&r.before);
        self.uint(r.rules.len());
        for d in &r.rules {
            self.text(&d.rule);
            self.text(&d.module);
            self.opt_text(d.function.as_deref());
            self.text(&d.source_hash);
            self.value(&d.result);
        }
        match &r.comment {
            None => self.out.push(0),
            Some(c) => {
                self.uint(c.len() + 1);
                self.out.extend_from_slice(c.as_bytes());
            }
        }
        self.text(&r.definition_hash);
        if chained {
            self.out.push(tag::CHAINED);
        } else {
            self.hash(&r.prev_hash);
        }
        self.hash(&r.hash)
    }
}

impl Reader<'_> {
    fn record(&mut self, instance_id: &str, last_hash: Option<&str>) -> Option<TraceRecord> {
        let seq = self.int()?;
        let at = self.int()?;
        let actor = self.text()?;
        let roles = self.list(Self::text)?;
        let (kind, channel) = step_of(self.byte()?)?;
        let transition = self.opt_text()?;
        let from = self.opt_text()?;
        let to = self.text()?;
        let data = self.object()?;
        let before = self.object()?;
        let rules = self.list(|r| {
            Some(RuleDecision {
                rule: r.text()?,
                module: r.text()?,
                function: r.opt_text()?,
                source_hash: r.text()?,
                result: r.value()?,
            })
        })?;
        let comment = match self.len()? {
            0 => None,
            n => Some(self.str(n - 1)?),
        };
        let definition_hash = self.text()?;
        let prev_hash = match self.peek()? {
            tag::CHAINED => {
                self.at += 1;
                last_hash?.to_owned()
            }
            _ => self.hash()?,
        };
        let hash = self.hash()?;
        Some(TraceRecord {
            instance_id: instance_id.to_owned(),
            seq,
            at,
            actor,
            roles: roles.into(),
            channel,
            kind,
            transition,
            from,
            to,
            data,
            before,
            rules,
            comment,
            definition_hash,
            prev_hash,
            hash,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value, json};

    #[test]
    fn every_kind_and_channel_of_a_step_is_read_back_from_its_byte() {
        let mut read = 0;
        for code in 0..=u8::MAX {
            if let Some((kind, channel)) = step_of(code) {
                assert_eq!(step_code(kind, channel), code);
                read += 1;
            }
        }
        assert_eq!(read, 7 * 3, "seven kinds on three channels");
    }

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("an object"),
        }
    }

    fn record(id: &str, seq: i64, prev_hash: &str, hash: &str) -> TraceRecord {
        TraceRecord {
            instance_id: id.into(),
            seq,
            at: 1_700_000_000_123,
            actor: "dana".into(),
            roles: vec!["service_desk".into(), "requester".into()].into(),
            channel: Channel::Api,
            kind: TraceKind::Transition,
            transition: Some("await".into()),
            from: Some("l1".into()),
            to: "pending".into(),
            data: object(json!({"pending_reason": "awaiting_customer", "n": 3})),
            before: object(json!({"pending_reason": null})),
            rules: vec![RuleDecision {
                rule: "transitions.await.guard".into(),
                module: "event".into(),
                function: Some("can_wait".into()),
                source_hash: "ab".repeat(32),
                result: json!(true),
            }],
            comment: Some("called the customer".into()),
            definition_hash: "cd".repeat(32),
            prev_hash: prev_hash.into(),
            hash: hash.into(),
        }
    }

    fn hash(n: u8) -> String {
        format!("{n:02x}").repeat(32)
    }

    fn kept(records: &[TraceRecord]) -> TraceLogs {
        let mut logs = TraceLogs::default();
        for r in records {
            logs.push(r);
        }
        logs
    }

    #[test]
    fn a_kept_record_reads_back_field_for_field() {
        let mut odd = record("i-1", 4, "not-hex", &"AB".repeat(32));
        odd.channel = Channel::System;
        odd.kind = TraceKind::Sla;
        odd.transition = None;
        odd.from = None;
        odd.comment = None;
        odd.rules[0].function = None;
        odd.data = object(json!({
            "big": u64::MAX, "neg": -7, "pi": 3.25, "ok": false, "no": null,
            "list": [1, "two", {"z": 1, "a": [true]}], "text": "ünïcode \"quoted\"",
        }));
        odd.before = Map::new();
        odd.rules.push(RuleDecision {
            rule: "sla.resolution".into(),
            module: "event.yaml".into(),
            function: None,
            source_hash: "short".into(),
            result: json!({"fields": {"b": 2, "a": 1}}),
        });
        let written = vec![
            record("i-1", 1, "", &hash(1)),
            record("i-1", 2, &hash(1), &hash(2)),
            record("i-1", 3, &hash(9), "not-hex"),
            odd,
            record("i-1", 5, &"AB".repeat(32), &hash(5)),
            record("i-1", i64::MIN, &hash(5), &hash(6)),
        ];
        let logs = kept(&written);
        assert_eq!(logs.records("i-1").expect("readable"), written);
    }

    #[test]
    fn the_logs_of_interleaved_instances_keep_their_own_records_in_order() {
        let mut logs = TraceLogs::default();
        let mut written: Vec<Vec<TraceRecord>> = vec![Vec::new(); 3];
        for seq in 1..=2_000i64 {
            let i = (seq % 3) as usize;
            let prev = written[i].last().map_or(String::new(), |r| r.hash.clone());
            let r = record(&format!("i-{i}"), seq, &prev, &hash((seq % 251) as u8));
            logs.push(&r);
            written[i].push(r);
        }
        assert!(logs.chunks.len() > 1, "the records span several chunks");
        for (i, records) in written.iter().enumerate() {
            assert_eq!(logs.records(&format!("i-{i}")).expect("readable"), *records);
        }
        assert_eq!(logs.records("i-3").expect("readable"), Vec::new());
    }

    #[test]
    fn a_record_longer_than_a_chunk_gets_a_chunk_of_its_own() {
        let mut long = record("i-1", 2, &hash(1), &hash(2));
        long.comment = Some("x".repeat(CHUNK * 2));
        let written = vec![
            record("i-1", 1, "", &hash(1)),
            long,
            record("i-1", 3, &hash(2), &hash(3)),
        ];
        let logs = kept(&written);
        assert_eq!(logs.records("i-1").expect("readable"), written);
        assert!(logs.chunks.iter().all(|c| c.len() <= c.capacity()));
    }

    #[test]
    fn a_chained_record_with_a_comment_and_a_rule_decision_takes_under_128_bytes() {
        let mut logs = kept(&[record("i-1", 1, "", &hash(1))]);
        let before = logs.chunks[0].len();
        logs.push(&record("i-1", 2, &hash(1), &hash(2)));
        let size = logs.chunks[0].len() - before;
        assert!(size < 128, "{size} bytes");
    }

    #[test]
    fn texts_that_repeat_are_kept_once() {
        let logs = kept(&[
            record("i-1", 1, "", &hash(1)),
            record("i-2", 1, "", &hash(1)),
            record("i-1", 2, &hash(1), &hash(2)),
        ]);
        let mut texts: Vec<&str> = logs.texts.all().collect();
        let count = texts.len();
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), count);
        assert!(texts.contains(&"pending_reason"));
    }
}
