//! The instances this engine wrote last, so that firing on an instance need not read it
//! back from the database first.
//!
//! A remembered instance is only a starting point: the step computed from it commits only
//! if the instance is still at that version in the database (the store's optimistic check).
//! Another node may have moved it meanwhile; then the step, or any refusal computed from the
//! remembered copy, is thrown away and computed again from a fresh read. Reads for callers
//! (`GET`) always go to the database.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use super::versions::Pinned;
use crate::store::InstanceRecord;
use crate::stripes::{STRIPES, Stripes};

/// Instances remembered unless configured.
pub(super) const DEFAULT_CAPACITY: usize = 16_384;

/// A bounded map of recently written instances, in stripes by instance id, so that steps
/// on different instances take different locks. In each stripe, entries live in two
/// generations: when the current one is full it becomes the previous one and the old
/// previous one is dropped, so an instance written within the last `capacity / 2` writes
/// (of its stripe's share) is kept. The capacity is rounded up to a multiple of twice the
/// stripes.
#[derive(Debug)]
pub(super) struct RecentInstances {
    stripes: Stripes<Mutex<Generations>>,
    /// Entries per generation in each stripe; 0 remembers nothing.
    generation: usize,
}

/// Keyed by instance id. The ids are the engine's own (UUID v7), never a caller's choice,
/// so a fast hash suits them.
#[derive(Debug, Default)]
struct Generations {
    current: foldhash::HashMap<String, Remembered>,
    previous: foldhash::HashMap<String, Remembered>,
}

/// An instance as written, with what its step ran under when the caller kept that.
type Remembered = (Arc<InstanceRecord>, Option<Pinned>);

impl RecentInstances {
    /// Remembers at most `capacity` instances, rounded up to a multiple of twice the
    /// stripes.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            stripes: Stripes::default(),
            generation: capacity.div_ceil(2 * STRIPES),
        }
    }

    /// The generations of the stripe holding `id`.
    fn stripe(&self, id: &str) -> MutexGuard<'_, Generations> {
        let key = foldhash::fast::FixedState::with_seed(0).hash_one(id);
        let stripe = self.stripes.by_key(key);
        stripe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance as this engine last wrote it, if remembered, taken out with what its
    /// step ran under: the step that starts from it puts it back once committed. (A
    /// concurrent step on the same instance meanwhile reads it from the database.)
    pub(super) fn take(&self, id: &str) -> Option<(InstanceRecord, Option<Pinned>)> {
        let mut g = self.stripe(id);
        let (shared, pinned) = g.current.remove(id).or_else(|| g.previous.remove(id))?;
        drop(g);
        let record = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
        Some((record, pinned))
    }

    /// Remembers an instance as written, with what its step ran under if known.
    pub(super) fn put(&self, record: Arc<InstanceRecord>, pinned: Option<Pinned>) {
        if self.generation == 0 {
            return;
        }
        let mut g = self.stripe(&record.id);
        if g.current.len() >= self.generation && !g.current.contains_key(&record.id) {
            g.previous = std::mem::take(&mut g.current);
        }
        g.previous.remove(&record.id);
        g.current.insert(record.id.clone(), (record, pinned));
    }

    /// Forgets an instance whose copy may be stale.
    pub(super) fn forget(&self, id: &str) {
        let mut g = self.stripe(id);
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
        recent.put(record("a", 1), None);
        recent.put(record("a", 2), None);
        assert_eq!(recent.take("a").map(|(r, _)| r.version), Some(2));
        assert!(recent.take("a").is_none(), "taken out");
        recent.put(record("a", 3), None);
        recent.forget("a");
        assert!(recent.take("a").is_none());
    }

    #[test]
    fn memory_is_bounded_to_the_capacity() {
        let recent = RecentInstances::with_capacity(100);
        for i in 0..300 {
            recent.put(record(&i.to_string(), 1), None);
        }
        assert!(recent.take("0").is_none(), "the oldest are dropped");
        assert!(recent.take("299").is_some());
        let kept: usize = (recent.stripes.iter())
            .map(|s| s.lock().map_or(0, |g| g.current.len() + g.previous.len()))
            .sum();
        assert!(kept <= 100_usize.next_multiple_of(2 * STRIPES), "{kept}");
    }

    #[test]
    fn a_capacity_of_zero_remembers_nothing() {
        let recent = RecentInstances::with_capacity(0);
        recent.put(record("a", 1), None);
        assert!(recent.take("a").is_none());
    }
}
