//! How the in-memory store keeps trace records: compactly, since it keeps every one for
//! the life of the process. The texts that repeat from record to record (actors, roles,
//! states, transitions, field names, definition and rule-source hashes) are kept once and
//! shared; a record's own hashes are kept as their 32 bytes. A record read back is the
//! record written, field for field.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Channel, RuleDecision, TraceKind, TraceRecord};

/// Texts kept once for all records. It only grows, as the store's records do: it never
/// holds a text that no kept record holds.
#[derive(Debug, Default)]
pub(super) struct Shared {
    texts: foldhash::HashSet<Arc<str>>,
    roles: foldhash::HashMap<Vec<String>, Arc<[String]>>,
}

impl Shared {
    fn text(&mut self, s: &str) -> Arc<str> {
        if let Some(t) = self.texts.get(s) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(s);
        self.texts.insert(t.clone());
        t
    }

    fn opt_text(&mut self, s: Option<&str>) -> Option<Arc<str>> {
        s.map(|s| self.text(s))
    }

    fn roles(&mut self, roles: Vec<String>) -> Arc<[String]> {
        if let Some(r) = self.roles.get(roles.as_slice()) {
            return r.clone();
        }
        let r: Arc<[String]> = Arc::from(roles.as_slice());
        self.roles.insert(roles, r.clone());
        r
    }

    fn fields(&mut self, map: Map<String, Value>) -> Box<[(Arc<str>, Value)]> {
        map.into_iter().map(|(k, v)| (self.text(&k), v)).collect()
    }
}

/// Each byte's value as a lowercase hex digit; 0xff for any other byte.
static NIBBLE: [u8; 256] = {
    let mut table = [0xffu8; 256];
    let mut i = 0;
    while i < 16 {
        table[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// A SHA-256 in hex kept as its bytes; any other text as it is.
#[derive(Debug)]
enum Hash {
    Sha256([u8; 32]),
    Text(Box<str>),
}

impl Hash {
    fn new(s: String) -> Hash {
        let digits = s.as_bytes();
        if digits.len() != 64 {
            return Hash::Text(s.into_boxed_str());
        }
        let mut bytes = [0u8; 32];
        // Any byte that is not a lowercase hex digit sets a high bit in `bad`.
        let mut bad = 0u8;
        for (b, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let (hi, lo) = (NIBBLE[usize::from(pair[0])], NIBBLE[usize::from(pair[1])]);
            bad |= hi | lo;
            *b = (hi << 4) | (lo & 15);
        }
        if bad & 0xf0 == 0 {
            Hash::Sha256(bytes)
        } else {
            Hash::Text(s.into_boxed_str())
        }
    }

    fn to_text(&self) -> String {
        match self {
            Hash::Sha256(bytes) => super::chain::lower_hex(bytes),
            Hash::Text(s) => s.to_string(),
        }
    }
}

/// A rule decision, its names and source hash shared.
#[derive(Debug)]
struct KeptDecision {
    rule: Arc<str>,
    module: Arc<str>,
    function: Option<Arc<str>>,
    source_hash: Arc<str>,
    result: Value,
}

/// A trace record without its instance id (its log's key).
#[derive(Debug)]
struct Kept {
    seq: i64,
    at: i64,
    actor: Arc<str>,
    roles: Arc<[String]>,
    channel: Channel,
    kind: TraceKind,
    transition: Option<Arc<str>>,
    from: Option<Arc<str>>,
    to: Arc<str>,
    data: Box<[(Arc<str>, Value)]>,
    before: Box<[(Arc<str>, Value)]>,
    rules: Box<[KeptDecision]>,
    comment: Option<Box<str>>,
    definition_hash: Arc<str>,
    prev_hash: Hash,
    hash: Hash,
}

impl Kept {
    fn new(r: TraceRecord, shared: &mut Shared) -> Kept {
        let rules = r
            .rules
            .into_iter()
            .map(|d| KeptDecision {
                rule: shared.text(&d.rule),
                module: shared.text(&d.module),
                function: shared.opt_text(d.function.as_deref()),
                source_hash: shared.text(&d.source_hash),
                result: d.result,
            })
            .collect();
        Kept {
            seq: r.seq,
            at: r.at,
            actor: shared.text(&r.actor),
            roles: shared.roles(r.roles),
            channel: r.channel,
            kind: r.kind,
            transition: shared.opt_text(r.transition.as_deref()),
            from: shared.opt_text(r.from.as_deref()),
            to: shared.text(&r.to),
            data: shared.fields(r.data),
            before: shared.fields(r.before),
            rules,
            comment: r.comment.map(String::into_boxed_str),
            definition_hash: shared.text(&r.definition_hash),
            prev_hash: Hash::new(r.prev_hash),
            hash: Hash::new(r.hash),
        }
    }

    fn record(&self, instance_id: &str) -> TraceRecord {
        let fields = |f: &[(Arc<str>, Value)]| -> Map<String, Value> {
            f.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
        };
        let text = |t: &Option<Arc<str>>| t.as_deref().map(str::to_owned);
        TraceRecord {
            instance_id: instance_id.to_owned(),
            seq: self.seq,
            at: self.at,
            actor: self.actor.to_string(),
            roles: self.roles.to_vec(),
            channel: self.channel,
            kind: self.kind,
            transition: text(&self.transition),
            from: text(&self.from),
            to: self.to.to_string(),
            data: fields(&self.data),
            before: fields(&self.before),
            rules: self
                .rules
                .iter()
                .map(|d| RuleDecision {
                    rule: d.rule.to_string(),
                    module: d.module.to_string(),
                    function: text(&d.function),
                    source_hash: d.source_hash.to_string(),
                    result: d.result.clone(),
                })
                .collect(),
            comment: self.comment.as_deref().map(str::to_owned),
            definition_hash: self.definition_hash.to_string(),
            prev_hash: self.prev_hash.to_text(),
            hash: self.hash.to_text(),
        }
    }
}

/// An instance's trace records in order, kept in chunks that are never regrown: the first
/// holds [`FIRST_CHUNK`] records, each next one twice as many up to [`LAST_CHUNK`]. An
/// append never moves a record, and a short trace takes little room.
#[derive(Debug, Default)]
pub(super) struct TraceLog(Vec<Vec<Kept>>);

/// Records in the first chunk of a [`TraceLog`].
const FIRST_CHUNK: usize = 4;

/// Records in a [`TraceLog`]'s largest chunks.
const LAST_CHUNK: usize = 64;

impl TraceLog {
    pub(super) fn push(&mut self, r: TraceRecord, shared: &mut Shared) {
        let kept = Kept::new(r, shared);
        match self.0.last_mut() {
            Some(chunk) if chunk.len() < chunk.capacity() => chunk.push(kept),
            last => {
                let size = last.map_or(FIRST_CHUNK, |c| (c.capacity() * 2).min(LAST_CHUNK));
                let mut chunk = Vec::with_capacity(size);
                chunk.push(kept);
                self.0.push(chunk);
            }
        }
    }

    pub(super) fn records(&self, instance_id: &str) -> Vec<TraceRecord> {
        self.0
            .iter()
            .flatten()
            .map(|k| k.record(instance_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: i64, hash: &str, prev_hash: &str) -> TraceRecord {
        let Value::Object(data) = json!({"pending_reason": "awaiting_customer", "n": 3}) else {
            unreachable!()
        };
        let Value::Object(before) = json!({"pending_reason": null}) else {
            unreachable!()
        };
        TraceRecord {
            instance_id: "i-1".into(),
            seq,
            at: 1_700_000_000_123,
            actor: "dana".into(),
            roles: vec!["service_desk".into(), "requester".into()],
            channel: Channel::Api,
            kind: TraceKind::Transition,
            transition: Some("await".into()),
            from: Some("l1".into()),
            to: "pending".into(),
            data,
            before,
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

    #[test]
    fn a_kept_record_reads_back_field_for_field() {
        let mut shared = Shared::default();
        let mut log = TraceLog::default();
        let written = vec![
            record(1, &"0f".repeat(32), "genesis"),
            record(2, "not-hex", &"0f".repeat(32)),
            record(3, &"AB".repeat(32), "not-hex"),
        ];
        for r in written.clone() {
            log.push(r, &mut shared);
        }
        assert_eq!(log.records("i-1"), written);
    }

    #[test]
    fn a_long_trace_keeps_its_order_across_chunks() {
        let mut shared = Shared::default();
        let mut log = TraceLog::default();
        for seq in 1..=(LAST_CHUNK as i64 * 3 + 5) {
            log.push(record(seq, &"0f".repeat(32), "genesis"), &mut shared);
        }
        let seqs: Vec<i64> = log.records("i-1").iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=(LAST_CHUNK as i64 * 3 + 5)).collect::<Vec<_>>());
        let sizes: Vec<usize> = log.0.iter().map(Vec::capacity).collect();
        assert_eq!(sizes[..6], [4, 8, 16, 32, 64, 64]);
        assert!(log.0.iter().all(|c| c.capacity() <= LAST_CHUNK));
    }

    #[test]
    fn texts_that_repeat_are_kept_once() {
        let mut shared = Shared::default();
        let mut log = TraceLog::default();
        for seq in 1..=10 {
            log.push(record(seq, &"0f".repeat(32), "genesis"), &mut shared);
        }
        let first = log.0.first().and_then(|c| c.first()).expect("a record");
        let last = log.0.last().and_then(|c| c.last()).expect("a record");
        assert!(Arc::ptr_eq(&first.definition_hash, &last.definition_hash));
        assert!(Arc::ptr_eq(&first.roles, &last.roles));
        assert!(Arc::ptr_eq(&first.data[0].0, &last.data[0].0));
    }
}
