//! Values split into stripes, each on cache lines of its own, so that threads writing at
//! the same time write to different memory. Every step used to write a few words that
//! every thread shared (a lock's state, a counter); two cores taking turns at one cache
//! line wait for it to travel between them on each write.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Stripes of every [`Stripes`]: more than the threads that take steps on a small server,
/// few enough that reading all of them stays cheap. Threads past the first sixteen share.
pub(crate) const STRIPES: usize = 16;

/// One value, aligned to two cache lines (adjacent-line prefetch pairs lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// `STRIPES` values of `T`, each on lines no other stripe touches.
#[derive(Debug)]
pub(crate) struct Stripes<T> {
    stripes: Box<[Padded<T>]>,
}

impl<T: Default> Default for Stripes<T> {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Padded::default()).collect(),
        }
    }
}

impl<T> Stripes<T> {
    /// The calling thread's stripe: threads take stripes in turn as they first ask, so
    /// the first `STRIPES` threads each have one of their own.
    pub(crate) fn mine(&self) -> &T {
        &self.stripes[thread_index() % self.stripes.len()].0
    }

    /// The stripe of `key`, a hash: the same key always gets the same stripe.
    pub(crate) fn by_key(&self, key: u64) -> &T {
        self.get(stripe_of(key))
    }

    /// Stripe `i` (below [`STRIPES`]), for a caller that takes several stripes in order.
    pub(crate) fn get(&self, i: usize) -> &T {
        &self.stripes[i % self.stripes.len()].0
    }

    /// Every stripe, to sum them or clear them.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|p| &p.0)
    }
}

/// The number of the stripe of `key`, a hash (see [`Stripes::by_key`]).
pub(crate) fn stripe_of(key: u64) -> usize {
    // The high bits: a hash table holding the same keys uses the low ones.
    (key >> 48) as usize % STRIPES
}

/// The calling thread's number, counted from 0 in the order threads first ask.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|i| *i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_have_numbers_of_their_own_and_keep_their_stripe() {
        let stripes: Stripes<u8> = Stripes::default();
        let mut seen: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let first = std::ptr::from_ref(stripes.mine());
                        assert_eq!(first, std::ptr::from_ref(stripes.mine()));
                        thread_index()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn a_key_always_gets_the_same_stripe() {
        let stripes: Stripes<AtomicUsize> = Stripes::default();
        for key in [0, 1, u64::MAX, 0xdead_beef_0000_0000] {
            stripes.by_key(key).fetch_add(1, Ordering::Relaxed);
            stripes.by_key(key).fetch_add(1, Ordering::Relaxed);
        }
        let counts: Vec<usize> = stripes.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        assert_eq!(counts.iter().sum::<usize>(), 8);
        assert!(counts.iter().all(|n| n % 2 == 0), "{counts:?}");
    }

    #[test]
    fn stripes_do_not_share_cache_lines() {
        let stripes: Stripes<u8> = Stripes::default();
        let addresses: Vec<usize> = stripes
            .iter()
            .map(|v| std::ptr::from_ref(v) as usize)
            .collect();
        for pair in addresses.windows(2) {
            assert!(pair[1] - pair[0] >= 128);
        }
    }
}
