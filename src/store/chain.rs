//! The hash chain of an instance's trace: each record carries the SHA-256 of its canonical
//! form, which includes the hash of the record before it, so that changing, removing or
//! reordering a record breaks the chain from there on. The instance row keeps the hash of
//! its last record, so removing records at the end is detected too.
//!
//! The canonical form is a JSON array of the record's fields in a fixed order, objects with
//! their keys sorted, no spaces: anyone can recompute it from an export.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::TraceRecord;

/// The `prev_hash` of an instance's first record.
pub const GENESIS: &str = "";

impl TraceRecord {
    /// The canonical text the hash is taken of.
    pub fn canonical(&self) -> String {
        let mut out = Vec::with_capacity(CANONICAL_CAPACITY);
        self.write_canonical(&mut out);
        // Only JSON text and ASCII punctuation are written.
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes the canonical form to `out`.
    fn write_canonical(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        put_str(out, &self.instance_id);
        out.push(b',');
        put_int(out, self.seq);
        out.push(b',');
        put_int(out, self.at);
        out.push(b',');
        put_str(out, &self.actor);
        out.extend_from_slice(b",[");
        for (i, r) in self.roles.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            put_str(out, r);
        }
        out.extend_from_slice(b"],");
        put_str(out, self.channel.as_str());
        out.push(b',');
        put_str(out, self.kind.as_str());
        for text in [
            self.transition.as_deref(),
            self.from.as_deref(),
            Some(&self.to),
        ] {
            out.push(b',');
            put_opt(out, text);
        }
        out.push(b',');
        put_object(out, &self.data);
        out.push(b',');
        put_opt(out, self.comment.as_deref());
        out.push(b',');
        put_str(out, &self.definition_hash);
        out.push(b',');
        put_str(out, &self.prev_hash);
        // Records without before-values or rule decisions keep the 14-element form that
        // records had before traces carried them, so their hashes still hold.
        if !self.before.is_empty() || !self.rules.is_empty() {
            out.extend_from_slice(b",{\"before\":");
            put_object(out, &self.before);
            out.extend_from_slice(b",\"rules\":[");
            for (i, d) in self.rules.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // A decision's keys in sorted order; `function` only when there is one.
                if let Some(f) = &d.function {
                    out.extend_from_slice(b"{\"function\":");
                    put_str(out, f);
                    out.extend_from_slice(b",\"module\":");
                } else {
                    out.extend_from_slice(b"{\"module\":");
                }
                put_str(out, &d.module);
                out.extend_from_slice(b",\"result\":");
                put_value(out, &d.result);
                out.extend_from_slice(b",\"rule\":");
                put_str(out, &d.rule);
                out.extend_from_slice(b",\"source_hash\":");
                put_str(out, &d.source_hash);
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
        out.push(b']');
    }

    /// The SHA-256 (hex) of its canonical form, written into the thread's buffer and
    /// hashed in one call.
    pub fn compute_hash(&self) -> String {
        CANONICAL.with_borrow_mut(|out| {
            out.clear();
            self.write_canonical(out);
            let digest = Sha256::digest(&out[..]);
            if out.capacity() > CANONICAL_KEPT {
                *out = Vec::with_capacity(CANONICAL_CAPACITY);
            }
            super::hex_digest::lower_hex(&digest)
        })
    }

    /// Chains it after a record whose hash is `prev_hash`: sets both hashes.
    pub fn chain_after(&mut self, prev_hash: String) {
        self.prev_hash = prev_hash;
        self.hash = self.compute_hash();
    }
}

/// Room reserved for a record's canonical text: most records of the shipped processes fit.
const CANONICAL_CAPACITY: usize = 1024;

/// The most room the thread's buffer keeps after a large record.
const CANONICAL_KEPT: usize = 64 * 1024;

thread_local! {
    /// Each thread's buffer for the canonical text it hashes: every step hashes a few
    /// records, and reusing one buffer saves allocating and freeing a block for each.
    static CANONICAL: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(Vec::with_capacity(CANONICAL_CAPACITY));
}

/// Appends a number, boolean or null (or a string that needs escapes) as `serde_json`
/// writes it (writing into a buffer cannot fail).
fn put_scalar(out: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// Appends a JSON string. Text with no quote, backslash or control character is copied as
/// it is, which is what `serde_json` writes for it too; other text goes through
/// `serde_json`'s escaping.
fn put_str(out: &mut Vec<u8>, text: &str) {
    if needs_no_escape(text.as_bytes()) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        put_scalar(out, text);
    }
}

/// No quote, backslash or control character in `bytes`. Checked eight bytes at a time in a
/// `u64` (every record hashed scans a few hundred bytes, most of them in hashes and ids).
fn needs_no_escape(bytes: &[u8]) -> bool {
    /// Each byte 1 / 0x80.
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    // Some byte of `w` is below `n` (exact for `n` up to 0x80).
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    // Some byte of `w` is `b`.
    let has = |w: u64, b: u8| below(w ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    let mut bad = 0;
    for word in &mut words {
        let w = u64::from_le_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        bad |= below(w, 0x20) | has(w, b'"') | has(w, b'\\');
    }
    bad == 0 && (words.remainder().iter()).all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    put_scalar(out, &n);
}

fn put_opt(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(t) => put_str(out, t),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an object with its keys sorted. Most objects of a trace record have one key or
/// keys already in order; only the others are copied into a sorted list.
fn put_object(out: &mut Vec<u8>, map: &Map<String, Value>) {
    out.push(b'{');
    if map.keys().is_sorted() {
        put_entries(out, map.iter());
    } else {
        let mut entries: Vec<(&String, &Value)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        put_entries(out, entries.into_iter());
    }
    out.push(b'}');
}

fn put_entries<'v>(out: &mut Vec<u8>, entries: impl Iterator<Item = (&'v String, &'v Value)>) {
    for (i, (k, v)) in entries.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        put_str(out, k);
        out.push(b':');
        put_value(out, v);
    }
}

/// `value` as canonical JSON: every object's keys sorted, no spaces.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::new();
    put_value(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `value` as JSON with every object's keys sorted.
fn put_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(m) => put_object(out, m),
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                put_value(out, v);
            }
            out.push(b']');
        }
        Value::String(s) => put_str(out, s),
        scalar => put_scalar(out, scalar),
    }
}

/// What is wrong with one record of an instance's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// Its content no longer matches its hash.
    Changed,
    /// Records before it (or, at the end, after the last) are gone.
    Missing,
    /// It does not follow the record before it.
    Reordered,
    /// It carries no hash (written before traces were chained).
    Unhashed,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainBreak::Changed => "changed: its content does not match its hash",
            ChainBreak::Missing => "missing: records are gone",
            ChainBreak::Reordered => "reordered: it does not follow the record before it",
            ChainBreak::Unhashed => "unhashed: written before traces were chained",
        })
    }
}

/// Checks the trace of one instance whose row says it has `version` records, the last with
/// hash `last_hash`; returns each break as (sequence number, what), in order.
pub fn verify_chain(
    trace: &[TraceRecord],
    version: i64,
    last_hash: &str,
) -> Vec<(i64, ChainBreak)> {
    let mut breaks = Vec::new();
    let mut prev_hash = GENESIS.to_owned();
    let mut prev_seq = 0;
    // A break is reported once: the record after a broken one is not blamed for its link.
    let mut prev_intact = true;
    for r in trace {
        let expected = prev_seq + 1;
        let what = if r.hash.is_empty() {
            Some(ChainBreak::Unhashed)
        } else if r.hash != r.compute_hash() {
            // A record moved to another sequence number still matches its hash there.
            let moved = (1..=version.max(trace.len() as i64))
                .filter(|k| *k != r.seq)
                .any(|k| {
                    let mut at = r.clone();
                    at.seq = k;
                    at.compute_hash() == r.hash
                });
            Some(if moved {
                ChainBreak::Reordered
            } else {
                ChainBreak::Changed
            })
        } else if r.seq > expected {
            Some(ChainBreak::Missing)
        } else if r.seq < expected || (prev_intact && r.prev_hash != prev_hash) {
            Some(ChainBreak::Reordered)
        } else {
            None
        };
        prev_intact = !matches!(
            what,
            Some(ChainBreak::Changed | ChainBreak::Reordered | ChainBreak::Unhashed)
        );
        if let Some(what) = what {
            breaks.push((r.seq, what));
        }
        prev_hash = r.hash.clone();
        prev_seq = r.seq;
    }
    if prev_seq < version || (!last_hash.is_empty() && last_hash != prev_hash) {
        breaks.push((prev_seq + 1, ChainBreak::Missing));
    }
    breaks
}

/// A checkpoint: the heads of the instances' chains that changed since the checkpoint
/// before, chained to that checkpoint by hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// 1, 2, 3...
    pub seq: i64,
    /// When it was taken, ms; the next one lists instances updated at or after this time.
    pub at: i64,
    /// The previous checkpoint's hash ([`GENESIS`] for the first).
    pub prev_hash: String,
    /// SHA-256 (hex) of its canonical form.
    pub hash: String,
    /// The heads it saw.
    pub entries: Vec<CheckpointEntry>,
}

/// The head of one instance's chain as a checkpoint saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    /// The instance.
    pub instance_id: String,
    /// Its last trace record then.
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
}

impl Checkpoint {
    /// Checkpoint `seq` at `at` of `entries`, hashed after `prev_hash`; none without entries.
    pub fn next(
        seq: i64,
        at: i64,
        prev_hash: String,
        entries: Vec<CheckpointEntry>,
    ) -> Option<Self> {
        if entries.is_empty() {
            return None;
        }
        let mut c = Checkpoint {
            seq,
            at,
            prev_hash,
            hash: String::new(),
            entries,
        };
        c.hash = c.compute_hash();
        Some(c)
    }

    /// SHA-256 (hex) of `seq`, `at`, `prev_hash` and the entries by instance id, one line
    /// each (`id seq hash`).
    pub fn compute_hash(&self) -> String {
        let mut entries: Vec<&CheckpointEntry> = self.entries.iter().collect();
        entries.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        let mut h = Sha256::new();
        h.update(format!("{}\n{}\n{}\n", self.seq, self.at, self.prev_hash));
        for e in entries {
            h.update(format!("{} {} {}\n", e.instance_id, e.seq, e.hash));
        }
        hex::encode(h.finalize())
    }
}

/// What [`verify_store`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainReport {
    /// Instances checked.
    pub instances: u64,
    /// Trace records checked.
    pub records: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Each break, as a line naming the instance (or checkpoint), the record and what.
    pub breaks: Vec<String>,
}

/// Checks the chain of every instance in `store`, a page at a time, and the checkpoints:
/// their own chain, and that every head they saw is still there.
pub async fn verify_store(store: &dyn super::Store) -> Result<ChainReport, super::StoreError> {
    let mut report = ChainReport::default();
    let checkpoints = store.checkpoints().await?;
    // (instance, seq) → (checkpoint, hash) for every head a checkpoint saw.
    let mut heads: std::collections::BTreeMap<(String, i64), (i64, String)> = Default::default();
    let mut prev = GENESIS.to_owned();
    for (i, c) in checkpoints.iter().enumerate() {
        report.checkpoints += 1;
        if c.seq != i as i64 + 1 || c.prev_hash != prev || c.hash != c.compute_hash() {
            report
                .breaks
                .push(format!("checkpoint {}: {}", c.seq, ChainBreak::Changed));
        }
        prev = c.hash.clone();
        for e in &c.entries {
            heads.insert((e.instance_id.clone(), e.seq), (c.seq, e.hash.clone()));
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    loop {
        let page = store
            .list_instances(&super::InstanceQuery {
                process: None,
                state: None,
                after: after.clone(),
                limit: 500,
                visible: None,
            })
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        for i in &page {
            let trace = store.trace(&i.id).await?;
            report.instances += 1;
            report.records += trace.len() as u64;
            seen.insert(i.id.clone());
            for (seq, what) in verify_chain(&trace, i.version, &i.trace_hash) {
                report
                    .breaks
                    .push(format!("instance {} record {seq}: {what}", i.id));
            }
            for r in &trace {
                if let Some((cp, hash)) = heads.remove(&(i.id.clone(), r.seq))
                    && *hash != r.hash
                {
                    report.breaks.push(format!(
                        "instance {} record {}: {} (checkpoint {cp} saw another)",
                        i.id,
                        r.seq,
                        ChainBreak::Changed
                    ));
                }
            }
        }
    }
    let mut deleted = std::collections::BTreeSet::new();
    for ((instance, seq), (cp, _)) in heads {
        if !seen.contains(&instance) {
            if deleted.insert(instance.clone()) {
                report.breaks.push(format!(
                    "instance {instance}: deleted (checkpoint {cp} saw it)"
                ));
            }
        } else {
            report.breaks.push(format!(
                "instance {instance} record {seq}: {} (checkpoint {cp} saw it)",
                ChainBreak::Missing
            ));
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TraceKind;
    use serde_json::json;

    #[test]
    fn the_escape_check_agrees_with_a_byte_by_byte_one_at_every_position() {
        let plain = |bytes: &[u8]| bytes.iter().all(|&b| b >= 0x20 && b != b'"' && b != b'\\');
        let odd = [
            0x00, 0x1f, 0x20, 0x21, b'"', b'\\', 0x5b, 0x5d, 0x7f, 0x80, 0xe4, 0xff,
        ];
        for len in 0..=20 {
            for at in 0..len {
                for &b in &odd {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(needs_no_escape(&bytes), plain(&bytes), "{bytes:?}");
                }
            }
        }
        for text in [
            "中文摘要",
            "printer \"3\"",
            "tab\there",
            "ab".repeat(32).as_str(),
        ] {
            assert_eq!(
                needs_no_escape(text.as_bytes()),
                plain(text.as_bytes()),
                "{text}"
            );
        }
    }

    #[test]
    fn a_string_is_written_as_serde_json_writes_it_wherever_an_escape_falls() {
        for special in ['"', '\\', '\n', '\u{1f}', '\u{7f}', 'é', '中'] {
            for at in [0, 1, 31, 32, 33, 63, 64, 70] {
                let mut text: String = "a".repeat(70);
                text.insert(at, special);
                let mut out = Vec::new();
                put_str(&mut out, &text);
                let expected = serde_json::to_string(&text).expect("a string");
                assert_eq!(
                    String::from_utf8(out).expect("utf-8"),
                    expected,
                    "{special:?} at {at}"
                );
            }
        }
    }

    fn chain(n: i64) -> Vec<TraceRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = TraceRecord {
                    instance_id: "i".into(),
                    seq,
                    at: 1_000 * seq,
                    actor: "dana".into(),
                    roles: vec!["service_desk".into()].into(),
                    channel: crate::store::Channel::Api,
                    kind: TraceKind::Transition,
                    transition: Some("t".into()),
                    from: Some("a".into()),
                    to: "b".into(),
                    data: match json!({"z": 1, "a": {"y": 2, "b": [3]}}) {
                        Value::Object(m) => m,
                        _ => unreachable!(),
                    },
                    before: Map::new(),
                    rules: Vec::new(),
                    comment: None,
                    definition_hash: "h".into(),
                    prev_hash: String::new(),
                    hash: String::new(),
                };
                r.chain_after(prev.clone());
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn the_canonical_form_sorts_keys_and_does_not_depend_on_their_order() {
        let mut a = chain(1).remove(0);
        let c = a.canonical();
        assert!(c.contains(r#"{"a":{"b":[3],"y":2},"z":1}"#), "{c}");
        let mut reordered = Map::new();
        reordered.insert("a".into(), json!({"b": [3], "y": 2}));
        reordered.insert("z".into(), json!(1));
        let before = a.compute_hash();
        a.data = reordered;
        assert_eq!(a.compute_hash(), before);
    }

    /// `value` with every object's keys sorted, rebuilt (the maps keep insertion order).
    fn sorted(value: &Value) -> Value {
        match value {
            Value::Object(m) => {
                let mut keys: Vec<_> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect(),
                )
            }
            Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn the_canonical_form_is_what_serde_json_writes_of_the_record_with_sorted_keys() {
        let mut r = chain(1).remove(0);
        r.actor = "d\"a\\n\u{1}\u{1f}\u{7f}\n\r\t\u{8}\u{c} 李 🚀".into();
        r.comment = Some("a \"comment\"\u{0}".into());
        r.data.insert(
            "numbers".into(),
            json!([
                -7,
                0,
                u64::MAX,
                i64::MIN,
                1.5,
                -0.25,
                1e300,
                true,
                false,
                null
            ]),
        );
        r.data.insert(
            "nested".into(),
            json!({"q": {"b": "\u{2}", "a": []}, "p": {}}),
        );
        r.before.insert("z".into(), json!("\u{1b}[0m"));
        r.rules.push(crate::rules::RuleDecision {
            rule: "transitions.close.guard".into(),
            module: "event".into(),
            function: None,
            source_hash: "ab".repeat(32),
            result: json!({"y": 1, "x": [{"d": 2, "c": 3}]}),
        });
        let expected = serde_json::to_string(&json!([
            r.instance_id,
            r.seq,
            r.at,
            r.actor,
            r.roles,
            r.channel.as_str(),
            r.kind.as_str(),
            r.transition,
            r.from,
            r.to,
            sorted(&Value::Object(r.data.clone())),
            r.comment,
            r.definition_hash,
            r.prev_hash,
            sorted(&json!({"before": r.before, "rules": r.rules})),
        ]))
        .unwrap();
        assert_eq!(r.canonical(), expected);
        let digest = hex::encode(Sha256::digest(expected.as_bytes()));
        assert_eq!(r.compute_hash(), digest);
    }

    #[test]
    fn decisions_are_written_as_their_canonical_json() {
        let mut r = chain(1).remove(0);
        r.before.insert("z".into(), json!({"b": 1, "a": [null]}));
        for function in [Some("may_close".to_owned()), None] {
            r.rules.push(crate::rules::RuleDecision {
                rule: "transitions.close.guard".into(),
                module: "event".into(),
                function,
                source_hash: "ab".repeat(32),
                result: json!({"y": true, "x": "\"quoted\""}),
            });
        }
        let c = r.canonical();
        let expected = canonical_json(&json!({"before": r.before, "rules": r.rules}));
        assert!(c.ends_with(&format!(",{expected}]")), "{c}\n{expected}");
    }

    #[test]
    fn an_intact_chain_verifies_and_each_kind_of_tampering_is_named() {
        let t = chain(4);
        let last = t[3].hash.clone();
        assert!(verify_chain(&t, 4, &last).is_empty());

        let mut changed = t.clone();
        changed[1].data.insert("z".into(), json!(2));
        assert_eq!(verify_chain(&changed, 4, &last), [(2, ChainBreak::Changed)]);

        let mut gap = t.clone();
        gap.remove(1);
        assert_eq!(verify_chain(&gap, 4, &last), [(3, ChainBreak::Missing)]);

        let mut tail = t.clone();
        tail.pop();
        assert_eq!(verify_chain(&tail, 4, &last), [(4, ChainBreak::Missing)]);

        let mut swapped = t.clone();
        swapped.swap(1, 2);
        let (a, b) = (swapped[1].seq, swapped[2].seq);
        swapped[1].seq = b;
        swapped[2].seq = a;
        assert_eq!(
            verify_chain(&swapped, 4, &last),
            [(2, ChainBreak::Reordered), (3, ChainBreak::Reordered)]
        );
    }
}
