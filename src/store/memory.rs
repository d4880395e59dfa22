//! An in-memory store: no durability. For the benchmark's engine-only figure and for unit
//! tests of the engine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::memory_instance::KeptInstance;
use super::memory_trace::TraceLogs;
use super::{
    Checkpoint, CheckpointEntry, Claim, DefinitionVersion, Delivery, DeliveryOutcome, GENESIS,
    InstanceHead, InstanceQuery, InstanceRecord, LinkedInstance, Links, OutboxMessage, Step, Store,
    StoreError, StoredAnswer, StoredDefinition, StoredSnapshot, TokenRecord, TraceRecord,
};
use crate::stripes::{Stripes, stripe_of};

#[derive(Debug, Default)]
struct Tables {
    /// Definition versions by hash, with their number.
    definitions: HashMap<String, (StoredDefinition, DefinitionVersion)>,
    /// Instances by id, packed (see [`KeptInstance`]).
    instances: BTreeMap<String, KeptInstance>,
    links: BTreeSet<(String, String, String)>,
    answers: HashMap<(String, String), StoredAnswer>,
    /// Claims on instances with a clock due: instance → (claimant, until).
    claims: foldhash::HashMap<String, (String, i64)>,
    /// Outbox messages by id.
    outbox: BTreeMap<String, StoredMessage>,
    checkpoints: Vec<Checkpoint>,
    /// KPI file contents by hash: their number and texts.
    kpi_sets: HashMap<String, (i64, String)>,
    /// Service report snapshots by hash.
    snapshots: HashMap<String, StoredSnapshot>,
    /// Bearer tokens, oldest first.
    tokens: Vec<TokenRecord>,
}

/// An outbox message and its delivery state.
#[derive(Debug)]
struct StoredMessage {
    message: OutboxMessage,
    attempts: i64,
    next_attempt_at: i64,
    claim_until: Option<i64>,
}

/// Keeps everything in process memory: the tables behind one lock, the trace logs in
/// shards by instance behind a lock each. A commit takes the tables, then the shards of its
/// records (in shard order) before it lets the tables go, so a reader that sees a step's
/// instance also sees its records.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    /// The trace logs, in [`Stripes`] by instance, each on cache lines of its own.
    /// Keeping a record (numbering its texts, packing it into bytes) is most of a
    /// commit's work here; done under the one lock of the tables, it made concurrent steps
    /// wait for each other (measured: `docs/performance.md`, "Trace shards and a
    /// one-statement raw baseline"). Packed side by side, a push to one shard wrote to the
    /// line holding the next shard's lock, which the other core was taking.
    traces: Stripes<Mutex<TraceLogs>>,
}

/// Takes `mutex` even if a panic poisoned it. A panic while holding a lock of this store
/// cannot leave a half-written step: every write checks first and then mutates without
/// failing.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryStore {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        lock(&self.tables)
    }

    /// The shard holding the trace log of `instance_id`.
    fn shard_of(instance_id: &str) -> usize {
        let hash = foldhash::fast::FixedState::with_seed(0).hash_one(instance_id);
        stripe_of(hash)
    }

    /// Appends the records of several instances: their shards are taken in order, and
    /// only then are `tables` let go.
    fn push_sharded(&self, tables: MutexGuard<'_, Tables>, trace: Vec<TraceRecord>) {
        let mut by_shard: BTreeMap<usize, Vec<TraceRecord>> = BTreeMap::new();
        for r in trace {
            by_shard
                .entry(Self::shard_of(&r.instance_id))
                .or_default()
                .push(r);
        }
        let held: Vec<_> = by_shard
            .into_iter()
            .map(|(s, records)| (lock(self.traces.get(s)), records))
            .collect();
        drop(tables);
        for (mut shard, records) in held {
            for r in &records {
                shard.push(r);
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn save_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut t = self.tables();
        if t.tokens
            .iter()
            .any(|x| x.id == token.id || x.digest == token.digest)
        {
            return Err(StoreError::Conflict);
        }
        t.tokens.push(token.clone());
        Ok(())
    }
    async fn token_by_digest(&self, digest: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self
            .tables()
            .tokens
            .iter()
            .find(|t| t.digest == digest)
            .cloned())
    }
    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.tables().tokens.clone())
    }
    async fn revoke_token(&self, id: &str, at: i64) -> Result<bool, StoreError> {
        let mut t = self.tables();
        match t
            .tokens
            .iter_mut()
            .find(|x| x.id == id && x.revoked_at.is_none())
        {
            Some(x) => {
                x.revoked_at = Some(at);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn save_definition(&self, d: &StoredDefinition) -> Result<i64, StoreError> {
        let mut t = self.tables();
        if let Some((_, v)) = t.definitions.get(&d.hash) {
            return Ok(v.version);
        }
        let version = 1 + t
            .definitions
            .values()
            .filter(|(s, _)| s.process == d.process)
            .count() as i64;
        let stored = DefinitionVersion {
            version,
            hash: d.hash.clone(),
            first_seen: chrono::Utc::now().timestamp_millis(),
        };
        t.definitions.insert(d.hash.clone(), (d.clone(), stored));
        Ok(version)
    }

    async fn save_kpi_set(&self, hash: &str, source: &str) -> Result<i64, StoreError> {
        let mut t = self.tables();
        let next = t.kpi_sets.len() as i64 + 1;
        let entry = t.kpi_sets.entry(hash.to_owned());
        Ok(entry.or_insert_with(|| (next, source.to_owned())).0)
    }

    async fn kpi_set_source(&self, hash: &str) -> Result<Option<String>, StoreError> {
        Ok(self.tables().kpi_sets.get(hash).map(|(_, s)| s.clone()))
    }

    async fn save_report_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StoreError> {
        let mut t = self.tables();
        t.snapshots
            .entry(snapshot.hash.clone())
            .or_insert_with(|| snapshot.clone());
        Ok(())
    }

    async fn report_snapshot(&self, hash: &str) -> Result<Option<StoredSnapshot>, StoreError> {
        Ok(self.tables().snapshots.get(hash).cloned())
    }

    async fn definition_versions(
        &self,
        process: &str,
    ) -> Result<Vec<DefinitionVersion>, StoreError> {
        let mut versions: Vec<DefinitionVersion> = self
            .tables()
            .definitions
            .values()
            .filter(|(s, _)| s.process == process)
            .map(|(_, v)| v.clone())
            .collect();
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    async fn load_definition(&self, hash: &str) -> Result<Option<StoredDefinition>, StoreError> {
        Ok(self.tables().definitions.get(hash).map(|(d, _)| d.clone()))
    }

    async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.tables()
            .instances
            .get(id)
            .map(KeptInstance::record)
            .transpose()
    }

    async fn list_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        let t = self.tables();
        t.instances
            .iter()
            .filter(|(id, _)| q.after.as_ref().is_none_or(|a| *id > a))
            .map(|(_, i)| i)
            .filter(|i| q.process.as_ref().is_none_or(|p| i.process == *p))
            .filter(|i| q.state.as_ref().is_none_or(|s| i.state == *s))
            .filter(|i| {
                q.visible
                    .as_ref()
                    .is_none_or(|v| v.admits(&i.process, &i.created_by))
            })
            .take(q.limit as usize)
            .map(KeptInstance::record)
            .collect()
    }

    async fn trace(&self, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
        lock(self.traces.get(Self::shard_of(id))).records(id)
    }

    async fn links(&self, id: &str) -> Result<Links, StoreError> {
        let t = self.tables();
        let linked = |relation: &str, other: &str| {
            t.instances.get(other).map(|i| LinkedInstance {
                relation: relation.to_owned(),
                id: other.to_owned(),
                process: i.process.clone(),
                state: i.state.clone(),
            })
        };
        let mut links = Links::default();
        for (from, relation, to) in &t.links {
            if from == id {
                links.outgoing.extend(linked(relation, to));
            }
            if to == id {
                links.incoming.extend(linked(relation, from));
            }
        }
        Ok(links)
    }

    async fn heads(&self, ids: &[String]) -> Result<Vec<InstanceHead>, StoreError> {
        let t = self.tables();
        Ok(ids
            .iter()
            .filter_map(|id| {
                t.instances.get(id).map(|i| InstanceHead {
                    id: id.clone(),
                    process: i.process.clone(),
                    state: i.state.clone(),
                })
            })
            .collect())
    }

    async fn answer(&self, actor: &str, key: &str) -> Result<Option<StoredAnswer>, StoreError> {
        Ok(self
            .tables()
            .answers
            .get(&(actor.to_owned(), key.to_owned()))
            .cloned())
    }

    async fn purge_answers(&self, before: i64) -> Result<u64, StoreError> {
        let mut t = self.tables();
        let n = t.answers.len();
        t.answers.retain(|_, a| a.created_at >= before);
        Ok((n - t.answers.len()) as u64)
    }

    async fn commit(&self, step: Step) -> Result<(), StoreError> {
        // Packed before the tables are taken, so that steps wait for each other less.
        let kept: Vec<KeptInstance> = (step.writes.iter())
            .map(|w| KeptInstance::new(&w.instance))
            .collect();
        let mut t = self.tables();
        for w in &step.writes {
            let current = t.instances.get(&w.instance.id).map(|i| i.version);
            if current != w.previous_version {
                return Err(StoreError::Conflict);
            }
        }
        if let Some(w) = step.answer {
            let k = (w.answer.actor.clone(), w.answer.key.clone());
            if t.answers
                .get(&k)
                .is_some_and(|a| a.created_at >= w.replaces_before)
            {
                return Err(StoreError::KeyTaken);
            }
            t.answers.insert(k, w.answer);
        }
        for (w, k) in step.writes.iter().zip(kept) {
            let id = &w.instance.id;
            t.claims.remove(id);
            match t.instances.get_mut(id) {
                Some(i) => *i = k,
                None => {
                    t.instances.insert(id.clone(), k);
                }
            }
        }
        for c in step.links {
            t.links
                .retain(|(f, r, _)| !(*f == c.from && *r == c.relation));
            for to in c.to {
                t.links.insert((c.from.clone(), c.relation.clone(), to));
            }
        }
        for m in step.outbox {
            let stored = StoredMessage {
                next_attempt_at: m.created_at,
                message: m,
                attempts: 0,
                claim_until: None,
            };
            t.outbox.insert(stored.message.id.clone(), stored);
        }
        // The shards are taken before the tables are let go, so that no reader sees an
        // instance without its records. Nearly every step writes to one instance only.
        let first = step.trace.first().map(|r| r.instance_id.as_str());
        if let Some(id) = first.filter(|&id| step.trace.iter().all(|r| r.instance_id == id)) {
            let mut shard = lock(self.traces.get(Self::shard_of(id)));
            drop(t);
            for r in &step.trace {
                shard.push(r);
            }
            return Ok(());
        }
        self.push_sharded(t, step.trace);
        Ok(())
    }

    async fn write_checkpoint(&self, at: i64) -> Result<Option<Checkpoint>, StoreError> {
        let mut t = self.tables();
        let (seq, since, prev_hash) = match t.checkpoints.last() {
            Some(c) => (c.seq + 1, c.at, c.hash.clone()),
            None => (1, i64::MIN, GENESIS.to_owned()),
        };
        let mut entries = Vec::new();
        for (id, i) in t.instances.iter().filter(|(_, i)| i.updated_at >= since) {
            let hash = i.trace_hash()?;
            if !hash.is_empty() {
                entries.push(CheckpointEntry {
                    instance_id: id.clone(),
                    seq: i.version,
                    hash,
                });
            }
        }
        let Some(c) = Checkpoint::next(seq, at, prev_hash, entries) else {
            return Ok(None);
        };
        t.checkpoints.push(c.clone());
        Ok(Some(c))
    }

    async fn checkpoints(&self) -> Result<Vec<Checkpoint>, StoreError> {
        Ok(self.tables().checkpoints.clone())
    }

    async fn claim_deliveries(&self, c: &Claim) -> Result<Vec<Delivery>, StoreError> {
        let mut t = self.tables();
        let mut due: Vec<&mut StoredMessage> = t
            .outbox
            .values_mut()
            .filter(|m| m.next_attempt_at <= c.now && m.claim_until.is_none_or(|u| u <= c.now))
            .collect();
        due.sort_by_key(|m| (m.next_attempt_at, m.message.created_at));
        Ok(due
            .into_iter()
            .take(c.limit as usize)
            .map(|m| {
                m.claim_until = Some(c.until);
                Delivery {
                    message: m.message.clone(),
                    attempts: m.attempts,
                }
            })
            .collect())
    }

    async fn record_delivery(&self, id: &str, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        if let Some(m) = self.tables().outbox.get_mut(id) {
            m.attempts += 1;
            m.claim_until = None;
            m.next_attempt_at = match outcome {
                DeliveryOutcome::Delivered { .. } => i64::MAX,
                DeliveryOutcome::Failed { retry_at, .. } => *retry_at,
            };
        }
        Ok(())
    }

    async fn claim_due_instances(&self, c: &Claim) -> Result<Vec<InstanceRecord>, StoreError> {
        let mut t = self.tables();
        let Tables {
            instances, claims, ..
        } = &mut *t;
        let mut due: Vec<(&String, &KeptInstance)> = instances
            .iter()
            .filter(|(_, i)| i.next_due_at.is_some_and(|d| d <= c.now))
            .filter(|(id, _)| claims.get(*id).is_none_or(|(_, until)| *until <= c.now))
            .collect();
        due.sort_by_key(|(id, i)| (i.next_due_at, *id));
        due.truncate(c.limit as usize);
        let records = due
            .iter()
            .map(|(_, i)| i.record())
            .collect::<Result<Vec<_>, _>>()?;
        for (id, _) in due {
            claims.insert(id.clone(), (c.claimant.clone(), c.until));
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::{Channel, InstanceWrite, TimerState, TraceKind};

    fn instance(id: &str, version: i64, due: &[i64]) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            process: "p".into(),
            definition_hash: "h".into(),
            state: "s".into(),
            data: Arc::default(),
            version,
            created_by: "a".into(),
            created_at: 0,
            updated_at: 0,
            votes: Vec::new(),
            slas: Vec::new(),
            trace_hash: String::new(),
            timers: due
                .iter()
                .enumerate()
                .map(|(n, d)| TimerState {
                    name: format!("t{n}"),
                    due_at: *d,
                    paused_left_ms: None,
                })
                .collect(),
        }
    }

    fn write(i: InstanceRecord, previous_version: Option<i64>) -> Step {
        Step {
            writes: vec![InstanceWrite {
                instance: Arc::new(i),
                previous_version,
            }],
            ..Step::default()
        }
    }

    #[tokio::test]
    async fn instances_with_a_due_clock_are_claimed_once_per_lease_and_released_by_a_write() {
        let store = MemoryStore::default();
        store
            .commit(write(instance("late", 1, &[300]), None))
            .await
            .unwrap();
        store
            .commit(write(instance("early", 1, &[500, 100]), None))
            .await
            .unwrap();
        store
            .commit(write(instance("idle", 1, &[]), None))
            .await
            .unwrap();
        let claim = |who: &str, now| Claim {
            claimant: who.into(),
            now,
            until: now + 50,
            limit: 10,
        };
        let ids = |v: Vec<InstanceRecord>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(store.claim_due_instances(&claim("a", 200)).await.unwrap()),
            ["early"]
        );
        assert!(
            store
                .claim_due_instances(&claim("b", 220))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(store.claim_due_instances(&claim("b", 400)).await.unwrap()),
            ["early", "late"],
            "a's claim lapsed at 250"
        );
        store
            .commit(write(instance("early", 2, &[440]), Some(1)))
            .await
            .unwrap();
        assert_eq!(
            ids(store.claim_due_instances(&claim("c", 445)).await.unwrap()),
            ["early"],
            "the write released b's claim; `late` is still b's"
        );
    }

    fn traced(id: &str, seq: i64) -> TraceRecord {
        TraceRecord {
            instance_id: id.into(),
            seq,
            at: seq,
            actor: "a".into(),
            roles: vec!["r".into()].into(),
            channel: Channel::Api,
            kind: TraceKind::Transition,
            transition: Some("t".into()),
            from: Some("s".into()),
            to: "s".into(),
            data: serde_json::Map::new(),
            before: serde_json::Map::new(),
            rules: Vec::new(),
            comment: None,
            definition_hash: "h".into(),
            prev_hash: format!("{id}-{}", seq - 1),
            hash: format!("{id}-{seq}"),
        }
    }

    fn seqs(records: Vec<TraceRecord>) -> Vec<i64> {
        records.into_iter().map(|r| r.seq).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steps_committed_at_once_on_many_instances_keep_every_record_in_order() {
        let store = Arc::new(MemoryStore::default());
        let tasks: Vec<_> = (0..8)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let id = format!("i{n}");
                    for v in 1..=50 {
                        let mut step = write(instance(&id, v, &[]), (v > 1).then_some(v - 1));
                        step.trace = vec![traced(&id, v)];
                        store.commit(step).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        for n in 0..8 {
            let id = format!("i{n}");
            assert_eq!(
                seqs(store.trace(&id).await.unwrap()),
                (1..=50).collect::<Vec<_>>()
            );
            let kept = store.get_instance(&id).await.unwrap().unwrap();
            assert_eq!(kept.version, 50);
        }
    }

    #[tokio::test]
    async fn a_step_on_instances_of_two_trace_shards_keeps_the_records_of_both() {
        let ids: Vec<String> = (0..64).map(|n| format!("i{n}")).collect();
        let a = &ids[0];
        let b = ids
            .iter()
            .find(|b| MemoryStore::shard_of(b) != MemoryStore::shard_of(a))
            .unwrap();
        let store = MemoryStore::default();
        let mut step = write(instance(a, 1, &[]), None);
        step.writes.extend(write(instance(b, 1, &[]), None).writes);
        step.trace = vec![traced(a, 1), traced(b, 1)];
        store.commit(step).await.unwrap();
        assert_eq!(seqs(store.trace(a).await.unwrap()), [1]);
        assert_eq!(seqs(store.trace(b).await.unwrap()), [1]);
        assert_eq!(store.trace(a).await.unwrap()[0].hash, format!("{a}-1"));
        assert_eq!(store.trace(b).await.unwrap()[0].hash, format!("{b}-1"));
    }
}
