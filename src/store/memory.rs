//! An in-memory store: no durability. For the benchmark's engine-only figure and for unit
//! tests of the engine.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use super::{
    Delivery, DeliveryOutcome, InstanceHead, InstanceQuery, InstanceRecord, LinkedInstance, Links,
    OutboxMessage, Step, Store, StoreError, StoredAnswer, StoredDefinition, TimerClaim,
    TimerRecord, TraceRecord,
};

#[derive(Debug, Default)]
struct Tables {
    definitions: HashMap<String, StoredDefinition>,
    instances: BTreeMap<String, InstanceRecord>,
    trace: HashMap<String, Vec<TraceRecord>>,
    links: BTreeSet<(String, String, String)>,
    answers: HashMap<(String, String), StoredAnswer>,
    /// Timers by (instance, name).
    timers: BTreeMap<(String, String), StoredTimer>,
    /// Outbox messages by id.
    outbox: BTreeMap<String, StoredMessage>,
}

/// An outbox message and its delivery state.
#[derive(Debug)]
struct StoredMessage {
    message: OutboxMessage,
    attempts: i64,
    next_attempt_at: i64,
    claim_until: Option<i64>,
}

/// A timer and its claim, if any: who claimed it, until when.
#[derive(Debug)]
struct StoredTimer {
    timer: TimerRecord,
    claim: Option<(String, i64)>,
}

/// Keeps everything in process memory, behind one lock.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
}

impl Tables {
    /// The timers of one instance, by name.
    fn timers_of<'t>(
        &'t self,
        instance_id: &'t str,
    ) -> impl Iterator<Item = (&'t (String, String), &'t StoredTimer)> {
        self.timers
            .range((instance_id.to_owned(), String::new())..)
            .take_while(move |((i, _), _)| i == instance_id)
    }
}

impl MemoryStore {
    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        // A panic while holding the lock cannot leave a half-written step: every write
        // below checks first and then mutates without failing.
        self.tables.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn save_definition(&self, d: &StoredDefinition) -> Result<(), StoreError> {
        self.tables()
            .definitions
            .entry(d.hash.clone())
            .or_insert_with(|| d.clone());
        Ok(())
    }

    async fn load_definition(&self, hash: &str) -> Result<Option<StoredDefinition>, StoreError> {
        Ok(self.tables().definitions.get(hash).cloned())
    }

    async fn get_instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        Ok(self.tables().instances.get(id).cloned())
    }

    async fn list_instances(&self, q: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        let t = self.tables();
        Ok(t.instances
            .values()
            .filter(|i| q.after.as_ref().is_none_or(|a| i.id > *a))
            .filter(|i| q.process.as_ref().is_none_or(|p| i.process == *p))
            .filter(|i| q.state.as_ref().is_none_or(|s| i.state == *s))
            .take(q.limit as usize)
            .cloned()
            .collect())
    }

    async fn trace(&self, id: &str) -> Result<Vec<TraceRecord>, StoreError> {
        Ok(self.tables().trace.get(id).cloned().unwrap_or_default())
    }

    async fn links(&self, id: &str) -> Result<Links, StoreError> {
        let t = self.tables();
        let linked = |relation: &str, other: &str| {
            t.instances.get(other).map(|i| LinkedInstance {
                relation: relation.to_owned(),
                id: i.id.clone(),
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
        for w in step.writes {
            t.instances
                .insert(w.instance.id.clone(), (*w.instance).clone());
        }
        for c in step.links {
            t.links
                .retain(|(f, r, _)| !(*f == c.from && *r == c.relation));
            for to in c.to {
                t.links.insert((c.from.clone(), c.relation.clone(), to));
            }
        }
        for c in step.timers {
            let old: Vec<_> = t
                .timers_of(&c.instance_id)
                .map(|(k, _)| k.clone())
                .collect();
            for key in old {
                t.timers.remove(&key);
            }
            for timer in c.timers {
                let key = (timer.instance_id.clone(), timer.name.clone());
                t.timers.insert(key, StoredTimer { timer, claim: None });
            }
        }
        for r in step.trace {
            t.trace.entry(r.instance_id.clone()).or_default().push(r);
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
        Ok(())
    }

    async fn claim_deliveries(&self, c: &TimerClaim) -> Result<Vec<Delivery>, StoreError> {
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

    async fn timers(&self, instance_id: &str) -> Result<Vec<TimerRecord>, StoreError> {
        let t = self.tables();
        let mut timers: Vec<TimerRecord> = t
            .timers_of(instance_id)
            .map(|(_, s)| s.timer.clone())
            .collect();
        timers.sort_by(|a, b| (a.due_at, &a.name).cmp(&(b.due_at, &b.name)));
        Ok(timers)
    }

    async fn claim_due_timers(&self, c: &TimerClaim) -> Result<Vec<TimerRecord>, StoreError> {
        let mut t = self.tables();
        let mut due: Vec<&mut StoredTimer> = t
            .timers
            .values_mut()
            .filter(|s| {
                s.timer.due_at <= c.now && s.claim.as_ref().is_none_or(|(_, until)| *until <= c.now)
            })
            .collect();
        due.sort_by_key(|s| s.timer.due_at);
        Ok(due
            .into_iter()
            .take(c.limit as usize)
            .map(|s| {
                s.claim = Some((c.claimant.clone(), c.until));
                s.timer.clone()
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TimerChange;

    fn timer(name: &str, due_at: i64) -> TimerRecord {
        TimerRecord {
            instance_id: "i".into(),
            name: name.into(),
            due_at,
            paused_left_ms: None,
            version: 1,
        }
    }

    #[tokio::test]
    async fn timers_are_replaced_per_instance_and_claimed_once_per_lease() {
        let store = MemoryStore::default();
        let step = |timers| Step {
            timers: vec![TimerChange {
                instance_id: "i".into(),
                timers,
            }],
            ..Step::default()
        };
        store
            .commit(step(vec![timer("late", 300), timer("early", 100)]))
            .await
            .unwrap();
        let names = |t: Vec<TimerRecord>| t.into_iter().map(|t| t.name).collect::<Vec<_>>();
        assert_eq!(names(store.timers("i").await.unwrap()), ["early", "late"]);
        let claim = |who: &str, now| TimerClaim {
            claimant: who.into(),
            now,
            until: now + 50,
            limit: 10,
        };
        assert_eq!(
            names(store.claim_due_timers(&claim("a", 200)).await.unwrap()),
            ["early"]
        );
        assert!(
            store
                .claim_due_timers(&claim("b", 220))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            names(store.claim_due_timers(&claim("b", 400)).await.unwrap()),
            ["early", "late"],
            "a's claim lapsed at 250"
        );
        store.commit(step(Vec::new())).await.unwrap();
        assert!(store.timers("i").await.unwrap().is_empty());
    }
}
