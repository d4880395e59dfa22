//! The instances this engine wrote last, so that firing on an instance need not read it
//! back from the database first.
//!
//! A remembered instance is only a starting point: the step computed from it commits only
//! if the instance is still at that version in the database (the store's optimistic check).
//! Another node may have moved it meanwhile; then the step, or any refusal computed from the
//! remembered copy, is thrown away and computed again from a fresh read. Reads for callers
//! (`GET`) always go to the database.

use std::sync::{Arc, Mutex};

use crate::store::InstanceRecord;

/// Instances remembered unless configured.
pub(super) const DEFAULT_CAPACITY: usize = 16_384;

/// A bounded map of recently written instances. Entries live in two generations of half
/// the capacity each: when the current one is full it becomes the previous one and the old
/// previous one is dropped, so an instance written within the last `capacity / 2` writes
/// is kept.
#[derive(Debug)]
pub(super) struct RecentInstances {
    generations: Mutex<Generations>,
    /// Entries per generation; 0 remembers nothing.
    generation: usize,
}

/// Keyed by instance id. The ids are the engine's own (UUID v7), never a caller's choice,
/// so a fast hash suits them.
#[derive(Debug, Default)]
struct Generations {
    current: foldhash::HashMap<String, Arc<InstanceRecord>>,
    previous: foldhash::HashMap<String, Arc<InstanceRecord>>,
}

impl RecentInstances {
    /// Remembers at most `capacity` instances.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            generations: Mutex::default(),
            generation: capacity / 2,
        }
    }

    /// The instance as this engine last wrote it, if remembered, taken out: the step that
    /// starts from it puts it back once committed. (A concurrent step on the same instance
    /// meanwhile reads it from the database.)
    pub(super) fn take(&self, id: &str) -> Option<InstanceRecord> {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        let shared = g.current.remove(id).or_else(|| g.previous.remove(id))?;
        drop(g);
        Some(Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Remembers an instance as written.
    pub(super) fn put(&self, record: Arc<InstanceRecord>) {
        if self.generation == 0 {
            return;
        }
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        if g.current.len() >= self.generation && !g.current.contains_key(&record.id) {
            g.previous = std::mem::take(&mut g.current);
        }
        g.previous.remove(&record.id);
        g.current.insert(record.id.clone(), record);
    }

    /// Forgets an instance whose copy may be stale.
    pub(super) fn forget(&self, id: &str) {
        let mut g = self.generations.lock().unwrap_or_else(|e| e.into_inner());
        g.current.remove(id);
        g.previous.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, version: i64) -> Arc<InstanceRecord> {
        Arc::new(InstanceRecord {
            id: id.into(),
            process: "p".into(),
            definition_hash: "h".into(),
            state: "s".into(),
            data: Default::default(),
            version,
            created_by: "a".into(),
            created_at: 0,
            updated_at: 0,
            votes: Vec::new(),
            slas: Vec::new(),
            trace_hash: String::new(),
            timers: Vec::new(),
        })
    }

    #[test]
    fn the_latest_write_of_an_instance_is_remembered_until_taken_or_forgotten() {
        let recent = RecentInstances::with_capacity(DEFAULT_CAPACITY);
        recent.put(record("a", 1));
        recent.put(record("a", 2));
        assert_eq!(recent.take("a").map(|r| r.version), Some(2));
        assert!(recent.take("a").is_none(), "taken out");
        recent.put(record("a", 3));
        recent.forget("a");
        assert!(recent.take("a").is_none());
    }

    #[test]
    fn memory_is_bounded_to_the_capacity() {
        let recent = RecentInstances::with_capacity(100);
        for i in 0..300 {
            recent.put(record(&i.to_string(), 1));
        }
        assert!(recent.take("0").is_none(), "the oldest are dropped");
        assert!(recent.take("299").is_some());
        let g = recent.generations.lock().unwrap();
        assert!(g.current.len() + g.previous.len() <= 100);
    }

    #[test]
    fn a_capacity_of_zero_remembers_nothing() {
        let recent = RecentInstances::with_capacity(0);
        recent.put(record("a", 1));
        assert!(recent.take("a").is_none());
    }
}
